"""Benchmark of the online history in steady state: once the service has run longer than
the click window (2 days), every ranking also forgets the oldest open ranking.

Fills an OnlineHistory with --open rankings spread over the click window, then adds
--steps more, each expiring one, and prints the time per add_ranking over the last
--tail of them. Side by side, a variant that finds the oldest ranking as the first key
of the request dict (next(iter(dict)), what the service did before): after deletions
from its front, that call walks every slot deleted since the dict last resized, so its
cost grows with the time since the resize instead of staying flat.

    .venv/bin/python benchmarks/bench_online_history.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.online import OnlineHistory  # noqa: E402

SHOWN = [("b-policy-01", "policy"), ("b-info-02", "info"), ("b-survey-01", "survey")]


class DictOrderHistory(OnlineHistory):
    """The previous rule: the oldest open ranking is the request dict's first key."""

    def _forget_old(self, now: float) -> None:
        self._order.clear()  # unused here
        while self._requests:
            oldest = next(iter(self._requests))
            if self._requests[oldest][1] >= now - self.click_window:
                return
            del self._requests[oldest]


def run(cls, n_open: int, steps: int, tail: int) -> float:
    h = cls(click_window_days=2.0)
    window = h.click_window
    dt = window / n_open
    for i in range(n_open):
        h.add_ranking(f"s-{i % 180000}", f"r-{i}", i * dt, SHOWN)
    times = []
    for k in range(n_open, n_open + steps):
        t = time.perf_counter()
        h.add_ranking(f"s-{k % 180000}", f"r-{k}", k * dt, SHOWN)
        times.append(time.perf_counter() - t)
    return statistics.median(times[-tail:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--open", type=int, default=400_000, help="rankings open to clicks (within the window)")
    p.add_argument("--steps", type=int, default=200_000, help="rankings added after that, each expiring one")
    p.add_argument("--tail", type=int, default=20_000, help="the last rankings timed")
    args = p.parse_args()
    print(f"{args.open:,} open rankings, then {args.steps:,} more (each forgets the oldest); "
          f"median time of the last {args.tail:,} add_ranking calls:", flush=True)
    for name, cls in (("deque of request ids (now)", OnlineHistory), ("first key of the dict (before)", DictOrderHistory)):
        print(f"  {name:31s} {run(cls, args.open, args.steps, args.tail) * 1e6:8.1f} us", flush=True)


if __name__ == "__main__":
    main()
