"""recommender models list | show VERSION | promote VERSION [--arm A] | rollback [--arm A]:
what the service loads."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.registry import ModelInfo, ModelRegistry, RegistryError


def register(sub) -> None:
    p = sub.add_parser("models", help="the model registry: list, show, promote, rollback")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="service config (its [service] models folder)")
    src.add_argument("--models", help="the registry folder (default: models)")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = msub.add_parser("list", help="every model folder, its metrics, and the arms serving it")
    ls.add_argument("--json", action="store_true")
    sh = msub.add_parser("show", help="one model's metadata, readably")
    sh.add_argument("version")
    sh.add_argument("--json", action="store_true", help="metadata.json as it is")
    pr = msub.add_parser("promote", help="make VERSION (or 'latest') the model of an arm")
    pr.add_argument("version")
    pr.add_argument("--arm", default="A")
    pr.add_argument("--no-verify", action="store_true", help="skip the checksum check (not recommended)")
    rb = msub.add_parser("rollback", help="undo the arm's last promotion")
    rb.add_argument("--arm", default="A")
    rb.add_argument("--to-fallback", action="store_true",
                    help="when that promotion had no earlier version: leave the arm without a model "
                         "(the operators' order) instead of refusing")
    p.set_defaults(func=run)


def registry_from(args: argparse.Namespace) -> ModelRegistry:
    if args.config:
        from ._options import service_config

        cfg, loader = service_config(args.config, loader=True)
        return ModelRegistry(cfg.models, loader)
    return ModelRegistry(Path(args.models or "models"))


def run(args: argparse.Namespace) -> int:
    reg = registry_from(args)
    try:
        if args.models_command == "list":
            print_list(reg, args.json)
        elif args.models_command == "show":
            meta = reg.metadata(args.version)
            print(json.dumps(meta, ensure_ascii=False, indent=1) if args.json else format_metadata(meta, reg))
        elif args.models_command == "promote":
            previous = reg.promote(args.version, args.arm, verify=not args.no_verify)
            now = reg.resolve(args.arm)
            print(f"arm {args.arm}: {previous or '(none)'} -> {now}; "
                  "running services pick it up within their sync interval, or at POST /v1/admin/reload")
        else:
            old, new = reg.rollback(args.arm, to_fallback=args.to_fallback)
            print(f"arm {args.arm}: {old or '(none)'} -> {new or '(none: operators order)'}")
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _ab(info: ModelInfo) -> str:
    ab = info.offline_ab or {}
    d = ab.get("difference")
    if not d:
        return "-"
    return f"{d['value']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] vs {ab.get('against', '?')}"


def print_list(reg: ModelRegistry, as_json: bool) -> None:
    models = reg.list()
    if as_json:
        print(json.dumps([m.__dict__ for m in models], ensure_ascii=False, indent=1, default=str))
        return
    if not models:
        print(f"no models in {reg.root}")
        return
    print(f"{'version':<28} {'created':<26} {'data window':<40} {'arms':<6} {'log loss':>8} {'clicks@3':>8}  "
          "offline A/B (DR, clicks per request, 95% CI)")
    for m in models:
        window = f"{m.data_from[:16]} .. {m.data_to[:16]}" if m.data_from else "-"
        if m.error:
            print(f"{m.version:<28} {m.error}")
            continue
        print(f"{m.version:<28} {m.created:<26} {window:<40} {','.join(m.arms) or '-':<6} "
              f"{_num(m.metrics.get('log_loss', '-')):>8} {_num(m.metrics.get('clicks@3', '-')):>8}  {_ab(m)}")


def format_metadata(meta: dict, reg: ModelRegistry) -> str:
    """metadata.json as sections of aligned lines (``--json`` prints it as it is)."""
    arms = [a for a, v in reg.state()["arms"].items() if v == meta.get("version")]
    lines = [f"model {meta.get('version')} ({meta.get('kind')}), created {meta.get('created')}",
             f"serving arms: {', '.join(arms) or 'none'}", ""]
    data = meta.get("training_data") or {}
    if data:
        lines.append("training data:")
        lines += [f"  {k:<18} {_num(v)}" for k, v in data.items()]
    for kind, metrics in (meta.get("validation") or {}).items():
        if isinstance(metrics, dict):
            lines.append(f"validation, {kind}:")
            lines += [f"  {k:<18} {_num(v)}" for k, v in metrics.items() if not isinstance(v, dict)]
    ab = meta.get("offline_ab")
    if ab:
        lines.append("offline A/B against the model it would replace:")
        lines += [f"  {k:<18} {v}" for k, v in ab.items()]
    features = (meta.get("feature_definition") or {}).get("config", {})
    if features:
        lines.append("features:")
        lines += [f"  {k:<18} {v}" for k, v in features.items()]
    libs = meta.get("libraries") or {}
    if libs:
        lines.append("libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    if meta.get("report"):
        lines.append(f"report: {meta['report']}")
    return "\n".join(lines)
