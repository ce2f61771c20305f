"""recommender export --db URL --out impressions.jsonl: the service's traffic as training data."""
from __future__ import annotations

import argparse
import time

from recommender.contracts import write_impressions
from recommender.store import open_store
from recommender.timeutil import parse_ts


def register(sub) -> None:
    p = sub.add_parser("export", help="join the service's logged rankings and clicks into impressions.jsonl")
    p.add_argument("--db", required=True, help="sqlite:///path/events.db (or a path), or postgresql://...")
    p.add_argument("--out", required=True, help="impressions file to write (JSON Lines)")
    p.add_argument("--since", help="only rankings at or after this time (ISO 8601 with offset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    since = parse_ts(args.since) if args.since else None
    t = time.perf_counter()
    with open_store(args.db) as store:
        counts = store.counts()
        n = write_impressions(args.out, store.export_impressions(since))
    flagged = {k[len("events_"):]: v for k, v in counts.items() if k.startswith("events_") and k != "events_ok"}
    print(f"wrote {n:,} impressions from {counts['rankings']:,} rankings to {args.out} "
          f"({time.perf_counter() - t:.1f} s); click events: {counts['events']:,}"
          + (f", flagged: {flagged}" if flagged else ""))
    return 0
