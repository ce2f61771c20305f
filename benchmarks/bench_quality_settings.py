"""True ranking quality in several simulated worlds, with the ceiling of personalisation.

For each setting (simulator.SETTINGS: the strength of hidden personal taste, the number of
banners, the click rate), simulates the province for (max days + 1) days unless --data-root
already holds it, then for 3, 7 and 14 days of history before the last day trains a model
on those days only and scores 30,000 requests of the last day with the TRUE expected
clicks@3 (simulator.quality): popularity, the attribute oracle, the model, the ceiling
(simulator.ceiling: the population part known, each person's taste inferred from the
same days as well as it can be) and the full oracle. "captured" is the share of the full
oracle's gain over popularity.

    .venv/bin/python benchmarks/bench_quality_settings.py --data-root /tmp/worlds
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from recommender.contracts import load_banners, load_impressions, load_staff
from simulator import GroundTruth
from simulator.ceiling import ceiling_scores
from simulator.quality import HeldOutRequests
from simulator.run import SETTINGS, setting_config, simulate
from training.train import TrainConfig, train

DAY = 86400.0


def first_midnight(ts: np.ndarray) -> float:
    t0 = float(ts.min())
    return t0 - (t0 + 9 * 3600) % DAY  # midnight KST


def quality_rows(data: Path, day_list: list[int], eval_requests: int, seed: int, ceiling: bool) -> list[dict]:
    staff = load_staff(data / "staff.csv")
    catalog = load_banners(data / "banners.json")
    log = load_impressions(data / "impressions.jsonl", catalog=catalog)
    truth = GroundTruth.load(data)
    n_days = int(round((log.ts.max() - first_midnight(log.ts)) / DAY + 0.5))
    eval_start = first_midnight(log.ts) + (n_days - 1) * DAY
    out = []
    for d in day_list:
        train_log = log.subset((log.ts >= eval_start - d * DAY) & (log.ts < eval_start))
        t = time.perf_counter()
        res = train(staff, catalog, train_log, None, TrainConfig(seed=seed))
        took = time.perf_counter() - t
        held = HeldOutRequests(truth, staff, catalog, log, since=eval_start, max_requests=eval_requests, seed=seed,
                               features_since=eval_start - d * DAY)
        rep = held.report({"model": res.artifact})
        row = {"days": d, **{k: float(v) for k, v in rep.values.items()}, "chosen": res.chosen,
               "captured": rep.captured_share("model"), "train_s": took}
        if ceiling:
            value = held.value_of_scores(ceiling_scores(held, eval_start - d * DAY, eval_start), rep.slots)
            pop, best = rep.values["popularity"], rep.values["oracle"]
            row["ceiling"] = value
            row["ceiling_captured"] = (value - pop) / (best - pop) if best > pop else float("nan")
        out.append(row)
        print(f"    {d} days: trained {res.chosen} on {len(train_log):,} rows in {took:.0f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of simulator settings")
    ap.add_argument("--staff", type=int, default=30_000)
    ap.add_argument("--days", default="3,7,14")
    ap.add_argument("--data-root", help="folder of simulated worlds, one sub-folder per setting (made when missing)")
    ap.add_argument("--eval-requests", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling (the slowest part)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    day_list = [int(d) for d in args.days.split(",")]
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data_root or tmp.name)
    results = {}
    for name in args.settings.split(","):
        data = root / name
        if not (data / "impressions.jsonl").is_file():
            summary = simulate(data, setting_config(name, staff=args.staff, days=max(day_list) + 1, seed=args.seed))
        else:
            summary = json.loads((data / "summary.json").read_text(encoding="utf-8"))
            summary = type("S", (), summary)
        print(f"{name}: {SETTINGS[name]}; hidden share {summary.hidden_variance_share:.0%}, "
              f"click rate {summary.clicks / max(summary.impressions, 1):.2%}, {summary.staff:,} staff", flush=True)
        results[name] = quality_rows(data, day_list, args.eval_requests, args.seed, not args.no_ceiling)

    print("\ntrue expected clicks@3 per request on the last day; captured = share of the oracle's gain over popularity")
    print(f"{'setting':<13} {'days':>4} {'popular':>8} {'attr-orc':>8} {'model':>8} {'ceiling':>8} {'oracle':>8} "
          f"{'captured':>9} {'ceiling':>8}  chosen")
    for name, rows in results.items():
        for r in rows:
            print(f"{name:<13} {r['days']:>4} {r['popularity']:8.4f} {r['attribute_oracle']:8.4f} {r['model']:8.4f} "
                  f"{r.get('ceiling', float('nan')):8.4f} {r['oracle']:8.4f} {r['captured']:9.1%} "
                  f"{r.get('ceiling_captured', float('nan')):8.1%}  {r['chosen']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
