"""Fitting a click model on logged impressions: the estimators, the choice of the logistic
regression's regularisation, the numeric features' scale; shared by training (which
validates and saves what it fits) and offline evaluation (whose direct method and doubly
robust estimator need the same model fitted on the evaluated logs)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from features.definition import FeatureConfig, FeatureEncoder

from .artifact import ModelArtifact
from recommender.candidates import cold_start_catalog

from .dataset import downsample_negatives, log_context, require_clicks, require_rewards
from .linear import fit_logistic, fit_logistic_evidence, log_rows
from .objective import Objective
from .metrics import probability_metrics

MODEL_KINDS = ("logistic", "gbm")


@dataclass
class TrainConfig:
    holdout_days: float = 1.0
    max_train_rows: int = 1_500_000
    c_search_rows: int = 300_000  # C of the logistic regression is chosen on this many rows
    models: tuple[str, ...] = MODEL_KINDS
    # refit the chosen kind on every row, validation days included, before saving: with a few
    # days of logs the held-out day is a good part of what there is to learn from
    refit: bool = True
    slots: int = 3
    max_valid_requests: int = 30_000
    logistic_c: tuple[float, ...] = (0.002, 0.01, 0.05)  # chosen on validation log loss
    # "evidence": each block of columns gets its own prior, estimated from the data
    # (training.linear.fit_logistic_evidence), kept when it beats the best C on validation
    logistic_prior: str = "evidence"
    gbm_iterations: int = 100
    gbm_max_rows: int = 500_000
    seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    objective: Objective = field(default_factory=Objective)  # what the model learns (training.objective)


def make_estimator(kind: str, encoder: FeatureEncoder, cfg: TrainConfig, c: float | None = None):
    if kind == "logistic":
        # fitted by training.linear.fit_logistic: Newton's method with a Cholesky solve, as
        # this solver; a few steps converge where L-BFGS took hundreds of gradients
        return LogisticRegression(C=c if c is not None else cfg.logistic_c[-1], solver="newton-cholesky", max_iter=500,
                                  tol=1e-5)
    if kind == "gbm":
        return HistGradientBoostingClassifier(
            max_iter=cfg.gbm_iterations, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=200,
            l2_regularization=1.0, categorical_features=encoder.dense_categorical_mask(), early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=10, random_state=cfg.seed)
    raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(MODEL_KINDS)})")


def fit(kind, encoder, ctx, rows, weights, cfg, c: float | None = None, init: ModelArtifact | None = None,
        precision: np.ndarray | None = None) -> ModelArtifact:
    """A model of ``kind`` fitted on rows of ``ctx`` at their logged positions. ``init``: a
    logistic model of the same encoder whose weights start the solver (a warm start: the
    same optimum, in fewer iterations). ``precision``: the logistic regression's prior
    precision per coefficient, instead of 1 / C for all."""
    est = make_estimator(kind, encoder, cfg, c)
    y = ctx.y[rows]
    if kind == "logistic":
        X = log_rows(encoder, ctx, rows, ctx.log.position[rows])
        start = None if init is None else _weights(init.estimator)
        return ModelArtifact(encoder, fit_logistic(X, y, weights, est, start, precision), kind)
    X = ctx.features(encoder, rows, position=ctx.log.position[rows], dense=True)
    est.fit(*_hard_labels(X, y, weights))
    return ModelArtifact(encoder, est, kind)


def _hard_labels(X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A classifier's rows for labels in [0, 1]: each row with a soft label y appears as a
    1 of weight w y and a 0 of weight w (1 - y), which has the same log loss (labels of 0
    and 1, the click objective's, pass as they are)."""
    y = np.asarray(y, dtype=np.float64)
    soft = (y > 0) & (y < 1)
    if not soft.any():
        return X, y, weights
    ones, zeros = y > 0, y < 1
    return (np.concatenate([X[ones], X[zeros]]), np.concatenate([np.ones(ones.sum()), np.zeros(zeros.sum())]),
            np.concatenate([weights[ones] * y[ones], weights[zeros] * (1 - y[zeros])]))


def _weights(estimator) -> np.ndarray:
    """A fitted logistic regression's coefficients, then its intercept."""
    return np.concatenate([estimator.coef_.ravel(), estimator.intercept_])


@dataclass
class LogisticFit:
    """The logistic regression ``fit_logistic_path`` chose, and how it was regularised."""

    artifact: ModelArtifact
    c: float  # the best single C on validation
    losses: dict  # validation log loss of each C (and of "evidence" when tried)
    prior: str  # "c" or "evidence": which regularisation was kept
    precision: np.ndarray | None  # the prior precision of each coefficient, when "evidence"
    block_precision: dict | None  # the same, per block of columns (what the metadata shows)


def coefficient_blocks(encoder: FeatureEncoder) -> tuple[np.ndarray, list[str]]:
    """Each column's block for the per-block priors, and the blocks' names: the encoder's
    one-hot and cross blocks as laid out, and each numeric column on its own (they are
    different quantities on one scale, not exchangeable effects)."""
    groups = np.empty(encoder.n_features_, dtype=np.int64)
    names: list[str] = []
    for name, (start, n) in encoder.blocks_.items():
        if name == "numeric":
            for j in range(n):
                groups[start + j] = len(names)
                names.append(encoder.numeric_features_[j])
        else:
            groups[start:start + n] = len(names)
            names.append(name)
    return groups, names


def fit_logistic_path(encoder, ctx, rows, weights, valid_rows, cfg) -> LogisticFit:
    """Choose C by validation log loss on a sample of the rows (regularisation matters most
    on small data, and the sample keeps the search cheap), then fit that C on every row.
    Each C starts from the previous one's solution (Cs in increasing order), and the fit
    on every row from the sample's solution of the chosen C, as scikit-learn's own
    regularisation path does: the same optima, in fewer iterations.

    With ``cfg.logistic_prior == "evidence"`` it then fits, on every row, one prior per
    block of columns estimated from the data (``fit_logistic_evidence``), starting from
    that C, and keeps it when its validation log loss is lower than the C's."""
    rng = np.random.default_rng(cfg.seed)
    sub = np.sort(rng.choice(len(rows), min(cfg.c_search_rows, len(rows)), replace=False))
    vsub = np.sort(rng.choice(valid_rows, min(cfg.c_search_rows, len(valid_rows)), replace=False))
    X = log_rows(encoder, ctx, rows[sub], ctx.log.position[rows[sub]])
    Xv = log_rows(encoder, ctx, vsub, ctx.log.position[vsub])
    y, yv = ctx.y[rows[sub]], ctx.y[vsub]

    def valid_loss(est) -> float:
        return probability_metrics(yv, expit(Xv @ est.coef_.ravel() + est.intercept_[0]))["log_loss"]

    losses, solutions, start = {}, {}, None
    for c in sorted(cfg.logistic_c):
        est = fit_logistic(X, y, weights[sub], make_estimator("logistic", encoder, cfg, c), start)
        start = solutions[c] = _weights(est)
        losses[c] = valid_loss(est)
    del X
    best_c = min(losses, key=losses.get)
    losses = {c: losses[c] for c in cfg.logistic_c}
    # sklearn's penalty is a fixed prior on the weights (C multiplies the summed loss), so
    # the same C on more rows regularises less per row, as it should.
    X = log_rows(encoder, ctx, rows, ctx.log.position[rows])
    est = fit_logistic(X, ctx.y[rows], weights, make_estimator("logistic", encoder, cfg, best_c),
                       solutions[best_c])
    if cfg.logistic_prior == "c":
        return LogisticFit(ModelArtifact(encoder, est, "logistic"), best_c, losses, "c", None, None)
    if cfg.logistic_prior != "evidence":
        raise ValueError(f"unknown logistic_prior {cfg.logistic_prior!r} (one of c, evidence)")
    groups, names = coefficient_blocks(encoder)
    eb, precision = fit_logistic_evidence(X, ctx.y[rows], weights,
                                          make_estimator("logistic", encoder, cfg, best_c), groups, _weights(est))
    losses["evidence"] = valid_loss(eb)
    if losses["evidence"] >= valid_loss(est):
        return LogisticFit(ModelArtifact(encoder, est, "logistic"), best_c, losses, "c", None, None)
    blocks = {name: float(precision[groups == g][0]) for g, name in enumerate(names) if np.any(groups == g)}
    return LogisticFit(ModelArtifact(encoder, eb, "logistic"), best_c, losses, "evidence", precision, blocks)


def fit_click_model(directory, catalog, log, history_logs=(), kind: str = "logistic", config: TrainConfig | None = None,
                    objective: Objective | None = None) -> ModelArtifact:
    """A click model fitted on every row of ``log`` (no holdout), e.g. for the direct method;
    with an ``objective`` other than clicks, a model of its reward over its bound
    (training.objective), whose probability times the bound is the expected reward."""
    cfg = config or TrainConfig()
    objective = objective or cfg.objective
    require_clicks(log.clicked, "to fit a click model on")
    catalog = cold_start_catalog(catalog, [log, *history_logs])
    encoder = FeatureEncoder(cfg.features).fit(attribute_values(directory, cfg.features), catalog.known, log.click_rate())
    ctx = log_context(encoder, directory, catalog, log, history_logs)
    if not objective.is_clicks:
        ctx.label = objective.labels(log, catalog)
        require_rewards(ctx.label, "to fit a model on", objective.unit)
    rows, w = downsample_negatives(np.arange(len(log)), ctx.y, cfg.max_train_rows, np.random.default_rng(cfg.seed))
    ctx.prepare(rows)
    fit_scale(encoder, ctx, np.random.default_rng(cfg.seed), rows)
    return fit(kind, encoder, ctx, rows, w, cfg)


def fit_scale(encoder: FeatureEncoder, ctx, rng: np.random.Generator, among: np.ndarray, sample: int = 200_000) -> None:
    rows = np.sort(rng.choice(among, min(sample, len(among)), replace=False))
    log = ctx.log
    encoder.fit_scale(encoder.numeric(ctx.banners, log.banner[rows], log.ts[rows], ctx.history_rows(rows)))


def fit_interest(encoder: FeatureEncoder, catalog, log) -> None:
    """The encoder's category click rates and interest prior from the training log."""
    code_of_banner = np.array([encoder.category_code(catalog.get(b).category if catalog.get(b) is not None else "")
                               for b in log.banner_ids], dtype=np.int64)
    encoder.fit_interest(log.staff, code_of_banner[log.banner] if len(log) else np.zeros(0, np.int64), log.clicked)


def attribute_values(directory, fcfg: FeatureConfig) -> dict[str, list[str]]:
    vals: dict[str, set] = {a: set() for a in fcfg.staff_attributes}
    for s in directory.by_id.values():
        for a in fcfg.staff_attributes:
            vals[a].add(s.get(a))
    return {a: sorted(v) for a, v in vals.items()}
