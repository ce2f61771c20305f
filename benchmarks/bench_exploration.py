"""Exploration policies in the closed loop, side by side (simulator.closedloop).

Each policy serves the same simulated province for --days days around a model retrained
every day on its own logs. Printed per policy: the TRUE expected clicks of what it showed
(from the ground truth), per day and in total; the difference to epsilon-greedy 0.1 with
a 95% paired bootstrap interval over days; and, for each banner that starts after the
first day, the impressions it had when the model first ordered its pairs with other
banners as well as it orders the established banners' pairs (pair agreement with the
truth's order).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from simulator import SETTINGS, setting_config
from simulator.closedloop import POLICIES, ClosedLoopConfig, ClosedLoopResult, policy_by_name, run_closed_loop

REFERENCE = "epsilon-greedy-0.1"


def paired_interval(a: list[float], b: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of sum(a) - sum(b), resampling days (paired) with replacement."""
    diff = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    sums = diff[rng.integers(0, len(diff), (rounds, len(diff)))].sum(axis=1)
    return float(np.quantile(sums, 0.025)), float(np.quantile(sums, 0.975))


def report(result: ClosedLoopResult) -> str:
    runs = result.runs
    names = list(runs)
    days = len(next(iter(runs.values())).expected_clicks)
    w = max(12, *(len(n) for n in names))
    lines = ["true expected clicks per day (from the ground truth):",
             f"{'day':>4} {'requests':>9} " + " ".join(f"{n:>{w}}" for n in names)]
    first = runs[names[0]]
    for d in range(days):
        lines.append(f"{d:>4} {first.requests[d]:>9,} " + " ".join(f"{runs[n].expected_clicks[d]:>{w},.1f}" for n in names))
    lines.append(f"{'all':>4} {sum(first.requests):>9,} " + " ".join(f"{runs[n].total_expected_clicks:>{w},.1f}" for n in names))
    lines.append("")
    lines.append("total true expected clicks, sampled clicks, and the difference to "
                 f"{REFERENCE} (95% paired bootstrap over days):")
    for n in names:
        r = runs[n]
        line = f"  {n:<{w}} {r.total_expected_clicks:>10,.1f}  sampled {sum(r.clicks):>8,}"
        if REFERENCE in runs and n != REFERENCE:
            ref = runs[REFERENCE]
            diff = r.total_expected_clicks - ref.total_expected_clicks
            lo, hi = paired_interval(r.expected_clicks, ref.expected_clicks)
            line += f"  {diff:+9.1f} ({diff / ref.total_expected_clicks:+.2%}) [{lo:+.1f}, {hi:+.1f}]"
        lines.append(line)
    lines.append("")
    lines.append("new banners: impressions when the model's pair agreement first reaches the established banners':")
    parity = {n: runs[n].parity.impressions_to_parity() for n in names}
    p0 = first.parity
    lines.append(f"  {'banner':<14} {'starts':>6} " + " ".join(f"{n:>{w}}" for n in names))
    for b, start in zip(p0.banner_ids, p0.start_day):
        cells = [parity[n][b] for n in names]
        lines.append(f"  {b:<14} {'day ' + str(start):>6} " + " ".join(f"{'never' if c is None else f'{c:,}':>{w}}" for c in cells))
    meds = [runs[n].parity.median_impressions_to_parity() for n in names]
    lines.append(f"  {'median':<14} {'':>6} " + " ".join(f"{'never' if m is None else f'{m:,.0f}':>{w}}" for m in meds))
    lines.append("")
    lines.append("time per policy (minutes): training, serving")
    for n in names:
        r = runs[n]
        lines.append(f"  {n:<{w}} {sum(r.train_seconds) / 60:5.1f} {sum(r.serve_seconds) / 60:5.1f}   "
                     f"models: {' '.join(r.models)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--staff", type=int, default=10_000,
                    help="staff of the province (default 10,000: 20,000 staff x 14 days took 6 to 10 minutes per "
                         "policy on a shared 2-core machine)")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--setting", choices=tuple(SETTINGS), default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policies", default="greedy,epsilon-greedy-0.1,epsilon-greedy-0.2",
                    help=f"comma-separated: {', '.join(POLICIES)}, or epsilon-greedy-<epsilon>")
    ap.add_argument("--out", help="keep the world and each policy's impressions in this folder")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    policies = [policy_by_name(p.strip()) for p in args.policies.split(",") if p.strip()]
    cfg = ClosedLoopConfig(world=setting_config(args.setting, staff=args.staff, days=args.days, seed=args.seed))
    print(f"closed loop: {args.staff:,} staff x {args.days} days, setting {args.setting} "
          f"({SETTINGS[args.setting]}), seed {args.seed}; {platform.machine()}, {os.cpu_count()} cores", flush=True)
    t = time.perf_counter()
    result = run_closed_loop(policies, cfg, args.out)
    took = time.perf_counter() - t
    print(report(result))
    print(f"\n{len(policies)} policies in {took / 60:.1f} min")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**result.summary(), "minutes": took / 60}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
