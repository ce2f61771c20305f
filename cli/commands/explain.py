"""recommender explain: why a model ranks one staff member's banners as it does.

The ranking is the greedy one (no exploration): the banners eligible for the person at
the time, less those whose frequency cap they reached (from the --history logs), ordered
by the operators' rules, the model's scores and the pacing of banners behind their
delivery goals (delivery counted from the --history logs), as the service ranks. Each
banner gets its score in parts that add up to it, the rules that placed it and a
sentence; the banners a cap left out are listed with the reason.
"""
from __future__ import annotations

import argparse
import json
import sys

from ._options import default_cap


def register(sub) -> None:
    p = sub.add_parser("explain", help="explain one staff member's ranking: each score in parts, and why each place")
    p.add_argument("--model", required=True, help="a model folder, models/<version>")
    p.add_argument("--staff", required=True, help="staff CSV")
    p.add_argument("--banners", required=True, help="banners JSON array or JSON Lines")
    p.add_argument("--history", action="append", default=[],
                   help="impressions before the time (feed the click-history features; repeatable)")
    p.add_argument("--staff-id", required=True, help="the staff member whose ranking to explain")
    p.add_argument("--at", help="the time of the ranking, ISO 8601 with offset (default: just after the last "
                                "impression of --history, or now without history)")
    p.add_argument("--slots", type=int, help="explain only the first K places (default: every candidate)")
    p.add_argument("--default-cap", metavar="JSON", help="the service's default frequency cap, e.g. '{\"per_day\": 3}'")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.set_defaults(func=run)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    import time

    from features.pipeline import history_from_logs
    from recommender.candidates import Candidates, select_candidates
    from recommender.caps import ledger_from_logs
    from recommender.contracts import load_banners, load_impressions, load_staff
    from recommender.explain import ExplainError, explain_request
    from recommender.goals import DeliveryTracker, delivery_from_logs
    from recommender.ranker import Ranker
    from recommender.timeutil import format_ts, parse_ts
    from training.artifact import ArtifactError, load_model

    if args.slots is not None and args.slots < 1:
        return _error("--slots must be at least 1")
    try:
        cap = default_cap(args.default_cap)
    except ValueError as e:
        return _error(str(e))
    at = None
    if args.at is not None:
        try:
            at = parse_ts(args.at)
        except ValueError as e:
            return _error(f"--at: {e}")
    try:
        model = load_model(args.model)
    except ArtifactError as e:
        return _error(f"model folder refused: {e}")
    staff = load_staff(args.staff)
    if args.staff_id not in staff:
        return _error(f"staff id {args.staff_id!r} is not in {args.staff}")
    catalog = load_banners(args.banners)
    logs = [load_impressions(h, catalog=catalog) for h in args.history]
    history = history_from_logs(logs, catalog, model.encoder.config.half_life_days)
    if at is None:
        last = max((float(log.ts.max()) for log in logs if len(log)), default=None)
        at = time.time() if last is None else last + 1.0
    person = staff.get(args.staff_id)
    cands = select_candidates(catalog, person.attributes, at, None)
    ledger = ledger_from_logs(logs, catalog, cap)
    left_out = {} if ledger is None else ledger.reasons(args.staff_id, cands.banners, at, cap)
    if left_out:
        cands = Candidates([b for b in cands.banners if b.banner_id not in left_out], cands.n_unknown)
    tracker = DeliveryTracker()
    tracker.set_goals(catalog.known)
    if tracker:
        delivery_from_logs(tracker, logs, at)
    boost = tracker.boosts(args.staff_id, cands.banners, at) if tracker else None
    try:
        result, explanations = explain_request(Ranker(model), args.staff_id, person.attributes, at, cands, history,
                                               boost)
    except ExplainError as e:
        return _error(str(e))
    shown = explanations[:args.slots] if args.slots else explanations
    if args.json:
        print(json.dumps({"staff_id": args.staff_id, "at": format_ts(at), "model_version": result.model_version,
                          "candidates": len(cands),
                          "ranking": [{"banner_id": e.banner_id, "position": e.position, "score": e.score,
                                       "explanation": e.to_dict()} for e in shown],
                          "left_out": [{"banner_id": b, "reason": "cap", "text": t} for b, t in left_out.items()]},
                         ensure_ascii=False, indent=1))
        return 0
    profile = ", ".join(f"{k} {v}" for k, v in person.attributes.items() if v)
    print(f"{args.staff_id} ({profile}) at {format_ts(at)}, model {result.model_version}: {len(cands)} candidates")
    for e in shown:
        print(f"\nplace {e.position}  {e.banner_id}  '{e.title}'  score {e.score:+.3f}")
        for p in e.parts:
            print(f"  {p.value:+8.3f}  {p.name:<30}  {p.text}")
        for r in e.reasons:
            print(f"  {'placed' if r.decisive else 'note':>8}  {r.kind:<30}  {r.text}")
        print(f"  {e.sentence}")
    for banner_id, why in left_out.items():
        print(f"\nleft out  {banner_id}: {why}")
    return 0
