"""Fit the click model: time split, position-debiased features, logistic regression and
gradient boosting, selection on validation ranking quality, artifact on disk."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from features.definition import NUMERIC_FEATURES, FeatureConfig, FeatureEncoder
from features.pipeline import candidate_features, history_features
from recommender.candidates import build_candidate_table, cold_start_catalog, greedy_positions

from .artifact import ModelArtifact
from .dataset import downsample_negatives, log_context, require_clicks, time_split
from .metrics import ips_clicks_at_k, ndcg_at_k, probability_metrics

MODEL_KINDS = ("logistic", "gbm")


@dataclass
class TrainConfig:
    holdout_days: float = 1.0
    max_train_rows: int = 1_500_000
    c_search_rows: int = 300_000  # C of the logistic regression is chosen on this many rows
    models: tuple[str, ...] = MODEL_KINDS
    refit: bool = False  # True: refit the chosen kind on every row (validation included) before saving
    slots: int = 3
    max_valid_requests: int = 30_000
    logistic_c: tuple[float, ...] = (0.002, 0.01, 0.05)  # chosen on validation log loss
    gbm_iterations: int = 100
    gbm_max_rows: int = 500_000
    seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)


@dataclass
class TrainResult:
    path: Path | None
    chosen: str
    metrics: dict
    timings: dict
    artifact: ModelArtifact


def make_estimator(kind: str, encoder: FeatureEncoder, cfg: TrainConfig, c: float | None = None):
    if kind == "logistic":
        # lbfgs: no Hessian to build, so time grows linearly with the rows; it converges in
        # one to two hundred iterations on these features.
        return LogisticRegression(C=c if c is not None else cfg.logistic_c[-1], solver="lbfgs", max_iter=500, tol=1e-5)
    if kind == "gbm":
        return HistGradientBoostingClassifier(
            max_iter=cfg.gbm_iterations, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=200,
            l2_regularization=1.0, categorical_features=encoder.dense_categorical_mask(), early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=10, random_state=cfg.seed)
    raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(MODEL_KINDS)})")


def _fit(kind, encoder, ctx, rows, weights, cfg, c: float | None = None) -> ModelArtifact:
    X = ctx.features(encoder, rows, position=ctx.log.position[rows], dense=(kind == "gbm"))
    est = make_estimator(kind, encoder, cfg, c)
    est.fit(X, ctx.log.clicked[rows], sample_weight=weights)
    return ModelArtifact(encoder, est, kind)


def _fit_logistic_path(encoder, ctx, rows, weights, valid_rows, cfg) -> tuple[ModelArtifact, float, dict]:
    """Choose C by validation log loss on a sample of the rows (regularisation matters most
    on small data, and the sample keeps the search cheap), then fit that C on every row."""
    rng = np.random.default_rng(cfg.seed)
    sub = np.sort(rng.choice(len(rows), min(cfg.c_search_rows, len(rows)), replace=False))
    vsub = np.sort(rng.choice(valid_rows, min(cfg.c_search_rows, len(valid_rows)), replace=False))
    X = ctx.features(encoder, rows[sub], position=ctx.log.position[rows[sub]])
    Xv = ctx.features(encoder, vsub, position=ctx.log.position[vsub])
    yv = ctx.log.clicked[vsub]
    losses = {}
    for c in cfg.logistic_c:
        est = make_estimator("logistic", encoder, cfg, c).fit(X, ctx.log.clicked[rows[sub]], sample_weight=weights[sub])
        losses[c] = probability_metrics(yv, est.predict_proba(Xv)[:, 1])["log_loss"]
    best_c = min(losses, key=losses.get)
    # sklearn's penalty is a fixed prior on the weights (C multiplies the summed loss), so
    # the same C on more rows regularises less per row, as it should.
    return _fit("logistic", encoder, ctx, rows, weights, cfg, best_c), best_c, losses


def fit_click_model(directory, catalog, log, history_logs=(), kind: str = "logistic", config: TrainConfig | None = None) -> ModelArtifact:
    """A click model fitted on every row of ``log`` (no holdout), e.g. for the direct method."""
    cfg = config or TrainConfig()
    require_clicks(log.clicked, "to fit a click model on")
    catalog = cold_start_catalog(catalog, [log, *history_logs])
    encoder = FeatureEncoder(cfg.features).fit(_attribute_values(directory, cfg.features), catalog.known, log.click_rate())
    ctx = log_context(encoder, directory, catalog, log, history_logs)
    rows, w = downsample_negatives(np.arange(len(log)), log.clicked, cfg.max_train_rows, np.random.default_rng(cfg.seed))
    ctx.prepare(rows)
    _fit_scale(encoder, ctx, np.random.default_rng(cfg.seed), rows)
    return _fit(kind, encoder, ctx, rows, w, cfg)


def _fit_scale(encoder: FeatureEncoder, ctx, rng: np.random.Generator, among: np.ndarray, sample: int = 200_000) -> None:
    rows = np.sort(rng.choice(among, min(sample, len(among)), replace=False))
    X = ctx.features(encoder, rows, dense=True)
    encoder.fit_scale(X[:, encoder.dense_column(NUMERIC_FEATURES[0]):])


def _attribute_values(directory, fcfg: FeatureConfig) -> dict[str, list[str]]:
    vals: dict[str, set] = {a: set() for a in fcfg.staff_attributes}
    for s in directory.by_id.values():
        for a in fcfg.staff_attributes:
            vals[a].add(s.get(a))
    return {a: sorted(v) for a, v in vals.items()}


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
    """Train, validate against the popularity baseline, choose, refit, save under out_dir/<version>."""
    cfg = config or TrainConfig()
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    step = progress or (lambda name: None)
    t = time.perf_counter()
    step("features")
    catalog = cold_start_catalog(catalog, [log, *history_logs])
    encoder = FeatureEncoder(cfg.features).fit(_attribute_values(directory, cfg.features), catalog.known, log.click_rate())
    ctx = log_context(encoder, directory, catalog, log, history_logs)
    train_rows, valid_rows, cut = time_split(log, cfg.holdout_days)
    fit_rows, weights = downsample_negatives(train_rows, log.clicked, cfg.max_train_rows, rng)
    ctx.prepare(np.concatenate([fit_rows, valid_rows]))
    _fit_scale(encoder, ctx, rng, fit_rows)
    timings["prepare_s"] = time.perf_counter() - t

    def model_scores(artifact):
        return lambda c, cands: artifact.logit_from_matrix(_candidate_matrix(c, cands, encoder, catalog, artifact.dense))

    metrics: dict[str, dict] = {}
    fitted: dict[str, ModelArtifact] = {}
    for kind in cfg.models:
        step(f"fit {kind}")
        t = time.perf_counter()
        if kind == "logistic":
            art, chosen_c, c_losses = _fit_logistic_path(encoder, ctx, fit_rows, weights, valid_rows, cfg)
        else:
            sub = np.sort(rng.choice(len(fit_rows), min(cfg.gbm_max_rows, len(fit_rows)), replace=False))
            art = _fit(kind, encoder, ctx, fit_rows[sub], weights[sub], cfg)
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
        final = _fit(chosen, encoder, ctx, all_rows, w, cfg, metrics[chosen].get("C"))
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
            "from": _iso(float(log.ts.min())), "to": _iso(float(log.ts.max())), "validation_from": _iso(cut),
            "train_rows": int(len(train_rows)), "validation_rows": int(len(valid_rows)), "fit_rows": int(len(fit_rows)),
            "history_rows": int(sum(len(h) for h in history_logs)),
        },
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "features"},
        "validation": metrics,
        "position_debiasing": "log(position) as a feature while fitting; scored at reference position "
                              f"{cfg.features.reference_position}",
    }
    if out_dir is not None:
        path = final.save(Path(out_dir) / version, meta)
    else:
        final.metadata = meta
    return TrainResult(path, chosen, metrics, timings, final)


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
