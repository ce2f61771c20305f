"""recommender store prune | forget: retention and erasure in the event store of a
service config (SQLite or PostgreSQL). A running service follows: every worker drops a
forgotten person from its click history and directory within its sync interval."""
from __future__ import annotations

import argparse
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("store", help="the event store: prune old rankings and clicks, forget a person")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    pr = ssub.add_parser("prune", help="delete the rankings and clicks older than the retention")
    pr.add_argument("--config", required=True, help="service config (its db and retention_days)")
    pr.add_argument("--older-than-days", type=float, metavar="N",
                    help="delete what is older than N days (default: [service] retention_days)")
    pr.add_argument("--batch", type=int, default=2000, help="rows per transaction (default 2000)")
    fo = ssub.add_parser("forget", help="delete one person's rankings, clicks and staff directory row")
    fo.add_argument("staff_id")
    fo.add_argument("--config", required=True, help="service config (its db)")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import sqlite3

    import psycopg

    from recommender.domain import control_characters_in
    from recommender.store import open_store
    from recommender.store.connect import shown_url
    from recommender.timeutil import format_ts
    from service.config import MIN_RETENTION_DAYS
    from service.engine import staff_ref
    from service.retention import prune_store

    from ._options import service_config

    cfg = service_config(args.config)
    now = time.time()
    try:
        if args.store_command == "prune":
            days = args.older_than_days if args.older_than_days is not None else cfg.retention_days
            if days is None:
                return _fail(f"{args.config} sets no [service] retention_days: give --older-than-days N")
            if not days >= MIN_RETENTION_DAYS:
                return _fail(f"--older-than-days must be at least {MIN_RETENTION_DAYS:g} (the click window and a day)")
            if args.batch < 1:
                return _fail("--batch must be at least 1")
            t = time.perf_counter()
            out = prune_store(cfg.db, days, now, args.batch, pause=0.05)  # a running service writes too
            print(f"deleted {out.rankings:,} rankings and {out.events:,} click events from before "
                  f"{format_ts(float(int(now - days * 86400.0)))} ({time.perf_counter() - t:.1f} s)")
            return 0
        staff_id = args.staff_id
        if not staff_id or len(staff_id) > 256 or control_characters_in(staff_id):
            return _fail("STAFF_ID must be 1 to 256 characters, without control characters")
        with open_store(cfg.db) as store:
            out = store.forget(staff_id, now)
    except (sqlite3.Error, psycopg.Error, OSError, ValueError) as e:  # the store cannot be opened or written
        return _fail(f"{shown_url(cfg.db)}: {e}".splitlines()[0])
    # the id is not echoed: this output may end up in a scheduler's logs
    print(f"forgot {staff_ref(cfg.log_salt, staff_id)}: deleted {out.rankings:,} rankings, {out.events:,} click "
          f"events and {out.staff} staff directory row(s); a running service drops them within its sync interval")
    return 0
