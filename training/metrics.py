"""Validation metrics on logged data: log loss, AUC, NDCG@K and clicks@K of a ranking."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Log loss and AUC of probabilities ``p`` against labels ``y`` in [0, 1]: clicks, or an
    objective's soft labels (training.objective), whose log loss is the same cross-entropy
    and whose AUC tells the rows with a reward from those without."""
    y = np.asarray(y)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if np.all((y == 0) | (y == 1)):
        out = {"log_loss": float(log_loss(y, p, labels=[0, 1]))}
    else:
        out = {"log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))}
    hit = np.asarray(y > 0, dtype=np.int8)
    out["auc"] = float(roc_auc_score(hit, p)) if 0 < hit.sum() < len(hit) else float("nan")
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


def observed_positions(logged: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
    """(n, K) bool: where a request's term at a position is known, for logs that may hold
    only some positions of a request (sampled logs, a lost row, one position per request
    id). Position k is known where it was logged, and where it cannot exist (fewer than k
    candidates: its term is 0) if the request's last existing position, min(K,
    candidates), was logged. So a short request counts at k as often as its last position
    was kept, as a long request counts as often as its position k was: counting it
    wherever any of its rows was kept would weigh short requests more at the last
    positions than complete logs do."""
    n, K = logged.shape
    n_candidates = np.asarray(n_candidates)
    last = np.minimum(K, n_candidates) - 1
    last_logged = (last >= 0) & logged[np.arange(n), np.maximum(last, 0)]
    absent = np.arange(K)[None, :] >= n_candidates[:, None]
    return logged | (absent & last_logged[:, None])


def ips_clicks_at_k(match: np.ndarray, propensity: np.ndarray, clicked: np.ndarray, request: np.ndarray,
                    position: np.ndarray, n_candidates: np.ndarray, k: int = 3) -> float:
    """Item-position IPS estimate of clicks per request of a deterministic ranking over its
    first k positions: per position, click / propensity summed over the logged impressions
    where the ranking puts the same banner at that position, over the number of requests
    that observed the position (``observed_positions``); summed over the positions. On
    complete logs, the sum over impressions divided by the number of requests.
    ``request`` (0..n-1) and ``position`` (1..k) place each impression; ``n_candidates``
    (n,) counts each request's candidates."""
    terms = ips_click_terms(match, propensity, clicked, request, position, n_candidates, k)
    return float(terms.mean()) if len(terms) else 0.0


def ips_click_terms(match: np.ndarray, propensity: np.ndarray, clicked: np.ndarray, request: np.ndarray,
                    position: np.ndarray, n_candidates: np.ndarray, k: int = 3) -> np.ndarray:
    """Each request's term of ``ips_clicks_at_k`` (their mean is the estimate): what a
    paired comparison of two rankings on the same requests needs."""
    n = len(n_candidates)
    logged = np.zeros((n, k), dtype=bool)
    terms = np.zeros((n, k))
    logged[request, position - 1] = True
    terms[request, position - 1] = np.where(match, clicked / propensity, 0.0)
    seen = observed_positions(logged, n_candidates).sum(axis=0)
    return (terms * np.where(seen > 0, n / np.maximum(seen, 1), 0.0)[None, :]).sum(axis=1)


def clearly_better(challenger: np.ndarray, incumbent: np.ndarray, z: float = 2.0) -> bool:
    """Whether the challenger's per-request terms beat the incumbent's on the same requests
    by more than ``z`` standard errors of their mean difference."""
    d = np.asarray(challenger, dtype=np.float64) - np.asarray(incumbent, dtype=np.float64)
    if len(d) < 2:
        return False
    return bool(d.mean() > z * d.std(ddof=1) / np.sqrt(len(d)))
