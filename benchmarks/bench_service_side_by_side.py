"""The ranking service of several checkouts (or virtualenvs) side by side, on one machine.

On a shared machine whose speed drifts by 1.5-2x within minutes, two benchmark runs one
after the other cannot show a 10% difference. This script starts one server per variant
at once (same config, model, catalog and history as bench_service.py, each with its own
event store), then loads them in rounds: in each round every variant gets a no-op window
and a rank window, the variants' order rotating from round to round, so that all of them
see the same drift. It prints each window and, per variant, the median throughputs and
the median of the rounds' rank / no-op ratios.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/bench_service_side_by_side.py --model models/V --province DIR \\
        --variant before=/tmp/before --variant after=.
    # the same code on another virtualenv (e.g. other server libraries):
    .venv/bin/python benchmarks/bench_service_side_by_side.py ... --variant a=. --variant b=.:/tmp/venv/bin/python

The load comes from bench_service.py's asyncio client (32 keep-alive connections).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the launcher the integration tests use
from bench_service import add_setup_arguments, load, prepare, start_server  # noqa: E402
from launcher import ServeProcess  # noqa: E402


def parse_variant(text: str) -> tuple[str, Path, str]:
    """NAME=CHECKOUT[:PYTHON]"""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=CHECKOUT[:PYTHON]")
    root, _, python = rest.partition(":")
    root_path = Path(root).resolve()
    if not (root_path / "service" / "app.py").is_file():
        raise argparse.ArgumentTypeError(f"--variant {text!r}: {root_path} is not a checkout of this project")
    return name, root_path, python or sys.executable


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", type=parse_variant, action="append", required=True,
                   help="NAME=CHECKOUT[:PYTHON], repeated: a checkout of this project and the Python to run it")
    add_setup_arguments(p)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--window", type=float, default=3.0, help="seconds per no-op or rank window")
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    names = [v[0] for v in args.variant]
    if len(set(names)) != len(names):
        p.error("variant names must differ")

    tmp = Path(tempfile.mkdtemp(prefix="bench-side-by-side-"))
    servers: dict[str, ServeProcess] = {}
    try:
        (tmp / "shared").mkdir()
        config, candidates, info = prepare(tmp / "shared", args)
        for name, root, python in args.variant:
            folder = tmp / name
            shutil.copytree(config.parent, folder)
            servers[name] = start_server(folder / config.name, args.workers, root=root, python=python)
        print(f"model {info['model']}, {len(candidates)} candidates, {args.workers} worker(s) per server; "
              f"{args.rounds} rounds of {args.window:g} s windows after one warm-up round", flush=True)
        rps: dict[str, dict[str, list[float]]] = {n: {"noop": [], "rank": []} for n in names}
        for r in range(args.rounds + 1):
            for name in names[r % len(names):] + names[:r % len(names)]:
                url = servers[name].url
                noop = load(url, "/v1/noop", candidates, args.window, args.connections, None, tmp, False)["rps"]
                rank = load(url, "/v1/rank", candidates, args.window, args.connections, None, tmp, False)["rps"]
                if r == 0:
                    continue  # warm-up: caches, the first ranking-log batches
                rps[name]["noop"].append(noop)
                rps[name]["rank"].append(rank)
                print(f"round {r} {name}: no-op {noop:.0f} req/s, rank {rank:.0f} req/s = {rank / noop:.1%}", flush=True)
        med = statistics.median
        print("\n| variant | no-op req/s | rank req/s | rank / no-op (median of rounds; range) |\n|---|---|---|---|")
        for name in names:
            ratios = [b / a for a, b in zip(rps[name]["noop"], rps[name]["rank"])]
            print(f"| {name} | {med(rps[name]['noop']):.0f} | {med(rps[name]['rank']):.0f} | "
                  f"{med(ratios):.1%} ({min(ratios):.0%}-{max(ratios):.0%}) |")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
