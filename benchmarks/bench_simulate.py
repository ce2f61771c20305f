"""Simulating the full province: 180,000 staff, 14 days (goal: 2 minutes or less)."""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

from simulator import SimulationConfig, simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--staff", type=int, default=180_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    times = []
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            s = simulate(tmp, SimulationConfig(staff=args.staff, days=args.days, seed=r))
            times.append(time.perf_counter() - t)
        print(f"run {r + 1}: {s.requests:,} requests, {s.impressions:,} impressions in {times[-1]:.1f} s")
    med = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"simulate {args.staff:,} staff x {args.days} days: median {med:.1f} s, peak RSS {peak:.0f} MiB; "
          f"goal <= 120 s: {'met' if med <= 120 else 'NOT met'}")


if __name__ == "__main__":
    main()
