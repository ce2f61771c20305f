"""Counterfactual estimators of a target policy's value (expected clicks per request on the
first K positions, or any bounded reward per impression: training.objective) under the
item-position click model. ``c_ik`` below is the logged reward (LoggedBandit.reward).

Each estimator turns the logs into per-request contributions (``Contributions``: columns
of per-request numbers and the function of their means that gives the value). The
bootstrap (requests resampled with replacement, the same resamples for every estimator
and policy) and the paired difference of two policies are computed once, on
contributions, for every estimator.

With w_ik = pi(shown_ik, k) / p_ik, c_ik the click and q(i, b, k) a click model:
- IPS:    mean_i  sum_k w_ik c_ik
- SNIPS:  sum_k  mean_i(w_ik c_ik) * mean_i(m_ik) / mean_i(w_ik), m_ik = sum_b pi_i(b, k)
          the target's mass at position k (so E[w_ik] = m_ik): a ratio estimator per
          position, resampled as a ratio (numerator and denominator on the same resample).
- DM:     mean_i  sum_k sum_b pi_i(b, k) q(i, b, k); its interval also spans DR's (below)
- DR:     DM + mean_i sum_k w_ik (c_ik - q(i, shown_ik, k))
An optional ``cell`` (N, K) mask in [0, 1] restricts the value to some (candidate,
position) cells: one position, or the banners of one category.

Logs that hold only some positions of a request: every mean over i of a term at position
k above (IPS's and DR's weighted clicks, SNIPS's mass) is taken over the requests that
observed position k (LoggedBandit.observed), as a ratio of two column means resampled
together, so the value stays expected clicks per request. The direct method's term at k
too: it needs no logged row, but averaged over every request it would weigh a request by
the number of ids its positions were logged under, and the logging policy's rankings are
known only where logged. Where every request observed every position, a request's terms
are summed into one column, as for complete logs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .data import LoggedBandit
from .policies import TargetPolicy

ALPHA = 0.05


@dataclass
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass
class Contributions:
    """Per-request columns (n, m) and ``combine``: means (..., m) -> value (...).

    ``also_cover``: other functions of the same means whose bootstrap intervals the value's
    interval must span too. The direct method uses it: resampling requests cannot see the
    click model's error, and the one measure of that error in the logs is the
    importance-weighted residual mean_i sum_k w_ik (c_ik - q_ik), i.e. the doubly robust value."""

    columns: np.ndarray
    combine: Callable[[np.ndarray], np.ndarray]
    also_cover: tuple[Callable[[np.ndarray], np.ndarray], ...] = ()

    def value(self) -> float:
        return float(self.combine(self.columns.mean(axis=0)[None, :])[0])


def _sum_first(means: np.ndarray) -> np.ndarray:
    return means[..., 0]


def _shown(bandit: LoggedBandit, a: np.ndarray) -> np.ndarray:
    """Gather an (N, K) array at the shown candidate of each position: (n, K), 0 if none."""
    K = bandit.slots
    return np.where(bandit.filled, a[np.maximum(bandit.shown, 0), np.arange(K)[None, :]], 0.0)


def _cells(bandit: LoggedBandit, cell: np.ndarray | None) -> tuple[np.ndarray | float, np.ndarray | float]:
    if cell is None:
        return 1.0, 1.0
    return cell, _shown(bandit, cell)


def _per_request(bandit: LoggedBandit, per_row: np.ndarray) -> np.ndarray:
    return np.bincount(bandit.cand_request, weights=per_row, minlength=bandit.n)


def _per_position(bandit: LoggedBandit, per_row: np.ndarray) -> np.ndarray:
    """(n, K) per-request sums of an (N, K) array over each request's candidates."""
    return np.stack([_per_request(bandit, per_row[:, k]) for k in range(bandit.slots)], axis=1)


def _observed(bandit: LoggedBandit) -> np.ndarray | None:
    """The positions each request observed, or None when every request observed all of them."""
    observed = bandit.observed
    return None if observed.all() else observed


def _position_value(observed: np.ndarray | None, terms: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Columns and their combine for sum_k (terms[:, k] averaged over the requests that
    observed position k): with ``observed`` None (complete logs) one column, the sum over
    k; else the terms and the observed indicators, each position a ratio of their means
    (0 where no resampled request observed it)."""
    if observed is None:
        return terms.sum(axis=1)[:, None], _sum_first
    K = terms.shape[1]

    def combine(m: np.ndarray) -> np.ndarray:
        num, den = m[..., :K], m[..., K:]
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0).sum(axis=-1)

    return np.concatenate([terms * observed, observed], axis=1), combine


class Estimator:
    name = ""
    needs_model = False

    def contributions(self, bandit: LoggedBandit, policy: TargetPolicy, q: np.ndarray | None = None,
                      cell: np.ndarray | None = None) -> Contributions:
        raise NotImplementedError

    def estimate(self, bandit: LoggedBandit, policy: TargetPolicy, q: np.ndarray | None = None,
                 n_boot: int = 200, seed: int = 0, cell: np.ndarray | None = None) -> Estimate:
        """Point estimate and the 95% percentile bootstrap interval (resampled by request)."""
        c = self.contributions(bandit, policy, q, cell)
        reps = bootstrap([c], n_boot, seed)[0]
        return interval(c.value(), reps)


class IPS(Estimator):
    name = "ips"

    def contributions(self, bandit, policy, q=None, cell=None):
        _, cs = _cells(bandit, cell)
        w = policy.weights(bandit)
        return Contributions(*_position_value(_observed(bandit), w * bandit.reward * cs))


class SNIPS(Estimator):
    name = "snips"

    def contributions(self, bandit, policy, q=None, cell=None):
        K = bandit.slots
        _, cs = _cells(bandit, cell)
        w = policy.weights(bandit)
        mass = _per_position(bandit, policy.pi)
        observed = _observed(bandit)
        if observed is None:
            cols = np.concatenate([w * bandit.reward * cs, w, mass], axis=1)
        else:  # the target's mass averaged over the requests that observed each position
            cols = np.concatenate([w * bandit.reward * cs, w, mass * observed, observed], axis=1)

        def combine(m: np.ndarray) -> np.ndarray:
            num, den, ms = m[..., :K], m[..., K:2 * K], m[..., 2 * K:3 * K]
            with np.errstate(divide="ignore", invalid="ignore"):
                if observed is not None:
                    seen = m[..., 3 * K:]
                    ms = np.where(seen > 0, ms / np.where(seen > 0, seen, 1.0), 0.0)
                per_pos = np.where(den > 0, num * ms / np.where(den > 0, den, 1.0), 0.0)
            return per_pos.sum(axis=-1)

        return Contributions(cols, combine)


def _model_and_correction(bandit: LoggedBandit, policy: TargetPolicy, q: np.ndarray | None,
                          cell: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per request and position (n, K): the click model's value of the target's rankings
    (the direct method), and the importance-weighted residual of the logged clicks (DR's
    correction)."""
    if q is None:
        raise ValueError("the direct method and doubly robust need a click model's probabilities q")
    c, cs = _cells(bandit, cell)
    dm = _per_position(bandit, policy.pi * q * c)
    corr = policy.weights(bandit) * (bandit.reward - _shown(bandit, q)) * cs
    return dm, corr


class DirectMethod(Estimator):
    """The click model's average over the target's rankings. Its interval spans its own
    request-sampling interval and the doubly robust interval: a model fitted once cannot
    report its own bias (refitting it per resample is too slow, and blind to a wrong model
    form), and DR - DM estimates that bias without assuming the model is right."""

    name = "dm"
    needs_model = True

    def contributions(self, bandit, policy, q=None, cell=None):
        dm, corr = _model_and_correction(bandit, policy, q, cell)
        observed = _observed(bandit)
        dm_cols, dm_value = _position_value(observed, dm)
        corr_cols, corr_value = _position_value(observed, corr)
        m = dm_cols.shape[1]
        return Contributions(np.concatenate([dm_cols, corr_cols], axis=1), lambda x: dm_value(x[..., :m]),
                             (lambda x: dm_value(x[..., :m]) + corr_value(x[..., m:]),))


class DoublyRobust(Estimator):
    name = "dr"
    needs_model = True

    def contributions(self, bandit, policy, q=None, cell=None):
        dm, corr = _model_and_correction(bandit, policy, q, cell)
        return Contributions(*_position_value(_observed(bandit), dm + corr))


def dr_breakdown(bandit: LoggedBandit, policy: TargetPolicy, q: np.ndarray, categories: np.ndarray,
                 n_categories: int) -> tuple[list[Contributions], list[Contributions]]:
    """Doubly robust contributions per position and per category of the banner (``categories``
    (N,) index per candidate row): the same numbers as DoublyRobust with the matching cell
    mask, computed in one pass."""
    K, n = bandit.slots, bandit.n
    observed = _observed(bandit)
    A = policy.pi * q
    corr = policy.weights(bandit) * (bandit.reward - _shown(bandit, q))  # (n, K)
    dr = _per_position(bandit, A) + corr
    by_pos = [Contributions(*_position_value(None if observed is None else observed[:, k:k + 1], dr[:, k:k + 1]))
              for k in range(K)]
    group = bandit.cand_request * n_categories + categories
    dm_cat = np.stack([np.bincount(group, weights=A[:, k], minlength=n * n_categories).reshape(n, n_categories)
                       for k in range(K)], axis=2)  # (n, n_categories, K)
    shown_cat = np.where(bandit.filled, categories[np.maximum(bandit.shown, 0)], -1)
    by_cat = [Contributions(*_position_value(observed, dm_cat[:, c, :] + corr * (shown_cat == c)))
              for c in range(n_categories)]
    return by_pos, by_cat


ESTIMATORS: tuple[Estimator, ...] = (IPS(), SNIPS(), DirectMethod(), DoublyRobust())


def resample_counts(n: int, n_boot: int, seed: int, block: int = 25):
    """Yield blocks (b, n) of multinomial resample counts (each row sums to n)."""
    rng = np.random.default_rng(seed)
    for lo in range(0, n_boot, block):
        b = min(block, n_boot - lo)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.zeros((b, n))
        for j in range(b):
            counts[j] = np.bincount(idx[j], minlength=n)
        yield counts


def bootstrap(contribs: Sequence[Contributions], n_boot: int = 200, seed: int = 0,
              clusters: np.ndarray | None = None) -> list[np.ndarray]:
    """Bootstrap replicates (n_boot,) of every contribution's value, all on the same
    resamples (so differences between them are paired).

    Requests are resampled with replacement; with ``clusters`` (n,) (e.g. the staff member
    of each request) whole clusters are resampled with all their requests, which keeps the
    correlation between one person's requests in the interval."""
    if not contribs:
        return []
    n = contribs[0].columns.shape[0]
    if any(c.columns.shape[0] != n for c in contribs):
        raise ValueError("contributions over different requests cannot be bootstrapped together")
    C = np.concatenate([c.columns for c in contribs], axis=1)
    if clusters is None:
        g, G = np.arange(n), n
        ST = np.ascontiguousarray(C.T)  # (m, n)
        sizes = np.ones(n)
    else:
        _, g = np.unique(np.asarray(clusters), return_inverse=True)
        g = g.reshape(-1)
        G = int(g.max()) + 1 if n else 0
        ST = np.stack([np.bincount(g, weights=C[:, j], minlength=G) for j in range(C.shape[1])])  # (m, G) sums
        sizes = np.bincount(g, minlength=G).astype(np.float64)
    means = np.empty((n_boot, C.shape[1]))
    lo = 0
    for counts in resample_counts(G, n_boot, seed):
        # (m, G) @ (G, b): the product counts @ sums in the layout BLAS is fast at here
        # (counts @ C took ~100x longer with this machine's OpenBLAS)
        tot = (ST @ counts.T).T
        means[lo:lo + len(counts)] = tot / (sizes @ counts.T)[:, None]
        lo += len(counts)
    out, j = [], 0
    for c in contribs:
        m = c.columns.shape[1]
        block = means[:, j:j + m]
        reps = [np.asarray(f(block), dtype=np.float64) for f in (c.combine, *c.also_cover)]
        out.append(np.stack(reps, axis=1) if c.also_cover else reps[0])
        j += m
    return out


def interval(value: float, replicates: np.ndarray, alpha: float = ALPHA) -> Estimate:
    """Percentile interval of ``replicates`` (n_boot,); with (n_boot, m) replicates (a value
    and what its interval must also cover), the span of the m percentile intervals."""
    if len(replicates) == 0:
        return Estimate(float(value), float("nan"), float("nan"))
    lo, hi = np.quantile(np.asarray(replicates).reshape(len(replicates), -1), [alpha / 2, 1 - alpha / 2], axis=0)
    return Estimate(float(value), float(lo.min()), float(hi.max()))


def paired_difference(a: Contributions, b: Contributions, n_boot: int = 200, seed: int = 0) -> Estimate:
    """value(a) - value(b) with its interval, on the same resampled requests."""
    ra, rb = bootstrap([a, b], n_boot, seed)
    return interval(a.value() - b.value(), ra - rb)
