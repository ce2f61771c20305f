"""recommender quality: judge a model on a simulated province against its ground truth."""
from __future__ import annotations

import argparse
from pathlib import Path

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.timeutil import parse_ts


def register(sub) -> None:
    p = sub.add_parser("quality", help="true expected clicks of a model vs random, popularity and oracles (simulated data only)")
    p.add_argument("--province", required=True, help="a folder written by `recommender simulate` (holds the ground truth)")
    p.add_argument("--model", action="append", default=[], help="model folder(s) to judge")
    p.add_argument("--since", required=True, help="judge the requests at or after this time (ISO 8601 with offset)")
    p.add_argument("--max-requests", type=int, default=20_000)
    p.add_argument("--slots", type=int, default=3)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulator import GroundTruth
    from simulator.quality import HeldOutRequests
    from training.artifact import ArtifactError, load_model

    prov = Path(args.province)
    try:
        models = {m.version: m for m in map(load_model, args.model)}
    except ArtifactError as e:
        print(f"error: {e}")
        return 2
    staff = load_staff(prov / "staff.csv")
    catalog = load_banners(prov / "banners.json")
    log = load_impressions(prov / "impressions.jsonl", catalog=catalog)
    truth = GroundTruth.load(prov)
    since = parse_ts(args.since)
    held = HeldOutRequests(truth, staff, catalog, log, since=since, max_requests=args.max_requests)
    if len(held.req) == 0:
        print(f"error: no request at or after {args.since}")
        return 2
    print(held.report(models, args.slots).table())
    print(f"hidden per-person share of the attractiveness logit variance: {truth.hidden_variance_share():.0%}")
    return 0
