"""recommender retrain: export the service's logs, train a candidate, evaluate it offline
against production, promote it when it is surely better, ramp it in online when the offline
A/B cannot tell; exit codes for a scheduler."""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .arms import duration

if TYPE_CHECKING:
    from recommender.exploration import Exploration

PROMOTED, FAILED, KEPT, LOCKED = 0, 1, 3, 4
LOCK_FILE = "retrain.lock"
ADMIN_KEY_ENV = "RECOMMENDER_ADMIN_KEY"


def register(sub) -> None:
    p = sub.add_parser("retrain", help="retrain from the service's logs behind an offline A/B gate (exit 0 "
                                       "promoted or ramping, 3 kept, 1 failed, 4 another run holds the lock)")
    p.add_argument("--config", help="service config: its event store, model registry and arms")
    p.add_argument("--db", help="the event store (sqlite:///... or postgresql://...), without --config")
    p.add_argument("--registry", help="the model registry folder, without --config")
    p.add_argument("--window", default="28d", help="logs this recent are exported (default 28d)")
    p.add_argument("--eval-days", type=float, default=2.0, help="the newest days, held out for the A/B (default 2)")
    p.add_argument("--min-gain", type=float, default=0.0,
                   help="clicks per request the candidate must surely gain over production (default 0)")
    p.add_argument("--history", action="append", default=[], help="older impressions files, as history (repeatable)")
    p.add_argument("--holdout-days", type=float, default=1.0,
                   help="the candidate's own validation days, before the evaluated ones (default 1)")
    p.add_argument("--models", default="logistic,gbm", help="model kinds the candidate is chosen from")
    p.add_argument("--arm", default="A", help="the arm whose model the candidate must beat (default A)")
    p.add_argument("--epsilon", type=float, help="that arm's exploration (default: the config's, else 0.1)")
    p.add_argument("--promote", action="store_true", help="promote a candidate that passes the gate")
    p.add_argument("--ramp", help="with --promote: serve it first on --ramp-arm, stepping its share up, "
                                  "e.g. 10,50,100 (percent); it replaces --arm's model once the last step held")
    p.add_argument("--ramp-arm", default="B", help="the arm a ramp starts the candidate on (default B)")
    p.add_argument("--ramp-every", default="1d", help="time per ramp step (default 1d)")
    p.add_argument("--undecided", choices=("ramp", "keep"), default="ramp",
                   help="with --promote, when the offline A/B cannot decide (unreliable importance weights): "
                        "ramp the candidate in on --ramp-arm, judged online by the service's guardrail "
                        "(default), or keep production")
    p.add_argument("--undecided-ramp", default="10,50",
                   help="the steps (percent) of the ramp an undecided candidate gets (default 10,50)")
    p.add_argument("--objective", default="clicks",
                   help="what the candidate is trained for and judged by: clicks, outcomes, or weights "
                        "like clicks=1,outcomes=4 (default clicks)")
    p.add_argument("--service", help="with --promote: the running service's URL, told to reload "
                                     f"(admin key from {ADMIN_KEY_ENV} or RECOMMENDER_ADMIN_KEYS)")
    p.add_argument("--work", help="where the run's export and summary go (default: <registry>/runs/<time>)")
    p.add_argument("--slots", type=int, default=3)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def fail(message: str) -> int:
    print(f"retrain failed: {message}", file=sys.stderr)
    return FAILED


def run(args: argparse.Namespace) -> int:
    from recommender.errors import ContractError
    from recommender.store import open_store
    from training.objective import Objective
    from training.registry import ModelRegistry
    from training.retrain import RetrainConfig, RetrainError, retrain
    from training.train import TrainConfig

    cfg = None
    if args.config:  # a config that cannot be used is a usage error (exit 2), as in every command
        from ._options import service_config

        cfg = service_config(args.config)
    try:
        db, models, explorer, default_cap, arms = where(args, cfg)
        window = duration(args.window) / 86400.0
        objective = Objective.parse(args.objective)
        ramps = {"--ramp": ramp_steps(args.ramp) if args.ramp else None,
                 "--undecided-ramp": ramp_steps(args.undecided_ramp)}
        duration(args.ramp_every)
        if args.ramp and arms is not None and args.ramp_arm not in arms:
            raise ValueError(f"--ramp-arm {args.ramp_arm}: not an arm of {args.config} (arms: {', '.join(arms)})")
        ramps["arms"] = arms
    except ValueError as e:
        return fail(str(e))
    registry = ModelRegistry(models)
    models.mkdir(parents=True, exist_ok=True)
    with open(models / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f"retrain: another run holds {models / LOCK_FILE}; nothing done", file=sys.stderr)
            return LOCKED
        work = Path(args.work) if args.work else models / "runs" / time.strftime("%Y%m%dT%H%M%S")
        cfg = RetrainConfig(window_days=window, eval_days=args.eval_days, min_gain=args.min_gain, arm=args.arm,
                            epsilon=explorer.epsilon, exploration=explorer if explorer.policy != "epsilon-greedy" else None,
                            slots=args.slots, bootstrap=args.bootstrap, seed=args.seed,
                            history=tuple(args.history), default_cap=default_cap,
                            train=TrainConfig(holdout_days=args.holdout_days, refit=True, slots=args.slots,
                                              models=tuple(m.strip() for m in args.models.split(",")), seed=args.seed,
                                              objective=objective))
        try:
            with open_store(db) as store:
                result = retrain(store, registry, work, cfg)
        except (RetrainError, ContractError) as e:
            return fail(str(e).splitlines()[0])
        except Exception as e:  # a scheduler reads one line and an exit code, not a traceback
            return fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        print(f"candidate: {result.candidate or '(none)'}; production ({args.arm}): {result.production or 'operators'}")
        print(f"decision: {result.decision}: {result.reason}")
        try:
            action = act(registry, result, args, ramps)
        except ValueError as e:
            return fail(f"acting on the decision for {result.candidate}: {e}")
        print(f"action: {action['what']}: {action['detail']}")
        write_summary(result, action, work)
        print(f"summary: {work / 'retrain.json'}" + (f"; model: {result.folder}" if result.folder else ""))
        if action["arm"] and args.service:
            problem = reload_service(args.service, action["arm"], result.candidate)
            if problem:
                return fail(problem)
        return PROMOTED if action["what"] in (PASSED, PROMOTED_ACTION, RAMPING) else KEPT


PROMOTED_ACTION, RAMPING, PASSED, KEPT_ACTION = "promoted", "ramping", "passed", "kept"


def ramp_steps(text: str) -> list[float]:
    """Ramp steps from percentages like ``10,50``."""
    try:
        steps = [float(x) / 100 for x in text.split(",")]
    except ValueError:
        raise ValueError(f"ramp steps {text!r}: give percentages like 10,50") from None
    if not steps or any(not 0 < x <= 1 for x in steps):
        raise ValueError(f"ramp steps {text!r}: each step is a percentage in (0, 100]")
    return steps


def act(registry, result, args: argparse.Namespace, ramps: dict) -> dict:
    """What the run does with its decision: {"what": promoted | ramping | passed | kept,
    "detail": one sentence, "arm": the arm that serves the candidate now, or None}."""
    from training.registry import RegistryError
    from training.retrain import PROMOTED, UNDECIDED

    running = registry.state().get("ramp") or {}
    running = running if running.get("status") == "ramping" else None
    if result.decision == PROMOTED:
        if not args.promote:
            return {"what": PASSED, "detail": "the candidate passed the gate; run with --promote to promote it",
                    "arm": None}
        try:
            if running:  # an offline verdict outranks a ramp still gathering evidence
                registry.end_ramp("ended", f"superseded: {result.candidate} passed the offline A/B")
            if ramps["--ramp"]:
                return start_ramp(registry, result.candidate, args, ramps["--ramp"], "passed the gate")
            previous = registry.promote(result.candidate, args.arm)
        except RegistryError as e:
            raise ValueError(str(e)) from None
        return {"what": PROMOTED_ACTION, "detail": f"promoted {result.candidate} to arm {args.arm} "
                                                   f"(was {previous or 'none'})", "arm": args.arm}
    if result.decision == UNDECIDED:
        if not args.promote or args.undecided == "keep":
            why = "without --promote" if not args.promote else "with --undecided keep"
            return {"what": KEPT_ACTION, "detail": f"the offline A/B could not decide; {why}, production stays",
                    "arm": None}
        if running:
            return {"what": KEPT_ACTION, "detail": f"the offline A/B could not decide, and arm {running['arm']}'s "
                                                   f"ramp is still running: it decides first", "arm": None}
        if ramps["arms"] is not None and args.ramp_arm not in ramps["arms"]:
            return {"what": KEPT_ACTION, "detail": f"the offline A/B could not decide, and the config has no arm "
                                                   f"{args.ramp_arm} to ramp it in on (add one with share = 0.0)",
                    "arm": None}
        try:
            return start_ramp(registry, result.candidate, args, ramps["--undecided-ramp"],
                              "the offline A/B could not decide")
        except RegistryError as e:
            raise ValueError(str(e)) from None
    return {"what": KEPT_ACTION, "detail": f"production stays on arm {args.arm}", "arm": None}


def start_ramp(registry, version: str, args: argparse.Namespace, steps: list[float], why: str) -> dict:
    """Promote ``version`` to --ramp-arm and step its share up against --arm."""
    registry.promote(version, args.ramp_arm)
    registry.start_ramp(args.ramp_arm, args.arm, steps, duration(args.ramp_every), time.time())
    return {"what": RAMPING, "arm": args.ramp_arm,
            "detail": f"{why}: {version} serves arm {args.ramp_arm}, ramping {', '.join(f'{x:.0%}' for x in steps)} "
                      f"of the staff, {args.ramp_every} per step, against arm {args.arm}; the service's guardrail "
                      f"stops it if it is surely worse, and makes it arm {args.arm}'s model once the last step held"}


def write_summary(result, action: dict, work: Path) -> None:
    """retrain.json in the run's folder, and the action in the model folder's copy."""
    summary = {**result.to_json(), "action": action}
    text = json.dumps(summary, ensure_ascii=False, indent=1, default=float)
    work.mkdir(parents=True, exist_ok=True)
    (work / "retrain.json").write_text(text, encoding="utf-8")
    if result.folder:
        (result.folder / "retrain.json").write_text(text, encoding="utf-8")


def where(args: argparse.Namespace, cfg=None) -> tuple[str, Path, Exploration, object, list[str] | None]:
    """The event store, the model registry, the arm's exploration, the default frequency
    cap and the config's arms (None without --config), from the --config file's config
    (``cfg``) or the flags."""
    from recommender.exploration import Exploration

    if cfg is None and args.config:
        from ._options import service_config

        cfg = service_config(args.config)
    if cfg is not None:
        arm = next((a for a in cfg.arms if a.name == args.arm), None)
        if arm is None:
            raise ValueError(f"--arm {args.arm}: not an arm of {args.config}")
        x = arm.explorer
        if args.epsilon is not None:
            x = Exploration(x.policy, args.epsilon, x.temperature, x.depth)
        return cfg.db, Path(cfg.models), x, cfg.default_cap, [a.name for a in cfg.arms]
    if not (args.db and args.registry):
        raise ValueError("give --config, or both --db and --registry")
    x = Exploration(epsilon=args.epsilon if args.epsilon is not None else 0.1)
    return args.db, Path(args.registry), x, None, None


def admin_key() -> str | None:
    key = os.environ.get(ADMIN_KEY_ENV)
    if key:
        return key
    keys = [k.strip() for k in os.environ.get("RECOMMENDER_ADMIN_KEYS", "").split(",") if k.strip()]
    return keys[0] if keys else None


def reload_service(url: str, arm: str, version: str, timeout: float = 30.0) -> str | None:
    """Tell the service to reload and wait until the arm serves ``version``; why not, or None."""
    key = admin_key()
    if not key:
        return f"no admin key to reload {url}: set {ADMIN_KEY_ENV}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"X-API-Key": key}
    try:
        opener.open(urllib.request.Request(f"{url}/v1/admin/reload", method="POST", headers=headers), timeout=30)
    except urllib.error.HTTPError as e:
        if e.code != 409:  # 409: some arm kept its model; the check below says whether ours took the new one
            return f"{url} refused the reload: HTTP {e.code} {e.read()[:200]!r}"
    except OSError as e:
        return f"{url} did not answer the reload: {e}"
    deadline = time.monotonic() + timeout
    served = None
    while time.monotonic() < deadline:
        with opener.open(urllib.request.Request(f"{url}/v1/admin/arms", headers=headers), timeout=10) as r:
            served = json.load(r)["models"].get(arm)
        if served == version:
            print(f"{url} serves {version} on arm {arm}")
            return None
        time.sleep(0.2)
    return f"{url} still serves {served} on arm {arm}, not {version}, after {timeout:g} s: see its /readyz"
