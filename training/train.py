"""Fit the click model: time split, position-debiased features, logistic regression and
gradient boosting, selection on validation ranking quality, artifact on disk."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from features.definition import FeatureEncoder
from features.pipeline import candidate_features, history_features
from recommender.candidates import build_candidate_table, cold_start_catalog, greedy_positions

from . import report_data
from .artifact import ModelArtifact
from .dataset import downsample_negatives, log_context, time_split
from .fitting import TrainConfig, attribute_values, fit, fit_logistic_path, fit_scale
from .metrics import ips_clicks_at_k, ndcg_at_k, probability_metrics
from .report import REPORT_FILE, TrainingReportData, write_training_report

@dataclass
class TrainResult:
    path: Path | None
    chosen: str
    metrics: dict
    timings: dict
    artifact: ModelArtifact
    report: TrainingReportData | None = None  # what report.html shows; re-render it with write_training_report


def validate(artifact: ModelArtifact, candidate_scores, ctx, rows: np.ndarray, catalog, directory, cfg: TrainConfig) -> dict:
    """Metrics of a model on held-out rows: log loss and AUC at the logged position, NDCG@K of
    re-ranking each request's shown banners, IPS clicks@K of its greedy ranking over all
    candidates (on up to max_valid_requests requests)."""
    log, enc = ctx.log, artifact.encoder
    y = log.clicked[rows]
    X_pos = ctx.features(enc, rows, position=log.position[rows], dense=artifact.dense)
    p = 1 / (1 + np.exp(-artifact.logit_from_matrix(X_pos)))
    out = probability_metrics(y, p)
    s_ref = artifact.logit_from_matrix(ctx.features(enc, rows, dense=artifact.dense))
    out[f"ndcg@{cfg.slots}"] = ndcg_at_k(log.request[rows], s_ref, y, cfg.slots)
    out[f"clicks@{cfg.slots}"] = _ips_clicks(candidate_scores, ctx, rows, catalog, directory, cfg)
    return out


def _valid_requests(ctx, rows, cfg, rng: np.random.Generator):
    req = np.unique(ctx.log.request[rows])
    if len(req) > cfg.max_valid_requests:
        req = np.sort(rng.choice(req, cfg.max_valid_requests, replace=False))
    return req


def _ips_clicks(score_fn, ctx, rows, catalog, directory, cfg) -> float:
    """IPS estimate of clicks@K for the greedy ranking of ``score_fn`` over each sampled
    validation request's candidates."""
    log = ctx.log
    req = _valid_requests(ctx, rows, cfg, np.random.default_rng(cfg.seed))
    req_ts = log.request_ts()[req]
    req_staff = log.request_staff()[req]
    profiles = [directory.get(s).attributes for s in log.staff_ids]
    explicit = {i: log.candidates[r] for i, r in enumerate(req) if r in log.candidates}
    cands = build_candidate_table(catalog, profiles, req_staff, req_ts, explicit)
    score = score_fn(ctx, cands)
    pos = greedy_positions(cands, score, catalog)
    top = pos <= cfg.slots
    chosen = {(int(r), int(b)): int(k) for r, b, k in zip(cands.request[top], cands.banner[top], pos[top])}
    # logged impressions of the sampled requests, on the first K positions
    lr = rows[np.isin(log.request[rows], req) & (log.position[rows] <= cfg.slots)]
    local = np.searchsorted(req, log.request[lr])
    cat_index = np.array([catalog.index[b] for b in log.banner_ids])
    match = np.array([chosen.get((int(r), int(cat_index[log.banner[i]]))) == int(log.position[i])
                      for r, i in zip(local, lr)], dtype=bool)
    return ips_clicks_at_k(match, log.propensity[lr], log.clicked[lr], local, log.position[lr],
                           np.bincount(cands.request, minlength=len(req)), cfg.slots)


def _candidate_matrix(ctx, cands, encoder, catalog, dense: bool):
    """Features of every candidate of sampled validation requests, at the reference position."""
    banners = encoder.encode_banners(catalog.banners)
    return candidate_features(encoder, ctx.history, ctx.log.staff_ids, ctx.staff, cands.person, banners, cands.banner,
                              cands.ts, None, dense=dense)


def _popularity_candidate_scores(ctx, cands, encoder, catalog):
    banners = encoder.encode_banners(catalog.banners)
    return encoder.popularity(history_features(ctx.history, ctx.log.staff_ids, cands.person, banners, cands.banner, cands.ts))


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
    ctx = log_context(encoder, directory, catalog, log, history_logs)
    train_rows, valid_rows, cut = time_split(log, cfg.holdout_days)
    fit_rows, weights = downsample_negatives(train_rows, log.clicked, cfg.max_train_rows, rng)
    ctx.prepare(np.concatenate([fit_rows, valid_rows]))
    fit_scale(encoder, ctx, rng, fit_rows)
    timings["prepare_s"] = time.perf_counter() - t

    def model_scores(artifact):
        return lambda c, cands: artifact.logit_from_matrix(_candidate_matrix(c, cands, encoder, catalog, artifact.dense))

    metrics: dict[str, dict] = {}
    fitted: dict[str, ModelArtifact] = {}
    for kind in cfg.models:
        step(f"fit {kind}")
        t = time.perf_counter()
        if kind == "logistic":
            art, chosen_c, c_losses = fit_logistic_path(encoder, ctx, fit_rows, weights, valid_rows, cfg)
        else:
            sub = np.sort(rng.choice(len(fit_rows), min(cfg.gbm_max_rows, len(fit_rows)), replace=False))
            art = fit(kind, encoder, ctx, fit_rows[sub], weights[sub], cfg)
        timings[f"fit_{kind}_s"] = time.perf_counter() - t
        step(f"validate {kind}")
        t = time.perf_counter()
        metrics[kind] = validate(art, model_scores(art), ctx, valid_rows, catalog, directory, cfg)
        if kind == "logistic":
            metrics[kind]["C"] = chosen_c
        timings[f"validate_{kind}_s"] = time.perf_counter() - t
        fitted[kind] = art
    step("validate popularity")
    metrics["popularity"] = _popularity_metrics(ctx, encoder, valid_rows, catalog, directory, cfg, log, train_rows)
    # Selection by the IPS estimate of clicks@K: NDCG on logged clicks favours orders close
    # to the logging policy (its clicks carry position bias), IPS does not.
    key = f"clicks@{cfg.slots}"
    chosen = max(cfg.models, key=lambda k: (metrics[k][key], -metrics[k]["log_loss"]))
    final = fitted[chosen]
    if cfg.refit:
        step(f"refit {chosen}")
        t = time.perf_counter()
        all_rows, w = downsample_negatives(np.arange(len(log)), log.clicked, cfg.max_train_rows, rng)
        ctx.prepare(all_rows)
        if chosen == "gbm" and len(all_rows) > cfg.gbm_max_rows:
            sub = np.sort(rng.choice(len(all_rows), cfg.gbm_max_rows, replace=False))
            all_rows, w = all_rows[sub], w[sub]
        final = fit(chosen, encoder, ctx, all_rows, w, cfg, metrics[chosen].get("C"))
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
            "staff": int(len(np.unique(log.staff))), "banners": int(len(np.unique(log.banner))),
            "from": _iso(float(log.ts.min())), "to": _iso(float(log.ts.max())), "validation_from": _iso(cut),
            "train_rows": int(len(train_rows)), "validation_rows": int(len(valid_rows)), "fit_rows": int(len(fit_rows)),
            "history_rows": int(sum(len(h) for h in history_logs)),
        },
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "features"},
        "validation": metrics,
        "position_debiasing": "log(position) as a feature while fitting; scored at reference position "
                              f"{cfg.features.reference_position}",
    }
    step("report")
    t = time.perf_counter()
    report = _report_data(meta, cfg, ctx, catalog, directory, cut, valid_rows, fitted[chosen], final, rng)
    timings["report_s"] = time.perf_counter() - t
    if out_dir is not None:
        meta["report"] = REPORT_FILE
        path = final.save(Path(out_dir) / version, meta)
        write_training_report(path / REPORT_FILE, report)
    else:
        final.metadata = meta
    return TrainResult(path, chosen, metrics, timings, final, report)


def _report_data(meta: dict, cfg: TrainConfig, ctx, catalog, directory, cut: float, valid_rows: np.ndarray,
                 validated: ModelArtifact, final: ModelArtifact, rng: np.random.Generator) -> TrainingReportData:
    """The report's numbers: the same metadata, plus what only the log and the models in
    memory can tell (rates per group, calibration, the features that move the scores)."""
    log = ctx.log
    p = report_data.validation_probabilities(validated, ctx, valid_rows)
    method, effects, n_rows, position_weight = report_data.feature_effects(final, ctx, valid_rows, rng)
    return TrainingReportData(
        version=meta["version"], created=meta["created"], chosen=meta["kind"], slots=cfg.slots,
        training_data=meta["training_data"], train_config=meta["train_config"], validation=meta["validation"],
        daily=report_data.daily_volumes(log, cut),
        click_rates=report_data.click_rates(log, catalog, directory, cfg.features.max_position),
        calibration=report_data.calibration(p, log.clicked[valid_rows]),
        calibrated_model=f"{meta['kind']} model as validated" + (" (before the refit on every row)" if cfg.refit else ""),
        importance_method=method, importance=effects, importance_rows=n_rows, position_weight=position_weight)


def _popularity_metrics(ctx, encoder, rows, catalog, directory, cfg, log, train_rows) -> dict:
    g = encoder.popularity(ctx.history_rows(rows))
    # probability: banner popularity times the position's click-rate ratio seen in training
    pos_rate = np.bincount(np.minimum(log.position[train_rows], cfg.features.max_position), weights=log.clicked[train_rows],
                           minlength=cfg.features.max_position + 1)
    pos_n = np.bincount(np.minimum(log.position[train_rows], cfg.features.max_position), minlength=cfg.features.max_position + 1)
    ratio = (pos_rate / np.maximum(pos_n, 1)) / max(log.clicked[train_rows].mean(), 1e-9)
    ratio = np.where(pos_n > 0, ratio, 1.0)
    p = np.clip(g * ratio[np.minimum(log.position[rows], cfg.features.max_position)], 1e-6, 1 - 1e-6)
    out = probability_metrics(log.clicked[rows], p)
    out[f"ndcg@{cfg.slots}"] = ndcg_at_k(log.request[rows], g, log.clicked[rows], cfg.slots)
    out[f"clicks@{cfg.slots}"] = _ips_clicks(lambda c, cands: _popularity_candidate_scores(c, cands, encoder, catalog),
                                             ctx, rows, catalog, directory, cfg)
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
