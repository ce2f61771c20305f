"""recommender models list | promote VERSION [--arm A] | rollback [--arm A]: what the service loads."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.registry import ModelRegistry, RegistryError


def register(sub) -> None:
    p = sub.add_parser("models", help="the model registry: list, promote, rollback")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="service config (its [service] models folder)")
    src.add_argument("--models", help="the registry folder (default: models)")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = msub.add_parser("list", help="every model folder, its metrics, and the arms serving it")
    ls.add_argument("--json", action="store_true")
    pr = msub.add_parser("promote", help="make VERSION (or 'latest') the model of an arm")
    pr.add_argument("version")
    pr.add_argument("--arm", default="A")
    pr.add_argument("--no-verify", action="store_true", help="skip the checksum check (not recommended)")
    rb = msub.add_parser("rollback", help="undo the arm's last promotion")
    rb.add_argument("--arm", default="A")
    p.set_defaults(func=run)


def registry_from(args: argparse.Namespace) -> ModelRegistry:
    if args.config:
        from service.config import load_config, resolve_loader

        cfg = load_config(args.config)
        return ModelRegistry(cfg.models, resolve_loader(cfg.model_loader))
    return ModelRegistry(Path(args.models or "models"))


def run(args: argparse.Namespace) -> int:
    reg = registry_from(args)
    try:
        if args.models_command == "list":
            models = reg.list()
            if args.json:
                print(json.dumps([m.__dict__ for m in models], ensure_ascii=False, indent=1, default=str))
            elif not models:
                print(f"no models in {reg.root}")
            else:
                print(f"{'version':<28} {'created':<26} {'arms':<10} metrics")
                for m in models:
                    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                        for k, v in list(m.metrics.items())[:4])
                    print(f"{m.version:<28} {m.created:<26} {','.join(m.arms) or '-':<10} {m.error or metrics}")
        elif args.models_command == "promote":
            previous = reg.promote(args.version, args.arm, verify=not args.no_verify)
            now = reg.resolve(args.arm)
            print(f"arm {args.arm}: {previous or '(none)'} -> {now}; "
                  "running services pick it up within their sync interval, or at POST /v1/admin/reload")
        else:
            old, new = reg.rollback(args.arm)
            print(f"arm {args.arm}: {old or '(none)'} -> {new or '(none: operators order)'}")
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
