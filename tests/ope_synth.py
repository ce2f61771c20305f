"""Synthetic logged bandits with a known click model, for the offline-evaluation tests:
requests with random candidate sets, an epsilon-greedy logging policy (recommender's own
exploration code), clicks drawn from q(i, b, k), so every policy's true value is
sum(pi * q) / n exactly."""
from __future__ import annotations

import numpy as np

from features.history import History
from recommender.domain import Banner, Catalog
from recommender.exploration import epsilon_greedy, position_propensities
from training.ope.data import LoggedBandit

CATS = ("policy", "info", "event")


def synth_bandit(n: int, nb: int = 8, K: int = 3, eps: float = 0.3, seed: int = 0, pinned_first: bool = False,
                 exam=(1.0, 0.6, 0.35, 0.2)) -> tuple[LoggedBandit, np.ndarray, np.ndarray]:
    """A bandit, its true click probabilities q (N, K) and the logging policy's pi (N, K)."""
    rng = np.random.default_rng(seed)
    pinned = np.zeros(nb, dtype=bool)
    if pinned_first:
        pinned[0] = True
    catalog = Catalog(Banner(f"b{j}", CATS[j % len(CATS)], pinned=bool(pinned[j])) for j in range(nb))
    M = rng.random((n, nb)) < 0.7
    M[np.arange(n), rng.integers(0, nb, n)] = True
    keys = rng.random((n, nb)) + np.where(pinned, -10.0, 0.0)[None, :]
    shown_b, prop, _ = epsilon_greedy(M, keys, pinned, eps, K, rng)
    cand_request, cand_banner = np.nonzero(M)
    counts = M.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat_of = np.full(M.shape, -1)
    flat_of[cand_request, cand_banner] = np.arange(len(cand_banner))
    attract = rng.beta(2, 8, len(cand_banner))
    q = attract[:, None] * np.asarray(exam[:K])[None, :]
    valid = shown_b >= 0
    shown = np.where(valid, flat_of[np.arange(n)[:, None], np.maximum(shown_b, 0)], -1)
    qs = np.where(valid, q[np.maximum(shown, 0), np.arange(K)[None, :]], 0.0)
    click = ((rng.random((n, K)) < qs) & valid).astype(float)
    bandit = LoggedBandit(
        slots=K, catalog=catalog, request_ids=[f"r{i}" for i in range(n)], staff_ids=[f"s{i}" for i in range(n)],
        profiles=[{} for _ in range(n)], staff=np.arange(n, dtype=np.int64), ts=np.arange(n, dtype=float), offsets=offsets,
        cand_request=cand_request, cand_banner=cand_banner, shown=shown, propensity=np.where(valid, prop, 0.0),
        click=click, history=History.empty(), n_logged_requests=n)
    bandit.logging_scores = -keys[cand_request, cand_banner]  # the logging policy's greedy scores
    bandit.logging_epsilon = eps
    logging_pi = position_propensities(M, keys, pinned, eps, K)[cand_request, cand_banner, :]
    return bandit, q, logging_pi


def true_value(policy, q: np.ndarray, n: int) -> float:
    return float((policy.pi * q).sum() / n)
