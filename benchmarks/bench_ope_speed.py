"""Offline evaluation speed: 1,000,000 logged impressions, 2 policies, 200 bootstrap
replicates, end to end (load and validate the files, candidates, click model fit and
predictions, policies, every estimator with its intervals, per position and category
breakdowns, paired difference). Goal: <= 60 s.

    .venv/bin/python benchmarks/bench_ope_speed.py [--runs 3] [--dir /tmp/ope-speed] [--model models/VERSION]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from recommender.contracts import load_banners, load_impressions, load_staff
from simulator import SimulationConfig, simulate
from training.ope.data import build_bandit
from training.ope.evaluate import evaluate, resolve_policy
from training.ope.policies import model_policy
from training.ope.reward import click_matrix, fit_reward_model
from training.fitting import fit_click_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/ope-speed")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--staff", type=int, default=95_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--model", help="a model folder as the first policy (default: a logistic click model fitted here, not timed)")
    args = ap.parse_args()
    d = Path(args.dir)
    if not (d / "impressions.jsonl").exists():
        print(f"simulating {args.staff:,} staff x {args.days} days into {d} ...")
        simulate(d, SimulationConfig(staff=args.staff, days=args.days, seed=3))
    staff = load_staff(d / "staff.csv")
    catalog = load_banners(d / "banners.json")
    times = []
    for run in range(args.runs):
        phases = {}
        t0 = t = time.perf_counter()
        log = load_impressions(d / "impressions.jsonl", catalog=catalog)
        phases["load+validate"] = time.perf_counter() - t
        t = time.perf_counter()
        bandit = build_bandit(log, catalog, staff, 3)
        phases["candidates+history"] = time.perf_counter() - t
        if args.model:
            t = time.perf_counter()
            first = resolve_policy(args.model, bandit)
            phases["model policy"] = time.perf_counter() - t
        else:
            tt = time.perf_counter()
            target = fit_click_model(staff, catalog, log)  # stands for a trained model; its fit is not part of evaluation
            skip = time.perf_counter() - tt
            t = time.perf_counter()
            first = model_policy(bandit, target, name="model")
            phases["model policy"] = time.perf_counter() - t
            t0 += skip
        t = time.perf_counter()
        second = resolve_policy("popularity", bandit)
        phases["popularity policy"] = time.perf_counter() - t
        t = time.perf_counter()
        model, name = fit_reward_model(staff, catalog, log, [])
        phases["click model fit"] = time.perf_counter() - t
        t = time.perf_counter()
        q = click_matrix(bandit, model)
        phases["click model q"] = time.perf_counter() - t
        t = time.perf_counter()
        res = evaluate(bandit, [first, second], q, n_boot=200, seed=run, click_model=name)
        phases["estimators+bootstrap"] = time.perf_counter() - t
        total = time.perf_counter() - t0
        times.append(total)
        print(f"run {run + 1}: {len(log):,} impressions, {res.n_requests:,} requests, {len(bandit.cand_banner):,} candidate rows: "
              f"{total:.1f} s  (" + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()) + ")")
    print(f"median {statistics.median(times):.1f} s of {len(times)} runs (goal <= 60 s)")


if __name__ == "__main__":
    main()
