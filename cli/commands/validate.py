"""recommender validate: check files against the contracts and the catalog."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.errors import ContractError

from ._logs import outside_catalog_note


def register(sub) -> None:
    p = sub.add_parser("validate", help="check staff, banners and impressions files against the data contracts")
    p.add_argument("--staff", help="staff CSV")
    p.add_argument("--banners", help="banners JSON array or JSON Lines")
    p.add_argument("--impressions", help="impressions JSON Lines or CSV")
    p.add_argument("--max-errors", type=int, default=50, help="stop after this many errors per file (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.staff or args.banners or args.impressions):
        print("error: give at least one of --staff, --banners, --impressions", file=sys.stderr)
        return 2
    failed = False
    staff = catalog = None

    def attempt(loader, path, **kw):
        nonlocal failed
        try:
            return loader(path, max_errors=args.max_errors, **kw)
        except ContractError as e:
            failed = True
            n = len(e.errors)
            print(f"{path}: {n}{'+' if e.truncated else ''} error(s)", file=sys.stderr)
            print(str(e), file=sys.stderr)
        except OSError as e:
            failed = True
            print(f"{path}: {e}", file=sys.stderr)
        return None

    if args.staff:
        staff = attempt(load_staff, args.staff)
        if staff is not None:
            print(f"{args.staff}: ok, {len(staff):,} staff, attributes {', '.join(staff.attribute_names)}")
    if args.banners:
        catalog = attempt(load_banners, args.banners)
        if catalog is not None:
            cats: dict[str, int] = {}
            for b in catalog:
                cats[b.category] = cats.get(b.category, 0) + 1
            pinned = sum(b.pinned for b in catalog)
            print(f"{args.banners}: ok, {len(catalog)} banners ({', '.join(f'{k} {v}' for k, v in cats.items())}; {pinned} pinned)")
    if args.impressions:
        if args.banners and catalog is None:
            print(f"{args.impressions}: not checked, the catalog has errors", file=sys.stderr)
        else:
            log = attempt(load_impressions, args.impressions, catalog=catalog)
            if log is not None and len(log) == 0:
                failed = True
                print(f"{args.impressions}: no impressions: the file holds no rows (train and evaluate need some)",
                      file=sys.stderr)
            elif log is not None:
                print(f"{args.impressions}: ok, {len(log):,} rows, {log.n_requests:,} requests, "
                      f"{len(log.staff_ids):,} staff, {len(np.unique(log.banner)):,} banners, click rate {log.click_rate():.2%}")
                note = outside_catalog_note([log], catalog, args.banners) if catalog is not None else None
                if note:
                    print(f"  warning: {note}")
                if staff is not None:
                    unknown = sum(1 for s in log.staff_ids if s not in staff)
                    if unknown:
                        print(f"  note: {unknown:,} staff ids in the impressions are not in {args.staff} "
                              "(they are ranked as unknown staff)")
    return 1 if failed else 0
