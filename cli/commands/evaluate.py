"""recommender evaluate: offline A/B evaluation of ranking policies on logged impressions."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ._options import default_cap


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="estimate from logs how many clicks ranking policies would get (IPS, SNIPS, DM, DR)")
    p.add_argument("--staff", required=True, help="staff CSV")
    p.add_argument("--banners", required=True, help="banners JSON array or JSON Lines")
    p.add_argument("--impressions", required=True, help="logged impressions to evaluate on (JSON Lines or CSV)")
    p.add_argument("--history", action="append", default=[],
                   help="earlier impressions: click history before the evaluated logs (repeatable)")
    p.add_argument("--policy", action="append", required=True, metavar="POLICY",
                   help="a model folder, or popularity, random, logged (repeatable; differences are against the first)")
    p.add_argument("--since", help="evaluate only the requests at or after this time (ISO 8601 with offset); "
                                   "earlier rows of --impressions become history")
    p.add_argument("--epsilon", type=float, default=0.0,
                   help="evaluate model policies explored with this epsilon, as served (default 0: greedy)")
    p.add_argument("--exploration", choices=("epsilon-greedy", "boltzmann"), default="epsilon-greedy",
                   help="how model policies (and operators) are explored: epsilon-greedy (default) or boltzmann")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="boltzmann's temperature, in units of each request's score spread (default 1)")
    p.add_argument("--depth", type=int, default=3,
                   help="boltzmann tries the drawn banner at one of the first DEPTH unpinned places (default 3)")
    p.add_argument("--slots", type=int, default=3, help="positions that count (default 3)")
    p.add_argument("--default-cap", metavar="JSON",
                   help='the service\'s default frequency cap, e.g. \'{"per_day": 3}\': target policies leave out '
                        'the banners a person reached their cap of, as the service does (banners\' own caps always apply)')
    p.add_argument("--objective", default="clicks",
                   help="what a policy's value counts: clicks (default), outcomes (the impressions' outcome field), "
                        "or weights such as clicks=1,outcomes=4")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of requests (default 200)")
    p.add_argument("--resample", choices=("request", "staff"), default="request",
                   help="bootstrap unit: single requests (default) or staff members with all their requests")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--report", help="write a self-contained HTML report to this file")
    p.set_defaults(func=run)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from recommender.contracts import load_banners, load_impressions, load_staff

    if args.slots < 1:
        return _error("--slots must be at least 1")
    if not 0.0 <= args.epsilon <= 1.0:
        return _error("--epsilon must be in [0, 1]")
    if args.bootstrap < 10:
        return _error("--bootstrap must be at least 10 resamples")
    from recommender.exploration import BOLTZMANN, Exploration

    try:
        explorer = Exploration(args.exploration, args.epsilon, args.temperature, args.depth)
    except ValueError as e:
        return _error(f"--{e}")
    exploration = explorer if explorer.policy == BOLTZMANN else None
    from training.artifact import ArtifactError
    from training.dataset import TrainingDataError
    from training.ope.data import EvaluationInputError, build_bandit
    from training.ope.evaluate import evaluate, format_table, resolve_policy
    from training.ope.reward import click_matrix, fit_reward_model

    from training.objective import Objective

    try:
        cap = default_cap(args.default_cap)
        objective = Objective.parse(args.objective)
    except ValueError as e:
        return _error(str(e))
    t0 = time.perf_counter()
    staff = load_staff(args.staff)
    catalog = load_banners(args.banners)
    history = [load_impressions(h, catalog=catalog) for h in args.history]
    log = load_impressions(args.impressions, catalog=catalog)
    if args.since:
        from recommender.timeutil import parse_ts

        cut = parse_ts(args.since)
        history.append(log.subset(log.ts < cut))
        log = log.subset(log.ts >= cut)
        if len(log) == 0:
            return _error(f"{args.impressions}: no impression at or after {args.since}: give an earlier --since")
    try:
        bandit = build_bandit(log, catalog, staff, args.slots, history_logs=history, default_cap=cap, objective=objective)
        policies = [resolve_policy(spec, bandit, args.epsilon, exploration) for spec in args.policy]
        model, model_name = fit_reward_model(staff, catalog, log, history, objective=objective)
        q = click_matrix(bandit, model, objective.bound(bandit.catalog))
        result = evaluate(bandit, policies, q, args.bootstrap, args.seed, click_model=model_name, resample=args.resample)
    except ArtifactError as e:
        return _error(f"model folder refused: {e}")
    except EvaluationInputError as e:
        return _error(str(e))
    except TrainingDataError as e:
        return _error(f"{args.impressions}: {e}")
    print(format_table(result))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result.to_json(), f, ensure_ascii=False, indent=1)
    if args.report:
        from training.ope.report import write_report

        write_report(args.report, result, title=f"Offline A/B evaluation of {args.impressions}")
    return 0
