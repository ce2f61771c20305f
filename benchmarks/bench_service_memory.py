"""The service's start-up time and memory per worker with a whole province's click history.

Starts `recommender serve` (default 2 workers) on a simulated province's history file
(180,000 staff x 14 days: about 9 M impressions) and a trained model, and measures, for a
cold start (the history cache is empty: the file is read, validated and its counters
built and saved once) and then ``--runs`` warm starts (the workers map the saved
counters):

- the time from launch until every worker answers (``/readyz`` ready, ``/v1/banners``);
- each worker's resident memory (RSS) and its proportional share (PSS: pages shared
  between workers, such as the mapped counters, count once in total), from
  /proc/PID/smaps_rollup, after a few hundred rank requests.

    recommender simulate --out DIR --staff 180000 --days 14
    recommender train --staff DIR/staff.csv --banners DIR/banners.json --impressions DIR/impressions.jsonl --out M
    .venv/bin/python benchmarks/bench_service_memory.py --province DIR --model M/<version>

Goals: at most 400 MB per worker and a start within 15 s, two workers sharing one copy.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the launcher the integration tests use
from launcher import ServeProcess  # noqa: E402
from service_support import config_text  # noqa: E402


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def memory(pid: int) -> dict[str, float]:
    """RSS and PSS of a process, MB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss", "Shared_Clean", "Private_Dirty"):
            values[name.lower()] = int(rest.split()[0]) / 1024
    return values


def workers_of(server: ServeProcess) -> list[int]:
    """The uvicorn worker processes (the supervisor's children that are not its helpers)."""
    pids = children(server.proc.pid)
    return [p for p in pids if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]


def rank_some(server: ServeProcess, n: int = 300) -> None:
    for i in range(n):
        body = json.dumps({"staff_id": f"s-{(i * 7919) % 180000:06d}"}).encode()
        req = urllib.request.Request(f"{server.url}/v1/rank", body, {"Content-Type": "application/json",
                                                                     "X-API-Key": server.key})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


def one_start(config: Path, workers: int) -> dict:
    t = time.perf_counter()
    server = ServeProcess(config, workers, cwd=config.parent, ready_timeout=900.0, log_level="info")
    try:
        ready = time.perf_counter() - t
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=10) as r:
            readyz = json.loads(r.read())
        rank_some(server)
        pids = workers_of(server)
        return {"start_s": ready, "workers": [memory(p) for p in pids], "readyz": readyz}
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--province", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True, help="a trained model folder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="warm starts after the cold one")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-memory-"))
    try:
        version = args.model.name
        shutil.copytree(args.model, tmp / "models" / version)
        (tmp / "models" / "registry.json").write_text(json.dumps({"arms": {"A": version}}))
        service = {"db": "events.db", "models": "models", "banners": str(args.province.resolve() / "banners.json"),
                   "staff": str(args.province.resolve() / "staff.csv"),
                   "history": str(args.province.resolve() / "impressions.jsonl"), "log_salt": "bench"}
        (tmp / "service.toml").write_text(config_text(service, client_key="bench-key", admin_key="bench-admin"))
        rows = []
        for run in range(args.runs + 1):
            kind = "cold" if run == 0 else "warm"
            r = one_start(tmp / "service.toml", args.workers)
            rows.append((kind, r))
            mem = ", ".join(f"RSS {w['rss']:.0f} MB / PSS {w['pss']:.0f} MB" for w in r["workers"])
            print(f"{kind} start: ready in {r['start_s']:.1f} s; workers: {mem}; "
                  f"history: {r['readyz'].get('history', r['readyz'])}", flush=True)
        warm = [r for kind, r in rows if kind == "warm"]
        if warm:
            print(f"warm starts ({len(warm)}): median {statistics.median(r['start_s'] for r in warm):.1f} s; "
                  f"median worker RSS {statistics.median(w['rss'] for r in warm for w in r['workers']):.0f} MB, "
                  f"PSS {statistics.median(w['pss'] for r in warm for w in r['workers']):.0f} MB")
        print(f"cold start (reads and validates the file, builds and saves the counters): {rows[0][1]['start_s']:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
