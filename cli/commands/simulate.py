"""recommender simulate: a synthetic province and its logs."""
from __future__ import annotations

import argparse
import json
import time

from simulator import SETTINGS, SimulationConfig, setting_config, simulate

from ._options import default_cap


def register(sub) -> None:
    d = SimulationConfig()
    p = sub.add_parser("simulate", help="generate a synthetic province: staff, banners, logged impressions, ground truth")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--staff", type=int, default=d.staff, help=f"number of staff (default {d.staff:,})")
    p.add_argument("--days", type=int, default=d.days, help=f"days of traffic (default {d.days})")
    p.add_argument("--active-share", type=float, default=d.active_share, help="share of staff active on a day (default 2/3)")
    p.add_argument("--slots", type=int, default=d.slots, help=f"positions shown per request (default {d.slots})")
    p.add_argument("--logging", choices=("epsilon-greedy", "uniform"), default=d.logging,
                   help="logging policy: epsilon-greedy around yesterday's popularity order, or uniform random")
    p.add_argument("--epsilon", type=float, default=d.epsilon, help=f"exploration share of epsilon-greedy (default {d.epsilon})")
    p.add_argument("--start", default=d.start, help=f"first day, YYYY-MM-DD in KST (default {d.start})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--default-cap", metavar="JSON",
                   help='a frequency cap on every banner, e.g. \'{"per_day": 1}\': the logging policy leaves capped '
                        'banners out, as the service does with its default_cap')
    p.add_argument("--setting", choices=tuple(SETTINGS), default="default",
                   help="a named world: the strength of hidden personal taste, the number of banners and the click "
                        "rate (the three options below override it)")
    p.add_argument("--personal-scale", type=float,
                   help=f"spread of the hidden per-person taste, x the default's (default {d.personal_scale:g})")
    p.add_argument("--banners", type=int, help=f"number of banners (default {d.banners}: the hand-written catalog)")
    p.add_argument("--base-logit", type=float, help=f"base of the click model's logit: the click rate (default {d.base_logit:g})")
    p.add_argument("--outcomes", action="store_true",
                   help="clicks on surveys and events may end in an answered survey or a sign-up (the impressions' "
                        "outcome field); surveys are hidden from who answered them, events down-weighted")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.staff < 1 or args.days < 1 or args.slots < 1:
        raise SystemExit("error: --staff, --days and --slots must be at least 1")
    if not 0 < args.active_share <= 1:
        raise SystemExit("error: --active-share must be in (0, 1]")
    try:
        cap = default_cap(args.default_cap)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if args.banners is not None and args.banners < 1:
        raise SystemExit("error: --banners must be at least 1")
    if args.personal_scale is not None and args.personal_scale < 0:
        raise SystemExit("error: --personal-scale must be at least 0")
    world = {k: v for k, v in (("personal_scale", args.personal_scale), ("banners", args.banners),
                               ("base_logit", args.base_logit)) if v is not None}
    cfg = setting_config(args.setting, staff=args.staff, days=args.days, active_share=args.active_share,
                         slots=args.slots, logging=args.logging, epsilon=args.epsilon, start=args.start,
                         seed=args.seed, default_cap=cap, outcomes=args.outcomes, **world)
    t = time.perf_counter()
    summary = simulate(args.out, cfg)
    took = time.perf_counter() - t
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(summary), ensure_ascii=False, indent=1))
    else:
        print(f"simulated province in {args.out} ({took:.1f} s)")
        print(summary.table())
    return 0
