"""Synthetic logged bandits with a known click model, for the offline-evaluation tests:
requests with random candidate sets, an epsilon-greedy logging policy (recommender's own
exploration code), clicks drawn from q(i, b, k), so every policy's true value is
sum(pi * q) / n exactly."""
from __future__ import annotations

import copy

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


def drop_positions(bandit: LoggedBandit, share: float, seed: int = 0) -> tuple[LoggedBandit, np.ndarray]:
    """The bandit with each logged position lost with probability ``share`` (as a sampled log
    or lost rows would), without the requests left with none; and which requests stayed."""
    rng = np.random.default_rng(seed)
    lost = bandit.filled & (rng.random(bandit.shown.shape) < share)
    b = copy.copy(bandit)
    b.shown = np.where(lost, -1, bandit.shown)
    b.propensity = np.where(lost, 0.0, bandit.propensity)
    b.click = np.where(lost, 0.0, bandit.click)
    stays = b.filled.any(axis=1)
    return b.subset(stays), stays


def split_requests(bandit: LoggedBandit) -> tuple[LoggedBandit, np.ndarray]:
    """The bandit as logged by a system that logs each position as its own request: one
    request per logged (request, position), with the candidates of its request; and the
    original request of each."""
    orig, pos = np.nonzero(bandit.filled)
    counts = bandit.n_candidates[orig]
    rows = np.concatenate([np.arange(bandit.offsets[i], bandit.offsets[i + 1]) for i in orig])
    m = len(orig)
    shown = np.full((m, bandit.slots), -1, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    shown[np.arange(m), pos] = offsets[:-1] + bandit.shown[orig, pos] - bandit.offsets[orig]
    one = np.zeros((m, bandit.slots))
    b = copy.copy(bandit)
    b.request_ids = [f"{bandit.request_ids[i]}#{k + 1}" for i, k in zip(orig, pos)]
    b.staff, b.ts, b.offsets = bandit.staff[orig], bandit.ts[orig], offsets
    b.cand_request, b.cand_banner = np.repeat(np.arange(m), counts), bandit.cand_banner[rows]
    b.shown = shown
    b.propensity = one.copy()
    b.click = one.copy()
    b.propensity[np.arange(m), pos] = bandit.propensity[orig, pos]
    b.click[np.arange(m), pos] = bandit.click[orig, pos]
    b.cache = {}
    return b, rows
