"""Delivery goals (simulator/goals.py): the same simulated days served with no goal, with
the goal banners pinned, and with the service's pacing, side by side. A policy banner
must reach 80% of its audience in 5 days and a survey must get 1.5 times the clicks it
gets without a goal. Prints whether each way met the goals and the true expected clicks
of all banners over those days; with --seeds several seeds, one table per seed.

    .venv/bin/python benchmarks/bench_goals.py [--staff 20000] [--seeds 0 1 2] [--out /tmp/goals]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from simulator.goals import GoalsConfig, run_goals, table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--staff", type=int, default=20_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--warmup-days", type=int, default=3)
    p.add_argument("--goal-days", type=int, default=5)
    p.add_argument("--reach-share", type=float, default=0.8)
    p.add_argument("--clicks-factor", type=float, default=1.5)
    p.add_argument("--out", default="/tmp/goals")
    p.add_argument("--json", help="also write every seed's results here")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    everything = {}
    for seed in args.seeds:
        t = time.perf_counter()
        cfg = GoalsConfig(staff=args.staff, warmup_days=args.warmup_days, goal_days=args.goal_days,
                          reach_share=args.reach_share, clicks_factor=args.clicks_factor, seed=seed)
        results = run_goals(Path(args.out) / f"seed-{seed}", cfg)
        print(f"\nseed {seed}: {args.staff:,} staff, {args.warmup_days} days of warm-up, goals over "
              f"{args.goal_days} days ({time.perf_counter() - t:.0f} s)\n")
        print(table(results))
        everything[seed] = [asdict(r) for r in results]
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
