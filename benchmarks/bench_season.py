"""The season (simulator/season.py): weeks of service from zero with no human action, the
nightly retrain behind its gate with online ramps for what it cannot decide, against a
loop that always serves the newest model, the operators' order alone and the oracle.

Prints the day-by-day table (true expected clicks per request, from the ground truth),
the models that served, the path that decided each night, and the season's summary:
the gated loop's true clicks as a share of the always-promote loop's, the worst day
against the operators' order after the first model, the longest stretch without a new
model, and how far the candidate trained on shuffled clicks got.

    .venv/bin/python benchmarks/bench_season.py [--staff 5000] [--weeks 8] [--seed 0]
        [--corrupt-night 24] [--out /tmp/season]
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from simulator.season import ALWAYS, GATED, SeasonConfig, run_season
from training.retrain import RetrainConfig
from training.train import TrainConfig


def longest_without_a_new_model(days: list[dict]) -> int:
    """Days from the first promotion on during which the model serving most requests stayed
    the same, at the longest."""
    main = [d["serving"].split(" ")[0] for d in days]
    first = next((i for i, m in enumerate(main) if m != "operators"), None)
    if first is None:
        return len(days)
    longest = run = 1
    for a, b in zip(main[first:], main[first + 1:]):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    return longest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--staff", type=int, default=5_000)
    p.add_argument("--weeks", type=int, default=8)
    p.add_argument("--new-banners", type=int, default=6, help="new banners a week")
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--corrupt-night", type=int, default=24, help="the night trained on shuffled clicks (-1: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/season")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    t = time.perf_counter()
    cfg = SeasonConfig(staff=args.staff, weeks=args.weeks, new_banners_per_week=args.new_banners,
                       epsilon=args.epsilon, seed=args.seed,
                       corrupt_night=None if args.corrupt_night < 0 else args.corrupt_night,
                       retrain=RetrainConfig(eval_days=2.0, epsilon=args.epsilon, bootstrap=100, seed=args.seed,
                                             train=TrainConfig(refit=True, seed=args.seed)))
    s = run_season(Path(args.out), cfg)
    gated, always = s["days"][GATED], s["days"][ALWAYS]
    print(f"\nseason: {args.staff:,} staff, {args.weeks} weeks, {args.new_banners} new banners a week, "
          f"exploration {args.epsilon:g}, {time.perf_counter() - t:.0f} s\n")
    print("| day | audience | requests | serving (gated loop) | gated | always promote | operators' order | oracle "
          "| that night | path |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for g, a in zip(gated, always):
        verdict = g["night"].split(":", 1)[0]
        print(f"| {g['day']} | {g['audience_share']:.0%} | {g['requests']:,} | {g['serving']} | {g['served']:.4f} | "
              f"{a['served']:.4f} | {g['operators']:.4f} | {g['oracle']:.4f} | {verdict} | {g['path'] or '-'} |")
    total = {name: sum(d["served"] * d["requests"] for d in days) for name, days in (("gated", gated),
                                                                                     ("always", always))}
    ops = sum(d["operators"] * d["requests"] for d in gated)
    oracle = sum(d["oracle"] * d["requests"] for d in gated)
    first = next((i for i, d in enumerate(gated) if not d["serving"].startswith("operators")), None)
    after = gated[first:] if first is not None else []
    worst = min(after, key=lambda d: d["served"] / d["operators"]) if after else None
    print(f"\ntrue clicks over the season: gated {total['gated']:,.0f}, always promote {total['always']:,.0f}, "
          f"operators' order {ops:,.0f}, oracle {oracle:,.0f}")
    print(f"gated / always promote: {total['gated'] / total['always']:.1%}")
    if worst:
        print(f"first model served on day {first}; worst day after it: day {worst['day']}, "
              f"{worst['served'] / worst['operators']:.2f}x the operators' order")
    for name, days in (("gated", gated), ("always", always)):
        print(f"{name}: longest stretch with the same main model after the first: {longest_without_a_new_model(days)} "
              f"days; models served: {len([m for m in s['served_days'][name] if m != 'operators'])}")
    bad = s["corrupted"][GATED]
    if bad:
        share = s["largest_share"][GATED].get(bad, 0.0)
        night = next(d for d in gated if d["day"] == cfg.corrupt_night)
        print(f"corrupted candidate {bad}: largest share of a day's requests {share:.0%}; "
              f"decided by {night['path'] or '-'}: {night['night'][:300]}")
    paths = {}
    for d in gated:
        paths[d["path"] or "-"] = paths.get(d["path"] or "-", 0) + 1
    print("nights by the path that decided: " + ", ".join(f"{k} {v}" for k, v in sorted(paths.items())))
    print("\nnights (gated loop):")
    for d in gated:
        print(f"  {d['day']}: {d['night']}")


if __name__ == "__main__":
    main()
