"""recommender train: fit a click model on logs and save it as models/<version>/."""
from __future__ import annotations

import argparse
import sys
import time

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.progress import progress_bar

from ._logs import outside_catalog_note


def register(sub) -> None:
    p = sub.add_parser("train", help="train a position-debiased click model from impressions")
    p.add_argument("--staff", required=True)
    p.add_argument("--banners", required=True)
    p.add_argument("--impressions", required=True, help="the training logs (the last --holdout-days are validation)")
    p.add_argument("--history", action="append", default=[], help="older logs that only feed the history features")
    p.add_argument("--out", required=True, help="model registry folder; the model goes to OUT/<version>/")
    p.add_argument("--until", help="train only on impressions before this time (ISO 8601 with offset)")
    p.add_argument("--holdout-days", type=float, default=1.0)
    p.add_argument("--models", default="logistic,gbm", help="model kinds to fit and compare (default logistic,gbm)")
    p.add_argument("--max-rows", type=int, default=3_000_000, help="rows used for fitting (negatives downsampled, reweighted)")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=True,
                   help="refit the chosen model on every row, validation days included, before saving (the default); "
                        "--no-refit saves the fit that was validated")
    p.add_argument("--slots", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", default="clicks",
                   help="what the model learns: clicks (default), outcomes (the impressions' outcome field: survey "
                        "responses, sign-ups), or weights such as clicks=1,outcomes=4")
    p.set_defaults(func=run)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from training.dataset import TrainingDataError
    from training.objective import Objective
    from training.report import REPORT_FILE
    from training.train import TrainConfig, train

    try:
        objective = Objective.parse(args.objective)
    except ValueError as e:
        return _error(f"--objective: {e}")

    steps = ["load", "features", *[s for k in args.models.split(",") for s in (f"fit {k}", f"validate {k}")],
             "validate popularity", *(["refit"] if args.refit else []), "report", "save"]
    bar = progress_bar(total=len(steps), desc="train", unit="step")
    t0 = time.perf_counter()
    staff = load_staff(args.staff)
    catalog = load_banners(args.banners)
    log = load_impressions(args.impressions, catalog=catalog, progress=True)
    if args.until:
        from recommender.timeutil import parse_ts

        log = log.subset(log.ts < parse_ts(args.until))
        if len(log) == 0:
            bar.close()
            return _error(f"{args.impressions}: no impression before {args.until}: give a later --until")
    history = [load_impressions(h, catalog=catalog, progress=True) for h in args.history]
    loaded = time.perf_counter()
    bar.update(1)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    cfg = TrainConfig(holdout_days=args.holdout_days, models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                      max_train_rows=args.max_rows, slots=args.slots, seed=args.seed, refit=args.refit,
                      objective=objective)
    try:
        result = train(staff, catalog, log, args.out, cfg, history_logs=history, progress=step)
    except TrainingDataError as e:
        bar.close()
        return _error(f"{args.impressions}: {e}")
    bar.update(bar.total - bar.n)
    bar.close()
    k = args.slots
    done = time.perf_counter()
    print(f"trained on {len(log):,} impressions ({log.n_requests:,} requests) in {done - t0:.1f} s "
          f"(loading {loaded - t0:.1f} s, training {done - loaded:.1f} s)")
    note = outside_catalog_note([log, *history], catalog, args.banners)
    if note:
        print(f"note: {note}")
    value = objective.metric(k)
    print(f"validation (last {args.holdout_days:g} day(s)):   log loss     AUC   NDCG@{k}  {value} (IPS)")
    for name, m in result.metrics.items():
        tag = " <- chosen" if name == result.chosen else ""
        print(f"  {name:<14} {m['log_loss']:12.4f} {m['auc']:7.3f} {m[f'ndcg@{k}']:8.3f} {m[value]:10.4f}{tag}")
    if result.path is not None:
        print(f"report: {result.path / REPORT_FILE}")
    print(f"model: {result.path}")  # the last line: scripts take the new model's folder from it
    return 0
