"""Validation metrics on logged data: log loss, AUC, NDCG@K and clicks@K of a ranking."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y)
    out = {"log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))}
    out["auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return out


def ndcg_at_k(request: np.ndarray, score: np.ndarray, clicked: np.ndarray, k: int = 3) -> float:
    """Mean NDCG@k over requests with at least one click, re-ranking each request's shown
    banners by ``score`` against their clicks. Ties are broken at random, not by the logged
    order. Logged clicks carry position bias, so this favours orders close to the logging
    policy's; clicks@k (IPS) does not."""
    tiebreak = np.random.default_rng(0).random(len(score))
    order = np.lexsort((tiebreak, -score, request))
    r, c = request[order], clicked[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    rank = np.arange(len(r)) - np.repeat(starts, np.diff(np.r_[starts, len(r)]))
    gain = np.where(rank < k, c / np.log2(rank + 2), 0.0)
    dcg = np.bincount(r, weights=gain)
    # ideal: clicks first
    ideal_order = np.lexsort((-c, r))
    c2 = c[ideal_order]
    igain = np.where(rank < k, c2 / np.log2(rank + 2), 0.0)
    idcg = np.bincount(r, weights=igain)
    has = idcg > 0
    return float((dcg[has] / idcg[has]).mean()) if has.any() else float("nan")


def ips_clicks_at_k(match: np.ndarray, propensity: np.ndarray, clicked: np.ndarray, request: np.ndarray, n_requests: int) -> float:
    """Item-position IPS estimate of clicks per request of a deterministic ranking:
    sum over logged impressions where the ranking puts the same banner at the same
    position of click / propensity, divided by the number of requests."""
    w = np.where(match, 1.0 / propensity, 0.0)
    return float((w * clicked).sum() / max(n_requests, 1))
