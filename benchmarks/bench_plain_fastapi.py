"""The ranking service's throughput against a plain FastAPI app's, side by side.

The goal: POST /v1/rank keeps at least 60% of the requests per second of a plain FastAPI
endpoint that parses the same body (plain_app.py: no middleware, uvloop and httptools,
the same number of workers). The service's own /v1/noop is no yardstick for this: it
carries the service's middleware, auth and admission.

For each worker count, both servers run at once on loopback: the plain app, and the real
service (``recommender serve``, set up as bench_service.py sets it up: the stand-in model
or ``--model``, and ``--province``). They are loaded in alternating windows (plain,
service, plain, service, ...; the order swapped every other round) by wrk when installed
(32 connections, 1 thread), else by bench_service.py's asyncio client, with the same
30-candidate bodies. The service's ``max_queue_ms`` is raised (``--max-queue-ms``) so that
admission control does not shed the closed loop's queue: this measures what a worker can
serve, and only answers 200 count.

Printed: every window; per server, the median requests/s; the median of the rounds'
service / plain ratios (with their range); and each server's CPU per request (all its
processes and threads, from /proc). The CPU ratio plain / service is the throughput ratio
the servers would show if each had its cores to itself: on a shared machine, where other
programs take the cores in turns, it drifts much less than requests/s.

    .venv/bin/python benchmarks/bench_plain_fastapi.py                          # 1 and 2 workers
    .venv/bin/python benchmarks/bench_plain_fastapi.py --workers 1 --rounds 8 --window 5
    .venv/bin/python benchmarks/bench_plain_fastapi.py --model models/V --province DIR --noop
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the launcher the integration tests use
from bench_service import add_setup_arguments, load, prepare, start_server  # noqa: E402
from launcher import free_port, stop_group  # noqa: E402


class PlainServer:
    """plain_app.py in a child process (its own process group) on a free loopback port."""

    def __init__(self, workers: int, python: str = sys.executable, ready_timeout: float = 30.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._output = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([python, str(HERE / "plain_app.py"), "--port", str(self.port),
                                      "--workers", str(workers)], cwd=HERE, stdout=self._output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        import httpx

        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                self._output.seek(0)
                raise RuntimeError(f"the plain app exited: {self._output.read().decode(errors='replace')}")
            try:
                if httpx.post(self.url + "/v1/rank", json={"staff_id": "s-1"}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the plain app did not answer in {ready_timeout:g} s")
            time.sleep(0.1)
        time.sleep(0.5 * workers)  # the other workers listen a moment after the first

    def stop(self) -> None:
        stop_group(self.proc)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process and its descendants so far."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except (OSError, IndexError):
            continue
    return total


def measure(workers: int, config: Path, candidates: list[str], args, tmp: Path, use_wrk: bool) -> dict:
    """Alternating windows on the plain app and the service (and its no-op with --noop)."""
    plain = PlainServer(workers)
    service = start_server(config, workers)
    try:
        targets = {"plain": (plain.url, "/v1/rank", plain.proc.pid),
                   "service": (service.url, "/v1/rank", service.proc.pid)}
        if args.noop:
            targets["noop"] = (service.url, "/v1/noop", service.proc.pid)
        names = list(targets)
        windows: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.rounds + 1):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                url, path, pid = targets[name]
                cpu = tree_cpu(pid)
                w = load(url, path, candidates, args.window, args.connections, None, tmp, use_wrk)
                w["cpu_us"] = 1e6 * (tree_cpu(pid) - cpu) / max(w["requests"], 1)
                if r == 0:
                    continue  # warm-up: caches, the first ranking-log batches
                windows[name].append(w)
                w["rps"] *= (w["requests"] - w["errors"]) / max(w["requests"], 1)  # answers 200 only
                print(f"workers={workers} round {r} {name:7s}: {w['rps']:7.0f} req/s  p50 {w['p50_ms']:.2f} ms  "
                      f"p99 {w['p99_ms']:.2f} ms  "
                      f"server CPU {w['cpu_us']:.0f} us/request  errors {w['errors']}", flush=True)
    finally:
        service.stop()
        plain.stop()
    return windows


def summary(workers: int, windows: dict[str, list[dict]]) -> dict:
    med = statistics.median
    out = {"workers": workers}
    for name, ws in windows.items():
        out[name] = {"rps": med(w["rps"] for w in ws), "cpu_us": med(w["cpu_us"] for w in ws), "p50_ms": med(w["p50_ms"] for w in ws),
                     "p99_ms": med(w["p99_ms"] for w in ws), "errors": sum(w["errors"] for w in ws)}
    for name in [n for n in windows if n != "plain"]:
        ratios = [s["rps"] / p["rps"] for p, s in zip(windows["plain"], windows[name])]
        out[f"{name}_over_plain"] = {"median": med(ratios), "min": min(ratios), "max": max(ratios)}
        cpu = [p["cpu_us"] / s["cpu_us"] for p, s in zip(windows["plain"], windows[name])]
        out[f"{name}_over_plain_cpu"] = {"median": med(cpu), "min": min(cpu), "max": max(cpu)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(p)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=6, help="rounds of alternating windows (after a warm-up round)")
    p.add_argument("--window", type=float, default=4.0, help="seconds per window (wrk takes whole seconds)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--max-queue-ms", type=float, default=1000.0,
                   help="the service's max_queue_ms: high by default, so that it does not shed the closed loop's "
                        "32 waiting requests (a 503 is cheap and would count as throughput)")
    p.add_argument("--noop", action="store_true", help="also load the service's /v1/noop in each round")
    p.add_argument("--client-tool", choices=["auto", "wrk", "python"], default="auto",
                   help="wrk if installed (auto), else the built-in asyncio client")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    args.service_extra = {"max_queue_ms": args.max_queue_ms}
    use_wrk = args.client_tool == "wrk" or (args.client_tool == "auto" and shutil.which("wrk") is not None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-plain-"))
    results = {"tool": "wrk" if use_wrk else "python", "connections": args.connections, "window_s": args.window,
               "rounds": args.rounds, "cpus": os.cpu_count(), "summaries": []}
    try:
        config, candidates, info = prepare(tmp, args)
        results["model"] = info["model"]
        print(f"model {info['model']}, {len(candidates)} candidates, load by {results['tool']} "
              f"({args.connections} connections), {args.rounds} rounds of {args.window:g} s windows", flush=True)
        for w in args.workers:
            results["summaries"].append(summary(w, measure(w, config, candidates, args, tmp, use_wrk)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    extra = "noop" in results["summaries"][0] if results["summaries"] else False
    print("\n| workers | plain req/s | service rank req/s | service / plain (median of rounds; range) | "
          "server CPU per request, plain / service | plain CPU / service CPU (median of rounds) |"
          + (" service no-op req/s | no-op / plain |" if extra else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if extra else ""))
    for s in results["summaries"]:
        r, c = s["service_over_plain"], s["service_over_plain_cpu"]
        line = (f"| {s['workers']} | {s['plain']['rps']:.0f} | {s['service']['rps']:.0f} | "
                f"**{r['median']:.1%}** ({r['min']:.0%}-{r['max']:.0%}) | "
                f"{s['plain']['cpu_us']:.0f} / {s['service']['cpu_us']:.0f} us | "
                f"{c['median']:.1%} ({c['min']:.0%}-{c['max']:.0%}) |")
        if extra:
            line += f" {s['noop']['rps']:.0f} | {s['noop_over_plain']['median']:.1%} |"
        print(line)
    for s in results["summaries"]:
        r = s["service_over_plain"]
        print(f"workers={s['workers']}: service / plain throughput {r['median']:.1%} (median of {args.rounds} rounds; "
              f"goal: at least 60%)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
