"""Outcomes as the objective, against the simulator's ground truth: in several simulated
provinces with outcomes, a model trained for outcomes and one trained for clicks (on the
same days), and popularity, are valued on outcomes by the offline A/B of the next day
(training.ope, --objective outcomes) and by the truth (simulator.truevalue). Prints each
province's figures, then how often each estimator's 95% interval covered the truth, and
the true outcomes per request of each policy.

    .venv/bin/python benchmarks/bench_outcomes.py [--provinces 10] [--staff 5000] [--days 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.progress import progress_bar
from recommender.timeutil import parse_ts
from simulator import GroundTruth, SimulationConfig, simulate
from simulator.truevalue import TrueValue
from training.objective import OUTCOMES
from training.ope.data import build_bandit
from training.ope.evaluate import evaluate
from training.ope.policies import model_policy, popularity_policy
from training.ope.reward import click_matrix, fit_reward_model
from training.train import TrainConfig, train

START = "2026-03-02"


def one(folder: Path, staff_n: int, days: int, seed: int) -> dict:
    simulate(folder, SimulationConfig(staff=staff_n, days=days, seed=seed, outcomes=True, start=START))
    staff, catalog = load_staff(folder / "staff.csv"), load_banners(folder / "banners.json")
    log = load_impressions(folder / "impressions.jsonl", catalog=catalog)
    past, evaluated = log.split(parse_ts(f"{START}T00:00:00+09:00") + (days - 1) * 86400.0)
    models = {"outcome model": train(staff, catalog, past, None, TrainConfig(objective=OUTCOMES, models=("logistic",))),
              "click model": train(staff, catalog, past, None, TrainConfig(models=("logistic",)))}
    bandit = build_bandit(evaluated, catalog, staff, 3, history_logs=[past], objective=OUTCOMES)
    truth = TrueValue(GroundTruth.load(folder), bandit, [past, evaluated], OUTCOMES)
    reward, _ = fit_reward_model(staff, catalog, evaluated, [past], objective=OUTCOMES)
    q = click_matrix(bandit, reward, OUTCOMES.bound(bandit.catalog))
    policies = [model_policy(bandit, m.artifact, name=name) for name, m in models.items()] + [popularity_policy(bandit)]
    result = evaluate(bandit, policies, q, 200, seed, breakdowns=False)
    return {"requests": bandit.n, "outcomes": float(evaluated.outcome.sum()),
            "policies": {p.name: {"truth": truth(p), **result.policies[p.name]} for p in policies}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provinces", type=int, default=10)
    ap.add_argument("--staff", type=int, default=5000)
    ap.add_argument("--days", type=int, default=5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in progress_bar(range(args.provinces), desc="provinces", unit="province"):
            runs.append(one(Path(tmp) / str(seed), args.staff, args.days, seed))
            r = runs[-1]
            print(f"province {seed}: {r['requests']:,} requests, {r['outcomes']:.0f} outcomes; " + "; ".join(
                f"{n}: true {v['truth']:.4f}, DR {v['dr']['value']:.4f} [{v['dr']['ci_low']:.4f}, {v['dr']['ci_high']:.4f}]"
                for n, v in r["policies"].items()), flush=True)
    names = list(runs[0]["policies"])
    print(f"\n{args.provinces} provinces of {args.staff:,} staff, the last of {args.days} days evaluated "
          f"({time.perf_counter() - t0:.0f} s)")
    print("| policy | true outcomes per request (mean) | " + " | ".join(f"{e.upper()} covered" for e in ("ips", "snips", "dm", "dr"))
          + " | DR error (mean abs) |")
    print("|---|---|---|---|---|---|---|")
    for n in names:
        vals = [r["policies"][n] for r in runs]
        cover = {e: sum(v[e]["ci_low"] <= v["truth"] <= v[e]["ci_high"] for v in vals) for e in ("ips", "snips", "dm", "dr")}
        err = np.mean([abs(v["dr"]["value"] - v["truth"]) for v in vals])
        print(f"| {n} | {np.mean([v['truth'] for v in vals]):.4f} | "
              + " | ".join(f"{cover[e]}/{len(vals)}" for e in cover) + f" | {err:.4f} |")
    wins = sum(r["policies"]["outcome model"]["truth"] > r["policies"]["click model"]["truth"] for r in runs)
    print(f"\nthe outcome model's true value above the click model's in {wins} of {len(runs)} provinces")


if __name__ == "__main__":
    main()
