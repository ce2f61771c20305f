"""recommender rank: batch ranking of requests with a model (greedy, no exploration)."""
from __future__ import annotations

import argparse
import time

from recommender.contracts import load_banners, load_impressions, load_requests, load_staff, write_rankings


def register(sub) -> None:
    p = sub.add_parser("rank", help="rank a file of requests with a model")
    p.add_argument("--model", required=True, help="a model folder, models/<version>")
    p.add_argument("--staff", required=True)
    p.add_argument("--banners", required=True)
    p.add_argument("--history", action="append", default=[], help="logs before the requests (feed the click-history features)")
    p.add_argument("--requests", required=True)
    p.add_argument("--out", required=True, help="rankings JSON Lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from features.pipeline import history_from_logs
    from recommender.batch import outside_catalog, rank_requests
    from recommender.candidates import COLD_START
    from training.artifact import ArtifactError, load_model

    t0 = time.perf_counter()
    try:
        model = load_model(args.model)
    except ArtifactError as e:
        print(f"error: {e}")
        return 2
    staff = load_staff(args.staff)
    catalog = load_banners(args.banners)
    logs = [load_impressions(h, catalog=catalog) for h in args.history]
    history = history_from_logs(logs, catalog, model.encoder.config.half_life_days)
    requests = load_requests(args.requests)
    rankings = rank_requests(model, staff, catalog, history, requests)
    n = write_rankings(args.out, rankings)
    unknown = outside_catalog(catalog, requests)
    if unknown:
        listed = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        print(f"{len(unknown):,} candidate id(s) outside {args.banners} ({listed}): {COLD_START}")
    print(f"ranked {n:,} requests with {model.version} in {time.perf_counter() - t0:.1f} s -> {args.out}")
    return 0
