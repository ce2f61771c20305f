"""recommender export --db URL --out DIR: the service's traffic as a training set."""
from __future__ import annotations

import argparse
import time

from recommender.contracts import write_impressions
from recommender.store import open_store
from recommender.store.export import export_training_set
from recommender.timeutil import parse_ts


def register(sub) -> None:
    p = sub.add_parser("export", help="the service's logged rankings and clicks as a training set "
                                      "(impressions.jsonl, banners.json, staff.csv)")
    p.add_argument("--db", required=True, help="sqlite:///path/events.db (or a path), or postgresql://...")
    p.add_argument("--out", required=True,
                   help="a folder: impressions.jsonl, banners.json and staff.csv are written in it; "
                        "a path ending in .jsonl writes only the impressions, to that file")
    p.add_argument("--since", help="only rankings at or after this time (ISO 8601 with offset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    since = parse_ts(args.since) if args.since else None
    t = time.perf_counter()
    with open_store(args.db) as store:
        counts = store.counts()
        if args.out.endswith(".jsonl"):
            n = write_impressions(args.out, store.export_impressions(since))
            where = args.out
        else:
            summary = export_training_set(store, args.out, since)
            n = summary.impressions
            where = (f"{summary.files['impressions']}, with {summary.banners:,} banners and {summary.staff:,} staff in "
                     f"{summary.files['banners'].name} and {summary.files['staff'].name}")
    flagged = {k[len("events_"):]: v for k, v in counts.items() if k.startswith("events_") and k != "events_ok"}
    print(f"wrote {n:,} impressions from {counts['rankings']:,} rankings to {where} "
          f"({time.perf_counter() - t:.1f} s); click events: {counts['events']:,}"
          + (f", flagged: {flagged}" if flagged else ""))
    return 0
