"""Fit the click model: time split, position-debiased features, logistic regression and
gradient boosting, selection on validation ranking quality, artifact on disk."""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from features.definition import BannerArrays, FeatureEncoder
from features.pipeline import history_features
from recommender.candidates import CandidateTable, build_candidate_table, cold_start_catalog, greedy_positions

from . import report_data
from .artifact import ModelArtifact
from .dataset import downsample_negatives, log_context, require_rewards, time_split
from .fitting import TrainConfig, attribute_values, fit, fit_interest, fit_logistic_path, fit_scale
from .linear import linear_rows, log_rows
from .metrics import clearly_better, ips_click_terms, ndcg_at_k, probability_metrics
from .report import REPORT_FILE, TrainingReportData, write_training_report

@dataclass
class TrainResult:
    path: Path | None
    chosen: str
    metrics: dict
    timings: dict
    artifact: ModelArtifact
    report: TrainingReportData | None = None  # what report.html shows; re-render it with write_training_report


@dataclass
class ValidationRequests:
    """The sampled held-out requests (up to max_valid_requests), every candidate of each
    with its history features, and their logged impressions on the first K positions:
    built once, and ranked by each model and by popularity."""

    cands: CandidateTable
    banners: BannerArrays  # the catalog's banners, which cands.banner indexes
    hist: dict  # the history features of every candidate
    n_requests: int
    logged: np.ndarray  # rows of the log: the sampled requests' impressions on the first K positions
    local: np.ndarray  # each logged row's request, 0..n_requests-1
    logged_banner: np.ndarray  # each logged row's banner, as a catalog index
    reward: np.ndarray | None = None  # each log row's reward under the objective (None: the click)

    def ips_clicks(self, score: np.ndarray, log, catalog, slots: int) -> float:
        """IPS estimate of clicks@K of the greedy ranking of ``score`` (one per candidate)."""
        terms = self.ips_terms(score, log, catalog, slots)
        return float(terms.mean()) if len(terms) else 0.0

    def ips_terms(self, score: np.ndarray, log, catalog, slots: int) -> np.ndarray:
        """Each request's term of ``ips_clicks`` (metrics.ips_click_terms)."""
        pos = greedy_positions(self.cands, score, catalog)
        top = pos <= slots
        chosen = np.zeros((self.n_requests, len(catalog.banners)), dtype=np.int64)  # 0: not in the first K
        chosen[self.cands.request[top], self.cands.banner[top]] = pos[top]
        lr = self.logged
        match = chosen[self.local, self.logged_banner] == log.position[lr]
        reward = log.clicked if self.reward is None else self.reward
        return ips_click_terms(match, log.propensity[lr], reward[lr], self.local, log.position[lr],
                               np.bincount(self.cands.request, minlength=self.n_requests), slots)


def validation_requests(ctx, rows, catalog, directory, encoder, cfg: TrainConfig) -> ValidationRequests:
    """The ValidationRequests of held-out ``rows`` (the same sample of requests for every model)."""
    log = ctx.log
    req = _valid_requests(ctx, rows, cfg, np.random.default_rng(cfg.seed))
    req_ts = log.request_ts()[req]
    req_staff = log.request_staff()[req]
    profiles = [directory.get(s).attributes for s in log.staff_ids]
    explicit = {i: log.candidates[r] for i, r in enumerate(req) if r in log.candidates}
    cands = build_candidate_table(catalog, profiles, req_staff, req_ts, explicit)
    banners = encoder.encode_banners(catalog.banners)
    hist = history_features(ctx.history, log.staff_ids, cands.person, banners, cands.banner, cands.ts)
    lr = rows[np.isin(log.request[rows], req) & (log.position[rows] <= cfg.slots)]
    cat_index = np.array([catalog.index[b] for b in log.banner_ids], dtype=np.int64)
    reward = None if cfg.objective.is_clicks else cfg.objective.rewards(log, catalog)
    return ValidationRequests(cands, banners, hist, len(req), lr, np.searchsorted(req, log.request[lr]),
                              cat_index[log.banner[lr]], reward)


def validate(artifact: ModelArtifact, ctx, rows: np.ndarray, vreq: ValidationRequests, catalog,
             cfg: TrainConfig) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics of a model on held-out rows: log loss and AUC at the logged position, NDCG@K of
    re-ranking each request's shown banners, IPS clicks@K of its greedy ranking over all
    candidates (on up to max_valid_requests requests), all of the objective's label and
    reward (training.objective: clicks by default); its probability of each row at its
    logged position; and each sampled request's IPS term."""
    log = ctx.log
    y = ctx.y[rows]
    at_logged, at_reference = _row_logits(artifact, ctx, rows)
    p = 1 / (1 + np.exp(-at_logged))
    out = probability_metrics(y, p)
    out[f"ndcg@{cfg.slots}"] = ndcg_at_k(log.request[rows], at_reference, y, cfg.slots)
    terms = vreq.ips_terms(_candidate_logits(artifact, ctx, vreq), log, catalog, cfg.slots)
    out[cfg.objective.metric(cfg.slots)] = float(terms.mean()) if len(terms) else 0.0
    return out, p, terms


def _row_logits(artifact: ModelArtifact, ctx, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the rows at their logged position and at the reference position (the
    features differ only in the position, so they are built once)."""
    enc, position = artifact.encoder, ctx.log.position[rows]
    if artifact.kind == "logistic":
        X = log_rows(enc, ctx, rows, position)
        at_logged = artifact.logit_from_matrix(X)
        coef = artifact.estimator.coef_.ravel()
        return at_logged, at_logged + coef[X.numeric_offset] * (math.log(enc.reference_position) - X.numeric[:, 0])
    X = ctx.features(enc, rows, position=position, dense=True)
    at_logged = artifact.logit_from_matrix(X)
    X[:, enc.dense_position_column] = enc.reference_position
    return at_logged, artifact.logit_from_matrix(X)


def _candidate_logits(artifact: ModelArtifact, ctx, vreq: ValidationRequests) -> np.ndarray:
    """Logits of every candidate of the sampled validation requests, at the reference position."""
    enc, c = artifact.encoder, vreq.cands
    args = (ctx.staff, c.person, vreq.banners, c.banner, c.ts, None, vreq.hist)
    if artifact.kind == "logistic":
        return artifact.logit_from_matrix(linear_rows(enc, *args))
    return artifact.logit_from_matrix(enc.transform(*args, dense=True))


def choose_kind(click_terms: dict[str, np.ndarray]) -> str:
    """The model kind to keep, by the IPS estimate of clicks@K on the validation requests
    (NDCG on logged clicks favours orders close to the logging policy, whose clicks carry
    position bias; IPS does not). The first kind (the logistic regression by default) is
    kept unless another beats it by more than two standard errors of their paired
    difference on the same requests: one day of validation cannot tell apart models
    within its noise, and measured against the simulator's ground truth the tree model
    chosen on such a tie ranked worse."""
    kinds = list(click_terms)
    chosen = kinds[0]
    for k in kinds[1:]:
        if clearly_better(click_terms[k], click_terms[chosen]):
            chosen = k
    return chosen


def _valid_requests(ctx, rows, cfg, rng: np.random.Generator):
    req = np.unique(ctx.log.request[rows])
    if len(req) > cfg.max_valid_requests:
        req = np.sort(rng.choice(req, cfg.max_valid_requests, replace=False))
    return req


@dataclass
class _Fitted:
    """One model kind, fitted and validated."""

    artifact: ModelArtifact
    metrics: dict
    probabilities: np.ndarray  # of each validation row at its logged position
    click_terms: np.ndarray  # each validation request's IPS term of clicks@K
    fit_s: float
    validate_s: float
    precision: np.ndarray | None = None  # the logistic regression's prior precision per coefficient, if not 1 / C


def _fit_logistic(encoder, ctx, fit_rows, weights, valid_rows, vreq, catalog, cfg, step) -> _Fitted:
    t = time.perf_counter()
    path = fit_logistic_path(encoder, ctx, fit_rows, weights, valid_rows, cfg)
    fit_s = time.perf_counter() - t
    step("validate logistic")
    t = time.perf_counter()
    metrics, p, terms = validate(path.artifact, ctx, valid_rows, vreq, catalog, cfg)
    metrics["C"] = path.c
    metrics["prior"] = path.prior
    if path.block_precision is not None:
        metrics["block_precision"] = path.block_precision
    return _Fitted(path.artifact, metrics, p, terms, fit_s, time.perf_counter() - t, path.precision)


def _fit_tree(kind, encoder, ctx, rows, weights, valid_rows, vreq, catalog, cfg) -> _Fitted:
    with threadpool_limits(limits=1, user_api="openmp"):
        t = time.perf_counter()
        art = fit(kind, encoder, ctx, rows, weights, cfg)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        metrics, p, terms = validate(art, ctx, valid_rows, vreq, catalog, cfg)
    return _Fitted(art, metrics, p, terms, fit_s, time.perf_counter() - t)


def train(directory, catalog, log, out_dir: str | Path | None, config: TrainConfig | None = None, history_logs=(),
          progress=None) -> TrainResult:
    """Train, validate against the popularity baseline, choose, refit, save under out_dir/<version>
    with its training report (report.html)."""
    cfg = config or TrainConfig()
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    step = progress or (lambda name: None)
    t = time.perf_counter()
    step("features")
    catalog = cold_start_catalog(catalog, [log, *history_logs])
    encoder = FeatureEncoder(cfg.features).fit(attribute_values(directory, cfg.features), catalog.known, log.click_rate())
    fit_interest(encoder, catalog, log)
    ctx = log_context(encoder, directory, catalog, log, history_logs)
    train_rows, valid_rows, cut = time_split(log, cfg.holdout_days)
    if not cfg.objective.is_clicks:
        ctx.label = cfg.objective.labels(log, catalog)
        require_rewards(ctx.label[train_rows], "before the held-out days", cfg.objective.unit)
    fit_rows, weights = downsample_negatives(train_rows, ctx.y, cfg.max_train_rows, rng)
    ctx.prepare(np.concatenate([fit_rows, valid_rows]))
    fit_scale(encoder, ctx, rng, fit_rows)
    vreq = validation_requests(ctx, valid_rows, catalog, directory, encoder, cfg)
    timings["prepare_s"] = time.perf_counter() - t

    # the tree models fit on their own thread, one OpenMP thread each, while the logistic
    # regression fits on this one: two cores busy without OpenMP threads spinning on each
    # other (on a loaded two-core machine that spinning took three times the CPU time)
    tree_rows = {k: np.sort(rng.choice(len(fit_rows), min(cfg.gbm_max_rows, len(fit_rows)), replace=False))
                 for k in cfg.models if k != "logistic"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = {k: pool.submit(_fit_tree, k, encoder, ctx, fit_rows[sub], weights[sub], valid_rows, vreq, catalog, cfg)
                   for k, sub in tree_rows.items()}
        done = {}
        if "logistic" in cfg.models:
            step("fit logistic")
            done["logistic"] = _fit_logistic(encoder, ctx, fit_rows, weights, valid_rows, vreq, catalog, cfg, step)
        for k, future in pending.items():
            step(f"fit {k}")
            done[k] = future.result()
            step(f"validate {k}")
    metrics = {k: done[k].metrics for k in cfg.models}
    fitted = {k: done[k].artifact for k in cfg.models}
    probabilities = {k: done[k].probabilities for k in cfg.models}
    for k in cfg.models:
        timings[f"fit_{k}_s"], timings[f"validate_{k}_s"] = done[k].fit_s, done[k].validate_s
    step("validate popularity")
    metrics["popularity"] = _popularity_metrics(ctx, encoder, valid_rows, vreq, catalog, cfg, log, train_rows)
    chosen = choose_kind({k: done[k].click_terms for k in cfg.models})
    final = fitted[chosen]
    if cfg.refit:
        step(f"refit {chosen}")
        t = time.perf_counter()
        all_rows, w = downsample_negatives(np.arange(len(log)), ctx.y, cfg.max_train_rows, rng)
        ctx.prepare(all_rows)
        if chosen == "gbm" and len(all_rows) > cfg.gbm_max_rows:
            sub = np.sort(rng.choice(len(all_rows), cfg.gbm_max_rows, replace=False))
            all_rows, w = all_rows[sub], w[sub]
        final = fit(chosen, encoder, ctx, all_rows, w, cfg, metrics[chosen].get("C"),
                    init=final if chosen == "logistic" else None, precision=done[chosen].precision)
        timings["refit_s"] = time.perf_counter() - t
    path = None
    created = datetime.now(timezone.utc)
    version = f"{created:%Y%m%dT%H%M%S}-{chosen}"
    meta = {
        "version": version,
        "created": created.isoformat(timespec="seconds"),
        "kind": chosen,
        "training_data": {
            "source": getattr(log, "source", ""),
            "rows": int(len(log)), "requests": int(log.n_requests), "clicks": int(log.clicked.sum()),
            "outcomes": int(np.count_nonzero(log.outcome)),
            "staff": int(len(np.unique(log.staff))), "banners": int(len(np.unique(log.banner))),
            "from": _iso(float(log.ts.min())), "to": _iso(float(log.ts.max())), "validation_from": _iso(cut),
            "train_rows": int(len(train_rows)), "validation_rows": int(len(valid_rows)), "fit_rows": int(len(fit_rows)),
            "history_rows": int(sum(len(h) for h in history_logs)),
        },
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "features"},
        "validation": metrics,
        "objective": cfg.objective.to_dict(),
        "position_debiasing": "log(position) as a feature while fitting; scored at reference position "
                              f"{cfg.features.reference_position}",
    }
    step("report")
    t = time.perf_counter()
    report = _report_data(meta, cfg, ctx, catalog, directory, cut, valid_rows, probabilities[chosen], final, rng)
    timings["report_s"] = time.perf_counter() - t
    if out_dir is not None:
        meta["report"] = REPORT_FILE
        path = final.save(Path(out_dir) / version, meta)
        write_training_report(path / REPORT_FILE, report)
    else:
        final.metadata = meta
    return TrainResult(path, chosen, metrics, timings, final, report)


def _report_data(meta: dict, cfg: TrainConfig, ctx, catalog, directory, cut: float, valid_rows: np.ndarray,
                 p: np.ndarray, final: ModelArtifact, rng: np.random.Generator) -> TrainingReportData:
    """The report's numbers: the same metadata, plus what only the log and the models in
    memory can tell (rates per group, calibration of ``p``, the validated model's
    probability of each validation row, the features that move the scores)."""
    log = ctx.log
    method, effects, n_rows, position_weight = report_data.feature_effects(final, ctx, valid_rows, rng)
    return TrainingReportData(
        version=meta["version"], created=meta["created"], chosen=meta["kind"], slots=cfg.slots,
        training_data=meta["training_data"], train_config=meta["train_config"], validation=meta["validation"],
        daily=report_data.daily_volumes(log, cut),
        click_rates=report_data.click_rates(log, catalog, directory, cfg.features.max_position),
        calibration=report_data.calibration(p, ctx.y[valid_rows]),
        calibrated_model=f"{meta['kind']} model as validated" + (" (before the refit on every row)" if cfg.refit else ""),
        importance_method=method, importance=effects, importance_rows=n_rows, position_weight=position_weight)


def _popularity_metrics(ctx, encoder, rows, vreq: ValidationRequests, catalog, cfg, log, train_rows) -> dict:
    g = encoder.popularity(ctx.history_rows(rows))
    y = ctx.y
    # probability: banner popularity times the position's click-rate ratio seen in training
    pos_rate = np.bincount(np.minimum(log.position[train_rows], cfg.features.max_position), weights=y[train_rows],
                           minlength=cfg.features.max_position + 1)
    pos_n = np.bincount(np.minimum(log.position[train_rows], cfg.features.max_position), minlength=cfg.features.max_position + 1)
    ratio = (pos_rate / np.maximum(pos_n, 1)) / max(y[train_rows].mean(), 1e-9)
    ratio = np.where(pos_n > 0, ratio, 1.0)
    p = np.clip(g * ratio[np.minimum(log.position[rows], cfg.features.max_position)], 1e-6, 1 - 1e-6)
    if not cfg.objective.is_clicks:  # the popularity of clicks, scaled to the objective's rate
        p = p * y[train_rows].mean() / max(log.clicked[train_rows].mean(), 1e-9)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    out = probability_metrics(y[rows], p)
    out[f"ndcg@{cfg.slots}"] = ndcg_at_k(log.request[rows], g, y[rows], cfg.slots)
    out[cfg.objective.metric(cfg.slots)] = vreq.ips_clicks(encoder.popularity(vreq.hist), log, catalog, cfg.slots)
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
