"""What the training report shows, computed from the log, the staff directory and the fitted
models while train() still holds them (the report renders from this alone)."""
from __future__ import annotations

from datetime import datetime

import numpy as np
from threadpoolctl import threadpool_limits

from features.definition import STANDARD_CATEGORIES
from recommender.timeutil import KST

from .report import CalibrationBin, DayVolume, FeatureEffect, RateRow

TOP_FEATURES = 15
IMPORTANCE_ROWS = 20_000  # validation rows sampled to measure feature effects
PERMUTATION_ROWS = 10_000  # fewer for permutation importance: it predicts once per column and repeat
RATE_ATTRIBUTES = (("role", "role"), ("school_level", "school level"))


def daily_volumes(log, cut: float) -> list[DayVolume]:
    """Impressions and clicks per KST day and part of the split (a day the cut falls in
    shows twice, once per part)."""
    offset = KST.utcoffset(None).total_seconds()
    day = np.floor((log.ts + offset) / 86400.0).astype(np.int64)
    part = (log.ts >= cut).astype(np.int64)
    key = (day - day.min()) * 2 + part
    rows = np.bincount(key)
    clicks = np.bincount(key, weights=log.clicked)
    out = []
    for k in np.flatnonzero(rows):
        d = datetime.fromtimestamp((int(day.min()) + int(k) // 2) * 86400.0 - offset, KST)
        out.append(DayVolume(f"{d:%Y-%m-%d %a}", "validation" if k % 2 else "training", int(rows[k]), int(clicks[k])))
    return out


def _rates(codes: np.ndarray, labels: list[str], clicked: np.ndarray, order: str = "impressions") -> list[RateRow]:
    n = np.bincount(codes, minlength=len(labels))
    c = np.bincount(codes, weights=clicked, minlength=len(labels))
    rows = [RateRow(labels[i], int(n[i]), int(c[i])) for i in range(len(labels)) if n[i] > 0]
    return sorted(rows, key=lambda r: -r.impressions) if order == "impressions" else rows


def click_rates(log, catalog, directory, max_position: int) -> dict[str, list[RateRow]]:
    """Click rates by position, banner category, role and school level (those of the
    attributes the staff directory holds), with their counts."""
    clicked = log.clicked.astype(np.float64)
    pos = np.minimum(log.position, max_position)
    out = {"position": _rates(pos - 1, [str(p) for p in range(1, max_position)] + [f"{max_position}+"], clicked, "label")}
    cats = [catalog.get(b).category if catalog.get(b) is not None else "unknown" for b in log.banner_ids]
    names = [c for c in STANDARD_CATEGORIES if c in cats] + sorted(set(cats) - set(STANDARD_CATEGORIES))
    code = np.array([names.index(c) for c in cats], dtype=np.int64)
    out["banner category"] = _rates(code[log.banner], names, clicked, "label")
    held = directory.attributes_held()
    for attr, title in RATE_ATTRIBUTES:
        if attr not in held:
            continue
        values = [directory.get(s).attributes.get(attr) or "unknown" for s in log.staff_ids]
        names = sorted(set(values))
        code = np.array([names.index(v) for v in values], dtype=np.int64) if values else np.zeros(0, dtype=np.int64)
        out[title] = _rates(code[log.staff], names, clicked)
    return out


def calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[CalibrationBin]:
    """Mean predicted against observed click rate in bins of equal size by prediction."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.searchsorted(edges[1:-1], p, side="right")
    out = []
    for b in range(len(edges) - 1):
        m = idx == b
        n, k = int(m.sum()), int(y[m].sum())
        if n:
            lo, hi = wilson(k, n)
            out.append(CalibrationBin(n, k, float(p[m].mean()), k / n, lo, hi))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a rate of k in n that stays inside [0, 1] for rare clicks."""
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def linear_effects(artifact, X, top: int = TOP_FEATURES) -> tuple[list[FeatureEffect], float]:
    """The columns with the largest |weight x standard deviation over the rows of X|, and the
    weight of log(position), which scoring holds fixed and so is left out of the ranking."""
    enc = artifact.encoder
    w = artifact.estimator.coef_.ravel()
    mean = np.asarray(X.mean(axis=0)).ravel()
    sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
    sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    effect = w * sd
    position = enc.blocks_["log position"][0]
    effect[position] = 0.0
    order = [int(i) for i in np.argsort(-np.abs(effect), kind="stable")[:top] if effect[i] != 0]
    return ([FeatureEffect(enc.column_name(i), float(effect[i]), float(w[i]), float(sd[i])) for i in order],
            float(w[position]))


def permutation_effects(artifact, X: np.ndarray, y: np.ndarray, seed: int, top: int = TOP_FEATURES) -> list[FeatureEffect]:
    """sklearn's permutation importance (growth of the log loss) of a tree model's columns;
    position is left out, as scoring holds it fixed."""
    from sklearn.inspection import permutation_importance

    if not 0 < y.sum() < len(y):
        return []
    with threadpool_limits(limits=1, user_api="openmp"):  # its many small predictions: threads would mostly wait
        r = permutation_importance(artifact.estimator, X, y, scoring="neg_log_loss", n_repeats=3, random_state=seed,
                                   n_jobs=1)
    names = artifact.encoder.dense_column_names()
    keep = [i for i in np.argsort(-r.importances_mean, kind="stable") if names[i] != "position"][:top]
    return [FeatureEffect(names[i], float(r.importances_mean[i]), sd=float(r.importances_std[i])) for i in keep]


def feature_effects(artifact, ctx, valid_rows: np.ndarray, rng: np.random.Generator):
    """(method, effects, rows used, weight of log(position) or None) of the saved model."""
    n = IMPORTANCE_ROWS if artifact.kind == "logistic" else PERMUTATION_ROWS
    rows = np.sort(rng.choice(valid_rows, min(n, len(valid_rows)), replace=False))
    X = ctx.features(artifact.encoder, rows, position=ctx.log.position[rows], dense=artifact.dense)
    if artifact.kind == "logistic":
        effects, position_weight = linear_effects(artifact, X)
        return "weight x spread", effects, len(rows), position_weight
    return "permutation", permutation_effects(artifact, X, ctx.y[rows], int(rng.integers(1 << 31))), len(rows), None
