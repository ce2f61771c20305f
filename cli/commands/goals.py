"""recommender goals --config service.toml [--json]: each delivery goal's progress, from the
event store (what every worker logged), as the service paces it."""
from __future__ import annotations

import argparse
import json
import time

from ._options import service_config


def register(sub) -> None:
    p = sub.add_parser("goals", help="delivery goals: what each banner with a goal delivered, against its plan")
    p.add_argument("--config", required=True, help="service config (its event store)")
    p.add_argument("--json", action="store_true", help="print the progress as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recommender.completion import counts_outcome
    from recommender.goals import DeliveryTracker, delivery_from_rankings
    from recommender.store import open_store
    from recommender.store.export import stored_catalog

    cfg = service_config(args.config)
    now = time.time()
    with open_store(cfg.db) as store:
        banners = stored_catalog(store)
        tracker = DeliveryTracker()
        tracker.set_goals(banners)
        if tracker:
            by_id = {b.banner_id: b for b in banners}
            clicks, outcomes = store.event_pairs(lambda banner_id, kind: counts_outcome(by_id.get(banner_id), kind))
            delivery_from_rankings(tracker, store.iter_rankings(), clicks, [k for k, v in outcomes.items() if v > 0])
    progress = [g.to_dict() for g in tracker.progress(now)]
    if args.json:
        print(json.dumps({"goals": progress}, ensure_ascii=False, indent=1))
        return 0
    if not progress:
        print("no banner of the stored catalog has a delivery goal")
        return 0
    print("| banner | goal | by | delivered | plan now | state | boost |")
    print("|---|---|---|---|---|---|---|")
    for g in progress:
        state = "met" if g["met"] else "behind plan" if g["behind_plan"] else "on plan"
        print(f"| {g['banner_id']} | {g['target']:,} {g['metric']} | {g['by']} | {g['delivered']:,} "
              f"({100 * g['share_of_target']:.0f}%) | {g['planned']:,.0f} | {state} | {g['boost']:+.2f} |")
    return 0
