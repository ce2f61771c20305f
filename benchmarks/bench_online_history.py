"""Benchmark of the rankings open to clicks in steady state: once the service has run
longer than the click window (2 days), every ranking also lets the oldest open one go.

Fills an OnlineHistory with --open rankings spread over the click window (3 banners each,
32-character request ids, 180,000 staff ids), then adds --steps more, each expiring one,
and prints the median time per add_ranking over the last --tail of them, and the memory
per open ranking: the open-rankings arrays divided by the bound, plus what the Python
heap grew by while filling (traced), less the click history's own counters (measured by
the same fill with a bound of 1). Side by side, the same for the layout used before (a
dict from request id to a small object per ranking, and a deque of ids in order),
reproduced here.

    .venv/bin/python benchmarks/bench_online_history.py [--open 400000] [--steps 200000] [--tail 20000]
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.online import OnlineHistory  # noqa: E402

SHOWN = [("b-policy-01", "policy"), ("b-info-02", "info"), ("b-survey-01", "survey")]


class _Entry:
    __slots__ = ("staff", "ts", "shown", "clicked")

    def __init__(self, staff, ts, shown):
        self.staff, self.ts, self.shown, self.clicked = staff, ts, shown, 0


class DictRankings:
    """The layout before: one object per ranking in a dict, ids in a deque."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.d: dict[str, _Entry] = {}
        self.order: collections.deque[str] = collections.deque()
        self.evicted = 0

    def __len__(self):
        return len(self.d)

    def row(self, rid):
        return rid if rid in self.d else -1

    def add(self, rid, staff, ts, shown):
        if rid in self.d:
            return False
        flat = tuple(x for pair in shown for x in pair)
        self.d[rid] = _Entry(staff, ts, flat)
        self.order.append(rid)
        while len(self.order) > self.capacity:
            del self.d[self.order.popleft()]
            self.evicted += 1
        return True

    def oldest_ts(self):
        return self.d[self.order[0]].ts if self.order else None

    def drop_oldest(self):
        del self.d[self.order.popleft()]

    def nbytes(self):
        return 0


def history(layout: str, bound: int) -> OnlineHistory:
    h = OnlineHistory(click_window_days=2.0, max_open_rankings=bound, reserve_open_rankings=True)
    if layout == "dict":
        h._open = DictRankings(bound)
    return h


def fill(h: OnlineHistory, n: int, start: int = 0) -> list[float]:
    dt = h.click_window / n
    times = []
    for k in range(start, start + n):
        t = time.perf_counter()
        h.add_ranking(f"s-{k % 180000:06d}", f"{k:032x}", k * dt, SHOWN)
        times.append(time.perf_counter() - t)
    return times


def bytes_per_ranking(layout: str, n: int) -> float:
    def heap(bound: int) -> tuple[float, OnlineHistory]:
        h = history(layout, bound)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        fill(h, n)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return grown, h

    full, h = heap(n)
    counters_only, _ = heap(1)
    return (full - counters_only + h._open.nbytes()) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--open", type=int, default=400_000, help="rankings open to clicks (within the window)")
    p.add_argument("--steps", type=int, default=200_000, help="rankings added after that, each expiring one")
    p.add_argument("--tail", type=int, default=20_000, help="the last rankings timed")
    args = p.parse_args()
    fill(history("ring", 1000), 1000)  # imports and compiled code out of the way of what is traced
    print(f"{args.open:,} open rankings, then {args.steps:,} more (each lets the oldest go)")
    print("| layout | bytes per open ranking | add_ranking median, last calls (us) |")
    print("|---|---|---|")
    for layout, name in (("ring", "flat arrays, hashed ids (now)"), ("dict", "dict of objects (before)")):
        per = bytes_per_ranking(layout, args.open)
        h = history(layout, args.open)
        fill(h, args.open)
        dt = h.click_window / args.open
        times = []
        for k in range(args.open, args.open + args.steps):
            t = time.perf_counter()
            h.add_ranking(f"s-{k % 180000:06d}", f"{k:032x}", k * dt, SHOWN)
            times.append(time.perf_counter() - t)
        print(f"| {name} | {per:.0f} | {statistics.median(times[-args.tail:]) * 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
