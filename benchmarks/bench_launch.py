"""The launch scenario (simulator/launch.py): no logs on day 0, an audience growing to all
staff over two weeks, a daily retrain with its promotion gate. Prints, per day, the true
expected clicks per request of what was served against the operators' order alone, and
the day the first model was promoted.

    .venv/bin/python benchmarks/bench_launch.py [--staff 60000] [--days 14] [--epsilon 0.1]
        [--first-share 0.05] [--seed 0] [--out /tmp/launch]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from simulator.launch import LaunchConfig, run_launch
from training.fitting import TrainConfig
from training.retrain import RetrainConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--staff", type=int, default=60_000)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--epsilon", type=float, default=0.1, help="the service's exploration")
    p.add_argument("--first-share", type=float, default=0.05, help="the audience on day 0")
    p.add_argument("--eval-days", type=float, default=2.0, help="the newest days the gate evaluates on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/launch")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    t = time.perf_counter()
    cfg = LaunchConfig(staff=args.staff, days=args.days, first_share=args.first_share, epsilon=args.epsilon,
                       seed=args.seed, retrain=RetrainConfig(eval_days=args.eval_days, epsilon=args.epsilon,
                                                             train=TrainConfig(refit=True, seed=args.seed)))
    rows = run_launch(Path(args.out), cfg)
    print(f"\nlaunch: {args.staff:,} staff over {args.days} days, exploration {args.epsilon:g}, "
          f"{time.perf_counter() - t:.0f} s\n")
    print("| day | audience | requests | serving | true clicks per request, served | operators' order alone "
          "| served / operators | that night's retrain |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = r.retrain.split(":", 1)[0]
        print(f"| {r.day} | {r.audience_share:.0%} | {r.requests:,} | {r.model} | {r.served_clicks_per_request:.4f} | "
              f"{r.operators_clicks_per_request:.4f} | {r.served_clicks_per_request / r.operators_clicks_per_request:.2f} "
              f"| {verdict} |")
    first = next((r.day for r in rows if r.retrain.startswith("promoted")), None)
    print(f"\nfirst model promoted the night of day {first}" if first is not None else "\nno model was promoted")
    for r in rows:
        print(f"  night {r.day}: {r.retrain}")


if __name__ == "__main__":
    main()
