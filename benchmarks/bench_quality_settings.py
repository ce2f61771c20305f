"""True ranking quality in several simulated worlds, against the ceiling of what logs allow.

For each setting (simulator.SETTINGS: the strength of hidden personal taste, the number of
banners, the click rate), simulates the province for (max days + 1) days unless --data-root
already holds it. Then, for 3, 7 and 14 days of logs, it trains a model on those days
only and scores up to 30,000 requests of the following day with the TRUE expected
clicks@3 (simulator.quality): popularity, the attribute oracle, the model, the ceiling
(simulator.ceiling: the population part known, each person's taste inferred from the
same days as well as it can be) and the full oracle. Two protocols:

- ``launch``: the first d days of the world, scored on day d. The office starting from
  zero: the model, the ceiling and the truth all know the same past (nothing before).
- ``last``: the d days before the world's last day, scored on the last day. The model's
  features see only those d days, while the truth and the ceiling know every earlier
  view and click: what a model trained on a recent window loses when it is not given
  the older logs (``train --history``). ``attr-window`` is the attribute oracle limited
  to the window's views and clicks, to show that part.

"share" is the share of the ceiling's gain over popularity that the model gets;
"captured" the share of the full oracle's gain. With --baseline, each model is also trained
as the previous release trained it (one C for every weight, the validated fit saved, crosses
of single attributes only), on the same days, and scored on the same requests.

    .venv/bin/python benchmarks/bench_quality_settings.py --data-root /tmp/worlds
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from features.definition import FeatureConfig
from recommender.contracts import load_banners, load_impressions, load_staff
from simulator import GroundTruth
from simulator.ceiling import ceiling_scores
from simulator.groundtruth import HistoryState
from simulator.quality import HeldOutRequests
from simulator.run import SETTINGS, setting_config, simulate
from training.train import TrainConfig, train

DAY = 86400.0
PROTOCOLS = ("launch", "last")
# the previous release's training: one C for every weight, the validated fit saved, single-attribute crosses
BASELINE = dict(refit=False, logistic_prior="c",
                features=FeatureConfig(pair_crosses=(), tag_crosses=(), targeting_crosses=False))


def first_midnight(ts: np.ndarray) -> float:
    t0 = float(ts.min())
    return t0 - (t0 + 9 * 3600) % DAY  # midnight KST


def window_attribute_value(held: HeldOutRequests, window_start: float) -> float:
    """The attribute oracle's value when it knows only the views and clicks from
    ``window_start`` on (the history a model trained on that window sees)."""
    truth = held.truth
    u, b, _, ts, clicked = held.events
    w = ts >= window_start
    views, clicked_before = HistoryState(u[w], b[w], ts[w], clicked[w], len(truth.banner_ids)).at(
        held.u, held.b, held.cands.ts)
    return held.value_of_scores(truth.observable_logit(held.u, held.b) + truth.history_logit(held.b, views, clicked_before), 3)


def quality_rows(data: Path, protocol: str, day_list: list[int], eval_requests: int, seed: int, ceiling: bool,
                 baseline: bool, bar: tqdm) -> list[dict]:
    staff = load_staff(data / "staff.csv")
    catalog = load_banners(data / "banners.json")
    log = load_impressions(data / "impressions.jsonl", catalog=catalog)
    truth = GroundTruth.load(data)
    t0 = first_midnight(log.ts)
    n_days = int(round((log.ts.max() - t0) / DAY + 0.5))
    out = []
    for d in day_list:
        if protocol == "launch":
            window_start, eval_start = t0, t0 + d * DAY
        else:
            eval_start = t0 + (n_days - 1) * DAY
            window_start = eval_start - d * DAY
        if window_start < t0 or eval_start + DAY > t0 + n_days * DAY + 1:
            raise SystemExit(f"{data}: {n_days} days simulated, too few for {d} days of logs and a day to score")
        bar.set_postfix_str(f"{data.name} {protocol} {d} days: train")
        train_log = log.subset((log.ts >= window_start) & (log.ts < eval_start))
        t = time.perf_counter()
        res = train(staff, catalog, train_log, None, TrainConfig(seed=seed))
        took = time.perf_counter() - t
        bar.set_postfix_str(f"{data.name} {protocol} {d} days: score")
        held = HeldOutRequests(truth, staff, catalog, log.subset(log.ts < eval_start + DAY), since=eval_start,
                               max_requests=eval_requests, seed=seed, features_since=window_start)
        scorers = {"model": res.artifact}
        if baseline:
            bar.set_postfix_str(f"{data.name} {protocol} {d} days: train the baseline")
            scorers["baseline"] = train(staff, catalog, train_log, None, TrainConfig(seed=seed, **BASELINE)).artifact
        rep = held.report(scorers)
        v = rep.values
        row = {"days": d, **{k: float(x) for k, x in v.items()}, "chosen": res.chosen,
               "prior": res.metrics.get("logistic", {}).get("prior"), "captured": rep.captured_share("model"),
               "train_s": took}
        if protocol == "last":
            row["attribute_window"] = window_attribute_value(held, window_start)
        if ceiling:
            bar.set_postfix_str(f"{data.name} {protocol} {d} days: ceiling")
            value = held.value_of_scores(ceiling_scores(held, window_start, eval_start), rep.slots)
            row["ceiling"] = value
            row["ceiling_captured"] = (value - v["popularity"]) / (v["oracle"] - v["popularity"])
            for name in scorers:
                row[f"{name}_share"] = (v[name] - v["popularity"]) / (value - v["popularity"]) \
                    if value > v["popularity"] else float("nan")
        out.append(row)
        bar.update(1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of simulator settings")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS), help="launch, last, or both")
    ap.add_argument("--staff", type=int, default=30_000)
    ap.add_argument("--days", default="3,7,14")
    ap.add_argument("--data-root", help="folder of simulated worlds, one sub-folder per setting (made when missing)")
    ap.add_argument("--eval-requests", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling (the slowest part)")
    ap.add_argument("--baseline", action="store_true", help="also train as the previous release did, side by side")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    day_list = [int(d) for d in args.days.split(",")]
    protocols = args.protocols.split(",")
    for p in protocols:
        if p not in PROTOCOLS:
            raise SystemExit(f"unknown protocol {p!r} (one of {', '.join(PROTOCOLS)})")
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data_root or tmp.name)
    names = args.settings.split(",")
    results: dict = {}
    with tqdm(total=len(names) * len(protocols) * len(day_list), desc="quality", unit="model") as bar:
        for name in names:
            data = root / name
            if not (data / "impressions.jsonl").is_file():
                bar.set_postfix_str(f"{name}: simulate")
                simulate(data, setting_config(name, staff=args.staff, days=max(day_list) + 1, seed=args.seed))
            summary = json.loads((data / "summary.json").read_text(encoding="utf-8"))
            tqdm.write(f"{name}: {SETTINGS.get(name)}; hidden share {summary['hidden_variance_share']:.0%}, "
                       f"click rate {summary['clicks'] / max(summary['impressions'], 1):.2%}, {summary['staff']:,} staff")
            for protocol in protocols:
                results[f"{name}/{protocol}"] = quality_rows(data, protocol, day_list, args.eval_requests, args.seed,
                                                             not args.no_ceiling, args.baseline, bar)

    nan = float("nan")
    print("\ntrue expected clicks@3 per request on the scored day; share = of the ceiling's gain over popularity, "
          "captured = of the full oracle's")
    print(f"{'setting':<13} {'protocol':<8} {'days':>4} {'popular':>8} {'attr':>8} {'attr-win':>8} {'model':>8} "
          f"{'ceiling':>8} {'oracle':>8} {'share':>7} {'captured':>9} {'ceil-cap':>8} {'baseline':>8} {'b-share':>7}  chosen")
    for key, rows in results.items():
        name, protocol = key.split("/")
        for r in rows:
            print(f"{name:<13} {protocol:<8} {r['days']:>4} {r['popularity']:8.4f} {r['attribute_oracle']:8.4f} "
                  f"{r.get('attribute_window', nan):8.4f} {r['model']:8.4f} {r.get('ceiling', nan):8.4f} "
                  f"{r['oracle']:8.4f} {r.get('model_share', nan):7.1%} {r['captured']:9.1%} "
                  f"{r.get('ceiling_captured', nan):8.1%} {r.get('baseline', nan):8.4f} {r.get('baseline_share', nan):7.1%}"
                  f"  {r['chosen']}" + (f" ({r['prior']})" if r.get("prior") else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
