"""Memory of the frequency caps' exposure ledger (recommender.caps) per person-banner pair,
traced in process: 20,000 people x 20 banners, 5 impressions each within a day and a
click on a tenth of the pairs, for a per-day cap and for a per-day cap with an unclicked
rule over 14 days.

    .venv/bin/python benchmarks/bench_caps_memory.py
"""
from __future__ import annotations

import random
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recommender.caps import ExposureLedger  # noqa: E402
from recommender.domain import FrequencyCap  # noqa: E402

PEOPLE, BANNERS, IMPRESSIONS = 20_000, 20, 5


def main() -> None:
    for cap in (FrequencyCap(per_day=3), FrequencyCap(per_day=3, unclicked_impressions=10, unclicked_days=14.0)):
        tracemalloc.start()
        ledger = ExposureLedger()
        ledger.fit_to([cap])
        base = tracemalloc.get_traced_memory()[0]
        rng = random.Random(0)
        for p in range(PEOPLE):
            staff = f"s-{p:06d}"
            for b in range(BANNERS):
                banner = f"b-{b:02d}"
                for k in range(IMPRESSIONS):
                    ledger.add_impression(staff, banner, 1000.0 + k * 3600 + rng.random())
                if rng.random() < 0.1:
                    ledger.add_click(staff, banner, 1000.0)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"{cap}: {used / (PEOPLE * BANNERS):.0f} bytes per person-banner pair "
              f"(keeps {ledger.keep} impression times within {ledger.horizon / 86400:g} days)")


if __name__ == "__main__":
    main()
