"""Loading 1,000,000 impression rows with full validation (goal: 10 s or less).

The rows come from the simulator (the contract format written by `simulate`), cut to
exactly --rows lines. Prints each run and the median.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from recommender.contracts import load_banners, load_impressions
from simulator import SimulationConfig, simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        days = 2
        staff = int(args.rows / (days * 3 * 1.75 * 2 / 3)) + 1000
        simulate(tmp, SimulationConfig(staff=staff, days=days, seed=1))
        src, dst = tmp / "impressions.jsonl", tmp / "cut.jsonl"
        with open(src, "rb") as f, open(dst, "wb") as g:
            for i, line in enumerate(f):
                if i >= args.rows:
                    break
                g.write(line)
        catalog = load_banners(tmp / "banners.json")
        times = []
        for r in range(args.repeat):
            t = time.perf_counter()
            log = load_impressions(dst, catalog=catalog)
            times.append(time.perf_counter() - t)
            print(f"run {r + 1}: {len(log):,} rows in {times[-1]:.2f} s")
        med = statistics.median(times)
        print(f"load_impressions: median {med:.2f} s for {len(log):,} rows "
              f"({len(log) / med / 1e6:.2f} M rows/s); goal <= 10 s: {'met' if med <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
