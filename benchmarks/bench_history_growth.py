"""What the service's in-memory state grows by once its rankings open to clicks are at
their bound: the soak's traffic replayed in process, with the memory traced.

180,000 rankings (10 minutes at 300 a second) of 5 banners out of 30 for 20,000 staff
ids in turn, a tenth of them explored (5 banners at random), the rest one of 7 profile
lists, fed to the service's OnlineHistory with its open rankings bounded at 50,000. Each
simulated minute prints the traced memory, the open rankings and the person-banner pairs
the click history holds (each pair seen for the first time adds counters).

    .venv/bin/python benchmarks/bench_history_growth.py
"""
from __future__ import annotations

import random
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.online import OnlineHistory  # noqa: E402

RATE, MINUTES, STAFF, BOUND = 300, 10, 20_000, 50_000


def main() -> None:
    rng = random.Random(0)
    history = OnlineHistory(7.0, max_open_rankings=BOUND)
    categories = ["policy", "info", "custom", "survey", "event"]
    banners = [(f"b-{i:02d}", categories[i % 5]) for i in range(30)]
    tracemalloc.start()
    t0 = 1_700_000_000.0
    per_minute = RATE * 60
    previous = None
    print("| minute | traced MB | open rankings | person-banner pairs | MB per 1,000 new pairs |")
    print("|---|---|---|---|---|")
    for i in range(per_minute * MINUTES):
        staff = f"s-{i % STAFF:06d}"
        shown = rng.sample(banners, 5) if rng.random() < 0.1 else banners[i % STAFF % 7:][:5]
        history.add_ranking(staff, f"r-{i}", t0 + i / RATE, shown)
        if (i + 1) % per_minute == 0:
            traced = tracemalloc.get_traced_memory()[0] / 2**20
            pairs = history._first.n_pairs  # the click history's person x banner entries
            rate = "" if previous is None else f"{1000 * (traced - previous[0]) / max(pairs - previous[1], 1):.3f}"
            print(f"| {(i + 1) // per_minute} | {traced:.1f} | {history.counts()['open_rankings']:,} | {pairs:,} | {rate} |")
            previous = (traced, pairs)


if __name__ == "__main__":
    main()
