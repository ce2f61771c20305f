"""Retraining behind an offline A/B gate: the data staff's routine in one call a scheduler
can run.

From the event store it exports the last ``window_days`` of what the service logged (with
the catalog and staff directory it held), joins older impressions files before it when
given (without the people forgotten since they were written), trains a candidate on all
but the newest ``eval_days``, and evaluates, on those newest days, the candidate against the model each
arm serves now and against popularity, with the offline evaluation's estimators (the
candidate and the production models as they are served: epsilon-greedy with the arm's
epsilon), valued by the objective the candidate is trained for (clicks by default). The
decision is one of three, each with its reason in one sentence:

- **promoted**: the doubly robust estimate of (candidate - production) has its 95%
  interval above ``min_gain`` and the importance weights of neither policy are flagged
  as unreliable;
- **undecided**: the weights are unreliable (the logs explored too little where the two
  policies differ), so the offline A/B cannot tell, and its interval is not wholly below
  ``min_gain``: the candidate may be better. The command then ramps it in online, where
  the service's guardrail decides (service/ramp.py);
- **kept**: otherwise (surely not better, or too little data for a candidate). The candidate's folder stays in the registry either way, with the A/B in
its metadata, so that `recommender models list` shows what it would have done.

The caller (the `recommender retrain` command) holds the lock, tells a running service to
reload, and turns the decision into an exit code.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recommender.contracts import ImpressionLog, load_banners, load_impressions, load_staff
from recommender.domain import FrequencyCap
from recommender.exploration import Exploration
from recommender.store import EventStore
from recommender.store.export import export_training_set, without_erased

from .ope.data import EvaluationInputError, build_bandit
from .ope.evaluate import evaluate, resolve_policy
from .ope.reward import click_matrix, fit_reward_model
from .registry import ModelRegistry
from .report import REPORT_FILE, OfflineAB, write_training_report
from .train import TrainConfig, train

DAY = 86400.0
SUMMARY_FILE = "retrain.json"
PROMOTED, UNDECIDED, KEPT = "promoted", "undecided", "kept"


class RetrainError(RuntimeError):
    """The run could not decide (a store or file that cannot be read, a broken model)."""


@dataclass
class RetrainConfig:
    window_days: float = 28.0
    eval_days: float = 2.0
    min_gain: float = 0.0
    arm: str = "A"  # the arm whose production model the candidate must beat, and which it would serve
    epsilon: float = 0.1  # that arm's exploration, so that both policies are judged as they would be served
    exploration: Exploration | None = None  # that arm's policy when not epsilon-greedy with epsilon (Boltzmann)
    slots: int = 3
    bootstrap: int = 200
    seed: int = 0
    history: tuple[str, ...] = ()  # older impressions files, joined before the window (training rows and history)
    default_cap: FrequencyCap | None = None  # the service's default frequency cap: the policies are judged under it
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class RetrainResult:
    decision: str  # promoted, undecided or kept
    reason: str
    candidate: str | None  # the new model's version (None when there was too little data to train one)
    production: str | None  # what the arm served
    difference: dict | None  # DR estimate of candidate - production: value, ci_low, ci_high
    evaluation: dict | None  # the offline A/B (training.ope.evaluate.EvaluationResult.to_json())
    data: dict
    timings: dict
    folder: Path | None = None  # the candidate's model folder

    def to_json(self) -> dict:
        out = asdict(self)
        out["folder"] = str(self.folder) if self.folder else None
        return out


def _log_days(log) -> float:
    return float(log.ts.max() - log.ts.min()) / DAY if len(log) else 0.0


def retrain(store: EventStore, registry: ModelRegistry, work: Path, cfg: RetrainConfig,
            now: float | None = None) -> RetrainResult:
    """Export, train, evaluate, decide; promotes nothing (see the command)."""
    now = time.time() if now is None else now
    t = time.perf_counter()
    exported = export_training_set(store, work / "data", since=now - cfg.window_days * DAY)
    staff = load_staff(exported.files["staff"])
    catalog = load_banners(exported.files["banners"])
    log = load_impressions(exported.files["impressions"], catalog=catalog)
    erased = store.erasures()  # older files must not bring back people forgotten since
    history = [without_erased(load_impressions(h, catalog=catalog), erased) for h in cfg.history]
    exported_s = time.perf_counter() - t
    result = retrain_from_logs(staff, catalog, log, history, registry, cfg)
    result.timings["export_s"] = exported_s
    return result


def retrain_from_logs(staff, catalog, log, history: list, registry: ModelRegistry, cfg: RetrainConfig,
                      production: str | None = None) -> RetrainResult:
    """Train on ``history`` + all of ``log`` but its newest ``eval_days``, evaluate on those,
    decide (against ``production``: default the registry's model of ``cfg.arm``)."""
    timings: dict[str, float] = {}
    data = {"impressions": len(log), "requests": log.n_requests, "clicks": int(log.clicked.sum()),
            "days": round(_log_days(log), 2), "banners": len(catalog), "staff": len(staff),
            "history_impressions": sum(len(h) for h in history)}
    production = production or registry.resolve(cfg.arm)
    cut = float(log.ts.max()) - cfg.eval_days * DAY if len(log) else 0.0
    past, recent = log.split(cut)
    if _log_days(ImpressionLog.concat([*history, past])) <= cfg.train.holdout_days or not len(recent):
        return RetrainResult(KEPT, f"kept {production or 'the operators order'}: the logs of the last "
                                   f"{cfg.window_days:g} days span {_log_days(log):.3g} days, too few to train a "
                                   f"candidate (its own {cfg.train.holdout_days:g}-day validation) and evaluate it "
                                   f"on the newest {cfg.eval_days:g}",
                             None, production, None, None, data, timings)
    t = time.perf_counter()
    trained = train(staff, catalog, ImpressionLog.concat([*history, past]), registry.root, cfg.train)
    candidate = trained.path.name
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    try:
        objective = cfg.train.objective
        bandit = build_bandit(recent, catalog, staff, cfg.slots, history_logs=[*history, past],
                              default_cap=cfg.default_cap, objective=objective)
        production_spec = str(registry.folder(production)) if production else "operators"
        policies = [resolve_policy(production_spec, bandit, cfg.epsilon, cfg.exploration),
                    resolve_policy(str(trained.path), bandit, cfg.epsilon, cfg.exploration),
                    resolve_policy("popularity", bandit)]
        model, model_name = fit_reward_model(staff, catalog, recent, [*history, past], objective=objective)
        result = evaluate(bandit, policies, click_matrix(bandit, model, objective.bound(catalog)), cfg.bootstrap,
                          cfg.seed,
                          click_model=model_name)
    except EvaluationInputError as e:
        raise RetrainError(f"the offline A/B could not run: {e}") from None
    timings["evaluate_s"] = time.perf_counter() - t
    names = list(result.policies)
    diff = result.differences[f"{names[1]}-{names[0]}"]["dr"]
    decision, reason = decide(result, names[0], names[1], diff, cfg.min_gain, objective.unit)
    out = RetrainResult(decision, reason, candidate, production, diff, result.to_json(),
                        {**data, "train_from": trained.artifact.metadata["training_data"]["from"],
                         "evaluated_from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cut)),
                         "evaluated_requests": result.n_requests},
                        timings, trained.path)
    record(out)
    if trained.report is not None:  # the training report, with the A/B and the decision on top
        write_training_report(trained.path / REPORT_FILE, trained.report,
                              OfflineAB(out.evaluation, out.decision, out.reason))
    return out


def decide(result, production: str, candidate: str, diff: dict, min_gain: float,
           unit: str = "clicks") -> tuple[str, str]:
    """The gate: promoted when the candidate's DR gain over production has its 95% interval
    above ``min_gain`` with reliable importance weights for both; undecided when the
    weights are unreliable and the interval is not wholly below ``min_gain``; else kept."""
    unreliable = [n for n in (production, candidate) if not result.diagnostics.get(n, {}).get("ips_reliable", True)]
    gain = (f"{diff['value']:+.4f} {unit} per request [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}] "
            f"(doubly robust, 95%) over {result.n_requests:,} requests")
    if unreliable:
        weights = (f"the importance weights of {', '.join(unreliable)} are unreliable on these logs (too little "
                   f"exploration where the two differ)")
        if diff["ci_high"] < min_gain:
            return KEPT, f"kept {production}: {candidate}'s gain {gain} is surely below {min_gain:+.4f}, though {weights}"
        return UNDECIDED, (f"undecided between {production} and {candidate}: {weights}, so the gain {gain} cannot "
                           f"be trusted either way; an online ramp can decide")
    if diff["ci_low"] > min_gain:
        return PROMOTED, f"{candidate} beats {production} by {gain}, above the required {min_gain:+.4f}"
    return KEPT, (f"kept {production}: {candidate}'s gain {gain} is not surely above {min_gain:+.4f}")


def record(result: RetrainResult) -> None:
    """The summary next to the model, and the A/B in its metadata (what `models list` shows)."""
    folder = result.folder
    (folder / SUMMARY_FILE).write_text(json.dumps(result.to_json(), ensure_ascii=False, indent=1, default=float),
                                       encoding="utf-8")
    meta_path = folder / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["offline_ab"] = {"against": result.production or "operators", "difference": result.difference,
                          "decision": result.decision, "reason": result.reason, "summary": SUMMARY_FILE}
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1, default=float), encoding="utf-8")
