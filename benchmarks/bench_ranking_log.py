"""Benchmark of the ranking log: what one logged ranking costs the event store.

The service writes every ranking it answers (30 ranked candidates, ~2 KB) from a
background thread, in one statement per batch. On a machine whose cores are shared
with the load (the service benchmark runs its client on the same two cores), the CPU
the store spends here is taken from the requests, so it shows up in the rank / no-op
ratio of bench_service.py.

Compares request ids that grow with time (what the engine issues: milliseconds, then
random bits, as a UUIDv7) with fully random ids (uuid4-like), side by side: the store is
filled with --prefill rankings first, then batches of each kind alternate, and the
figures are medians over the rounds. CPU time (this process, all threads) and wall time
per logged ranking.

    .venv/bin/python benchmarks/bench_ranking_log.py
    .venv/bin/python benchmarks/bench_ranking_log.py --db postgresql://127.0.0.1:5432/test
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recommender.store import open_store  # noqa: E402
from recommender.store.base import RankingRecord  # noqa: E402

CANDIDATES = [f"b-{c}-{i:02d}" for c in ("policy", "info", "custom", "survey", "event") for i in range(1, 7)]


class Ids:
    """Request ids of one kind: ``ordered`` as the engine makes them, else random."""

    def __init__(self, ordered: bool, rng: random.Random):
        self.ordered, self.rng = ordered, rng

    def __call__(self) -> str:
        if self.ordered:
            return f"{time.time_ns() // 1_000_000:012x}{self.rng.getrandbits(80):020x}"
        return f"{self.rng.getrandbits(128):032x}"


def records(n: int, ids: Ids, rng: random.Random) -> list[RankingRecord]:
    out = []
    for i in range(n):
        order = rng.sample(CANDIDATES, len(CANDIDATES))
        items = [(b, p, rng.uniform(-6, -1), rng.random()) for p, b in enumerate(order, 1)]
        out.append(RankingRecord(ids(), time.time(), f"s-{rng.randrange(180000):06d}", "A",
                                 "20261129T153554-logistic", False, 3, items, CANDIDATES, "bench"))
    return out


def timed_batches(store, recs: list[RankingRecord], batch: int) -> tuple[float, float]:
    """CPU and wall seconds per record of logging ``recs`` in batches of ``batch``."""
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(0, len(recs), batch):
        store.log_rankings(recs[i:i + batch])
    return (time.process_time() - c0) / len(recs), (time.perf_counter() - w0) / len(recs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", help="a postgresql:// URL (a fresh schema is used); default: a temporary SQLite file")
    p.add_argument("--prefill", type=int, default=50_000, help="rankings stored before measuring")
    p.add_argument("--batch", type=int, default=130,
                   help="rankings per batch (the service's writer wakes every 0.1 s: 130 at 1,300 req/s)")
    p.add_argument("--per-round", type=int, default=2_000, help="rankings of each kind per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    rng = random.Random(7)
    kinds = {"time-ordered ids": Ids(True, rng), "random ids": Ids(False, rng)}
    stores = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-ranking-log-"))
    for k, name in enumerate(kinds):
        if args.db:
            url = f"{args.db}{'&' if '?' in args.db else '?'}schema=bench_log_{os.getpid()}_{k}"
        else:
            url = f"sqlite:///{tmp / f'events-{k}.db'}"
        stores[name] = open_store(url)
    print(f"store: {'PostgreSQL' if args.db else 'SQLite (WAL)'}; {args.prefill:,} rankings stored first; "
          f"{args.batch} per batch; {args.rounds} rounds of {args.per_round:,} of each kind", flush=True)
    for name, ids in kinds.items():
        recs = records(args.prefill, ids, rng)
        for i in range(0, len(recs), 1000):
            stores[name].log_rankings(recs[i:i + 1000])
    cpu = {name: [] for name in kinds}
    wall = {name: [] for name in kinds}
    for r in range(args.rounds):
        order = list(kinds) if r % 2 == 0 else list(kinds)[::-1]
        for name in order:
            c, w = timed_batches(stores[name], records(args.per_round, kinds[name], rng), args.batch)
            cpu[name].append(c)
            wall[name].append(w)
    for name in kinds:
        print(f"{name:17s}: CPU {statistics.median(cpu[name]) * 1e6:6.1f} us, wall {statistics.median(wall[name]) * 1e6:6.1f} us "
              f"per logged ranking (median of {args.rounds}; CPU per round: "
              f"{', '.join(f'{x * 1e6:.0f}' for x in cpu[name])})")
    ratio = [a / b for a, b in zip(cpu["time-ordered ids"], cpu["random ids"])]
    print(f"time-ordered / random, CPU per ranking, median of the rounds' ratios: {statistics.median(ratio):.2f}")
    for s in stores.values():
        if args.db:
            s.drop_schema()
        s.close()


if __name__ == "__main__":
    main()
