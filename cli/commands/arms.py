"""recommender arms --config service.toml status | set A=0.9 B=0.1 | ramp B --control A --steps 10,50,100
--every 1h | stop: the A/B arms' shares, live (every worker of a running service follows
within its sync interval)."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

from ._options import service_config

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub) -> None:
    p = sub.add_parser("arms", help="the A/B arms: status, live shares, ramps")
    p.add_argument("--config", required=True, help="service config (its arms, model registry and event store)")
    asub = p.add_subparsers(dest="arms_command", required=True, metavar="ACTION")
    st = asub.add_parser("status", help="each arm's share and model, and the last ramp's comparison")
    st.add_argument("--json", action="store_true")
    se = asub.add_parser("set", help="set every arm's share (they must add up to 1)")
    se.add_argument("shares", nargs="+", metavar="ARM=SHARE")
    ra = asub.add_parser("ramp", help="step an arm's share up on a schedule, taking it from its control")
    ra.add_argument("arm")
    ra.add_argument("--control", default="A")
    ra.add_argument("--steps", default="10,50,100", help="percent of everyone, step by step (default 10,50,100)")
    ra.add_argument("--every", default="1d", help="time per step: 30m, 6h, 1d (default 1d)")
    asub.add_parser("stop", help="stop the running ramp: its control gets the arm's traffic back")
    p.set_defaults(func=run)


def duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 30m, 6h or 1d")
    return float(m.group(1)) * UNITS[m.group(2)]


def run(args: argparse.Namespace) -> int:
    from recommender.store import open_store
    from service.arms import effective_shares
    from service.ramp import ramp_status
    from training.registry import ModelRegistry, RegistryError

    cfg, loader = service_config(args.config, loader=True)
    reg = ModelRegistry(cfg.models, loader)
    names = [a.name for a in cfg.arms]
    now = time.time()
    try:
        if args.arms_command == "status":
            state = reg.state()
            with open_store(cfg.db) as store:
                ramp = ramp_status(store, state, cfg.arms, now, cfg.ramp_alpha)
            shares = effective_shares(cfg.arms, state, now)
            models = {a.name: a.model or state["arms"].get(a.name) for a in cfg.arms}
            if args.json:
                print(json.dumps({"shares": shares, "models": models, "ramp": ramp and ramp.to_dict()}, indent=1))
                return 0
            for name in names:
                print(f"arm {name}: {shares[name]:.1%} of the staff, model {models[name] or '(none: operators order)'}")
            if ramp is not None:
                print(f"ramp of {ramp.arm} against {ramp.control}: {ramp.status}{': ' + ramp.reason if ramp.reason else ''}")
                print(f"  since it began: {ramp.arm} {ramp.new_clicks_per_request:.4f} clicks per request over "
                      f"{ramp.new_requests:,} requests, {ramp.control} {ramp.control_clicks_per_request:.4f} over "
                      f"{ramp.control_requests:,}; difference {ramp.difference:+.4f}, always-valid "
                      f"{1 - cfg.ramp_alpha:.0%} interval [{ramp.low:+.4f}, {ramp.high:+.4f}]")
        elif args.arms_command == "set":
            shares = {}
            for item in args.shares:
                name, _, value = item.partition("=")
                shares[name] = float(value)
            if set(shares) != set(names):
                raise RegistryError(f"give a share for each configured arm: {', '.join(names)}")
            reg.set_shares(shares)
            print("shares set: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
        elif args.arms_command == "ramp":
            if args.arm not in names or args.control not in names:
                raise RegistryError(f"both arms must be configured arms: {', '.join(names)}")
            steps = [float(x) / 100 for x in args.steps.split(",")]
            reg.start_ramp(args.arm, args.control, steps, duration(args.every), now)
            print(f"ramp of {args.arm} started: {', '.join(f'{x:.0%}' for x in steps)}, {args.every} per step; "
                  f"it stops by itself if {args.arm} falls behind {args.control}")
        else:
            reg.end_ramp("ended", "stopped by hand")
            print("the ramp is stopped; the shares are the registry's or the config's again")
    except (RegistryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
