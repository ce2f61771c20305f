"""Offline evaluation accuracy against the simulator's ground truth.

Per seed: a province logged by epsilon-greedy (0.2) popularity; the first --history-days
are history and train the target model (training.fitting.fit_click_model, greedy); the rest
(~560,000 requests by default; --staff 24000 gives ~112,000) are evaluated exactly as
`recommender evaluate` does
(click model for DM/DR fitted on the evaluated logs, 200 bootstrap resamples). The truth
is the target's expected clicks per request under the ground-truth click model.

Reported: per estimator the relative error (mean, worst, share of seeds within 5%), the
coverage of the 95% intervals over the seeds with its own 95% (Clopper-Pearson) interval
(over 30 seeds a perfectly calibrated interval covers 27 to 30 times: coverage is a noisy
figure), and the sd of the standardised errors (error / (half-width / 1.96); 1 when the
interval's width is right, whatever the seed count). Then where plain IPS breaks down: logs with
tiny propensities (epsilon 0.01) and a target far from the logging policy (the reverse of
the popularity order), with the effective sample size and whether the tool warned.

    .venv/bin/python benchmarks/bench_ope_accuracy.py [--seeds 30] [--first-seed 1000] [--staff 120000] [--days 6] [--out results.jsonl]
    .venv/bin/python benchmarks/bench_ope_accuracy.py --summarise results.jsonl [more.jsonl ...]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.stats import beta

from recommender.contracts import load_banners, load_impressions, load_staff
from simulator import GroundTruth, SimulationConfig, simulate
from simulator.truevalue import TrueValue
from training.ope.data import build_bandit
from training.ope.evaluate import evaluate
from training.ope.policies import model_policy, popularity_scores, ranking_policy
from training.ope.reward import click_matrix, fit_reward_model
from training.fitting import fit_click_model

DAY = 86400.0
ESTS = ("ips", "snips", "dm", "dr")


def run_seed(seed: int, staff_n: int, days: int, history_days: int, epsilon: float, far: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        simulate(d, SimulationConfig(staff=staff_n, days=days, epsilon=epsilon, seed=seed))
        staff = load_staff(d / "staff.csv")
        catalog = load_banners(d / "banners.json")
        log = load_impressions(d / "impressions.jsonl", catalog=catalog)
        past, ev = log.split(float(log.ts.min()) + history_days * DAY)
        target_model = fit_click_model(staff, catalog, past, kind="logistic")
        bandit = build_bandit(ev, catalog, staff, 3, history_logs=[past])
        pols = [model_policy(bandit, target_model, name="model")]
        if far:  # the reverse of the popularity order: far from the logging policy
            pols.append(ranking_policy(bandit, -popularity_scores(bandit), name="anti-popularity"))
        model, _ = fit_reward_model(staff, catalog, ev, [past])
        q = click_matrix(bandit, model)
        res = evaluate(bandit, pols, q, n_boot=200, seed=seed, breakdowns=False)
        tv = TrueValue(GroundTruth.load(d), bandit, [past, ev])
        out = {"seed": seed, "epsilon": epsilon, "requests": res.n_requests, "seconds": round(time.perf_counter() - t0, 1), "resample": res.resample,
               "policies": {}}
        for p in pols:
            diag = res.diagnostics[p.name]
            out["policies"][p.name] = {
                "truth": tv(p), **{e: res.policies[p.name][e] for e in ESTS},
                "ess": [round(x["ess"]) for x in diag["positions"]], "ips_reliable": diag["ips_reliable"],
                "warned": any(w.startswith(p.name + ":") for w in res.warnings)}
        return out


def _run(job):
    return run_seed(*job)


def coverage_interval(covered: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a coverage measured as ``covered`` of ``n`` seeds."""
    a = (1 - level) / 2
    lo = beta.ppf(a, covered, n - covered + 1) if covered > 0 else 0.0
    hi = beta.ppf(1 - a, covered + 1, n - covered) if covered < n else 1.0
    return float(lo), float(hi)


def summarise(rows: list[dict], name: str) -> None:
    rs = [r["policies"][name] for r in rows if name in r["policies"]]
    if not rs:
        return
    print(f"\n{name}: {len(rs)} seeds, {np.mean([r['requests'] for r in rows]):,.0f} requests each on average; "
          f"true value {np.mean([r['truth'] for r in rs]):.4f} clicks/request on average")
    print(f"  {'estimator':<9} {'mean |rel err|':>15} {'mean rel err':>13} {'worst':>8} {'within 5%':>10} "
          f"{'95% CI coverage (its 95% CI)':>30} {'mean CI half-width':>19} {'sd std. err':>12}")
    for e in ESTS:
        rel = np.array([(r[e]["value"] - r["truth"]) / r["truth"] for r in rs])
        covered = int(sum(r[e]["ci_low"] <= r["truth"] <= r[e]["ci_high"] for r in rs))
        lo, hi = coverage_interval(covered, len(rs))
        half = np.array([(r[e]["ci_high"] - r[e]["ci_low"]) / 2 for r in rs])
        hw = np.mean(half / np.array([r["truth"] for r in rs]))
        z = np.array([r[e]["value"] - r["truth"] for r in rs]) / (half / 1.96)
        cov = f"{covered / len(rs):.0%} ({covered}/{len(rs)}; {lo:.0%}-{hi:.0%})"
        print(f"  {e:<9} {np.mean(np.abs(rel)):>15.2%} {np.mean(rel):>+13.2%} {np.max(np.abs(rel)):>8.2%} "
              f"{np.mean(np.abs(rel) <= 0.05):>10.0%} {cov:>30} {hw:>18.1%} {np.std(z, ddof=1):>12.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--first-seed", type=int, default=1000, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--staff", type=int, default=120_000,
                    help="staff per province (120,000: ~560,000 evaluated requests; 24,000: ~112,000)")
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--history-days", type=int, default=2)
    ap.add_argument("--out", default="ope_accuracy.jsonl", help="per-seed results (JSON Lines)")
    ap.add_argument("--skip-breakdown", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summarise", metavar="FILE", nargs="+", help="only print the summary of earlier --out files (pooled)")
    ap.add_argument("--breakdown-only", action="store_true", help="only the 'where IPS breaks down' part")
    args = ap.parse_args()
    if args.summarise:
        rows = [json.loads(x) for path in args.summarise for x in open(path, encoding="utf-8") if x.strip()]
        rows = [r for r in rows if "breakdown" not in r]
        summarise(rows, "model")
        summarise(rows, "anti-popularity")
        return
    if args.breakdown_only:
        breakdown(args)
        return
    rows = []
    jobs = [(args.first_seed + s, args.staff, args.days, args.history_days, 0.2, s < 5) for s in range(args.seeds)]
    with open(args.out, "w", encoding="utf-8") as f, Pool(args.workers) as pool:
        for r in pool.imap(_run, jobs):
            rows.append(r)
            f.write(json.dumps(r) + "\n")
            f.flush()
            m = r["policies"]["model"]
            print(f"seed {r['seed']}: {r['requests']:,} requests, truth {m['truth']:.4f}, "
                  + ", ".join(f"{e} {m[e]['value']:.4f} [{m[e]['ci_low']:.4f}, {m[e]['ci_high']:.4f}]" for e in ESTS)
                  + f", ESS {m['ess']} ({r['seconds']} s)", flush=True)
    summarise(rows, "model")
    summarise(rows, "anti-popularity")
    if not args.skip_breakdown:
        breakdown(args)


def breakdown(args) -> None:
    print("\nwhere plain IPS breaks down:")
    for label, eps in (("epsilon 0.2 logs", 0.2), ("tiny propensities: epsilon 0.01 logs", 0.01)):
        r = run_seed(2000, args.staff, args.days, args.history_days, eps, far=True)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"breakdown": label, **r}) + "\n")
        for name, p in r["policies"].items():
            print(f"  {label}, target {name}: truth {p['truth']:.4f}; " +
                  ", ".join(f"{e} {p[e]['value']:.4f} ({(p[e]['value'] - p['truth']) / p['truth']:+.1%})" for e in ESTS) +
                  f"; ESS per position {p['ess']}; tool {'WARNS' if p['warned'] else 'does not warn'}")


if __name__ == "__main__":
    main()
