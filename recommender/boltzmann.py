"""Boltzmann exploration: one plausible banner tried near the top, with exact propensities.

With probability epsilon a request is explored. An explored ranking is the greedy order
with ONE unpinned candidate moved: the candidate j is drawn with probability

    q_j = w_j * exp(z_j / temperature) / sum over the unpinned candidates

where z is the request's unpinned scores standardised (minus their mean, over their
standard deviation; all 0 when the scores are equal), so ``temperature`` is in units of
the request's score spread whatever the model's scale, and w is an optional weight per
candidate from the caller (say, more for banners with little evidence; 1 by default).
It is put at an unpinned position p drawn uniformly from the first ``depth`` unpinned
positions; the other candidates keep their greedy relative order, so the ones between
its greedy place and p shift by one place. Pinned candidates never move.

Why this design: the exploration budget goes to the places that get the clicks and to
the candidates the model thinks could win there (a uniform shuffle mostly shows
banners nobody clicks), and every marginal P(banner b at position k) is exact and
cheap for the full ranking. With f the unpinned candidates in greedy order, f_i at
unpinned greedy index i, Q<(i) and Q>(i) the q mass before and after it, d =
min(depth, n_unpinned) and r = 1/d the chance of each target position:

    P_explored(f_i at k) = q_i r [k < d]
                         + [k = i]     (Q<(i) r #{p < i} + Q>(i) r #{p > i})
                         + [k = i + 1] Q>(i) r #{p <= i}
                         + [k = i - 1] Q<(i) r #{p >= i}

(each #{...} counts the target positions p < d that satisfy it), and
P(f_i at k) = (1 - eps) [k = i] + eps P_explored(f_i at k). A candidate can only be at
its greedy place, one place off it, or moved into the first d: O(n depth) non-zero
marginals, O(1) each from prefix sums of q. Plackett-Luce sampling over every position
would spread exploration the same way but has no tractable exact marginals.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate
from typing import Sequence

import numpy as np


def choice_probabilities(scores: np.ndarray, temperature: float, weight: np.ndarray | None = None,
                         mask: np.ndarray | None = None) -> np.ndarray:
    """q over the last axis: softmax of the standardised scores over ``temperature``,
    times ``weight``, among the ``mask`` entries (all when None; the others get 0)."""
    s = np.asarray(scores, dtype=np.float64)
    if mask is None:
        mean = s.mean(axis=-1, keepdims=True)
        z = s - mean
        sd = np.sqrt((z * z).mean(axis=-1, keepdims=True))
    else:
        s = np.where(mask, s, 0.0)
        count = np.maximum(mask.sum(axis=-1, keepdims=True), 1)
        mean = s.sum(axis=-1, keepdims=True) / count
        z = np.where(mask, s - mean, 0.0)
        sd = np.sqrt((z * z).sum(axis=-1, keepdims=True) / count)
    spread = sd > 1e-12 * np.abs(mean)  # equal scores: rounding in the mean is no spread
    logit = np.where(spread, z / np.where(spread, sd, 1.0), 0.0)
    logit = logit / temperature
    if mask is not None:
        logit = np.where(mask, logit, -np.inf)
    top = logit.max(axis=-1, keepdims=True)
    w = np.exp(logit - np.where(np.isfinite(top), top, 0.0))
    if weight is not None:
        w = w * weight
    if mask is not None:
        w = np.where(mask, w, 0.0)
    total = w.sum(axis=-1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


ArrayLike = np.ndarray | int | float


def move_marginal(i: ArrayLike, k: ArrayLike, q_i: ArrayLike, q_before: ArrayLike, q_after: ArrayLike,
                  n_free: ArrayLike, depth: int) -> np.ndarray:
    """P_explored(f_i at unpinned position k) of the module docstring (arrays broadcast):
    ``q_i`` the candidate's draw probability, ``q_before``/``q_after`` the q mass of the
    unpinned candidates before/after it in the greedy order, ``n_free`` the number of
    unpinned candidates. 0 for k outside [0, n_free)."""
    i = np.asarray(i)
    k = np.asarray(k)
    d = np.maximum(np.minimum(depth, n_free), 1).astype(np.float64)
    below_i = np.minimum(i, d)  # target positions p < i
    upto_i = np.minimum(i + 1, d)  # p <= i
    out = q_i * (k < d) + (k == i) * (q_before * below_i + q_after * (d - upto_i)) \
        + (k == i + 1) * q_after * upto_i + (k == i - 1) * q_before * (d - below_i)
    return np.where((k >= 0) & (k < n_free), out / d, 0.0)


def _prefix(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The q mass before and after each entry along the last axis."""
    cum = np.cumsum(q, axis=-1)
    return cum - q, np.maximum(cum[..., -1:] - cum, 0.0)


def _draw(scores: list[float], temperature: float, weight: list[float] | None) -> list[float]:
    """``choice_probabilities`` for one request in plain Python: for a few dozen
    candidates it costs a fraction of the numpy calls."""
    m = len(scores)
    mean = sum(scores) / m
    z = [x - mean for x in scores]
    sd = math.sqrt(sum([x * x for x in z]) / m)
    if sd > 1e-12 * abs(mean):
        scale = 1.0 / (sd * temperature)
        top = max(z) * scale
        exp = math.exp
        w = [exp(x * scale - top) for x in z]
    else:
        w = [1.0] * m
    if weight is not None:
        if not all(0 < x < math.inf for x in weight):
            raise ValueError("exploration weights must be finite and above 0")
        w = [a * b for a, b in zip(w, weight)]
    total = sum(w)
    return [x / total for x in w]


def boltzmann_order(greedy: list[int], n_pinned: int, scores: Sequence[float], epsilon: float, temperature: float,
                    depth: int, rng: np.random.Generator, weight: Sequence[float] | None = None
                    ) -> tuple[list[int], list[float], bool, tuple[int, int] | None]:
    """One request: the shown order (the full ranking), each shown candidate's exact
    marginal propensity at its position, whether the request was explored, and the move
    (0-based greedy position, shown position) of the explored candidate (None if not
    explored or nothing can move). ``greedy`` lists candidate indices with the pinned
    block (``n_pinned`` long) first; ``scores`` and ``weight`` are per candidate index.
    The formula of ``move_marginal``, in plain Python for speed."""
    explored = epsilon > 0 and rng.random() < epsilon
    free = greedy[n_pinned:]
    m = len(free)
    if m == 0:
        return list(greedy), [1.0] * len(greedy), explored, None
    q = _draw([float(scores[b]) for b in free], temperature, None if weight is None else [float(weight[b]) for b in free])
    cum = list(accumulate(q, initial=0.0))  # cum[i]: the q mass before free index i
    total = cum[m]
    d = min(depth, m)
    if explored:
        g = min(bisect_right(cum, rng.random() * total, 1) - 1, m - 1)
        p = min(int(rng.random() * d), d - 1)
        src = list(range(m))
        src.insert(p, src.pop(g))
        shown = greedy[:n_pinned] + [free[i] for i in src]
        move = (n_pinned + g, n_pinned + p)
    else:
        src, shown, move = range(m), list(greedy), None
    stay, eps_d = 1.0 - epsilon, epsilon / d

    def marginal(i: int, k: int) -> float:  # move_marginal's formula, times epsilon, plus greedy's share
        q_before, q_after = cum[i], max(total - cum[i + 1], 0.0)
        below, upto = min(i, d), min(i + 1, d)
        v = q[i] if k < d else 0.0
        if k == i:
            return stay + eps_d * (v + q_before * below + q_after * (d - upto))
        if k == i + 1:
            return eps_d * (v + q_after * upto)
        if k == i - 1:
            return eps_d * (v + q_before * (d - below))
        return eps_d * v

    # past the first d, a candidate leaves its greedy place only when it or one below it
    # is drawn: it stays with 1 - eps (1 - the q mass before it)
    props = [1.0] * n_pinned + [marginal(k, k) for k in range(d)] + [stay + epsilon * c for c in cum[d:m]]
    if move is not None:  # only the candidates from the drawn one's place to its new place differ from greedy
        g, p = move[0] - n_pinned, move[1] - n_pinned
        for k in range(min(g, p), max(g, p) + 1):
            props[n_pinned + k] = marginal(src[k], k)
    return shown, props, explored, move


def boltzmann_marginals(greedy: list[int], n_pinned: int, scores: np.ndarray, epsilon: float, temperature: float,
                        depth: int, weight: np.ndarray | None = None) -> np.ndarray:
    """P[b, k]: the probability that candidate b is at position k (0-based) of the full
    ranking, for every candidate and position of one request (rows and columns sum to 1)."""
    n = len(greedy)
    P = np.zeros((n, n))
    for k in range(n_pinned):
        P[greedy[k], k] = 1.0
    free = greedy[n_pinned:]
    m = len(free)
    if m == 0:
        return P
    q = choice_probabilities(np.asarray(scores, dtype=np.float64)[free], temperature,
                             None if weight is None else np.asarray(weight, dtype=np.float64)[free])
    before, after = _prefix(q)
    i, k = np.arange(m)[:, None], np.arange(m)[None, :]
    P[np.asarray(free)[:, None], n_pinned + k] = (1.0 - epsilon) * (i == k) + epsilon * move_marginal(
        i, k, q[:, None], before[:, None], after[:, None], m, depth)
    return P


def boltzmann_greedy(eligible: np.ndarray, keys: np.ndarray, scores: np.ndarray, pinned: np.ndarray, epsilon: float,
                     slots: int, rng: np.random.Generator, temperature: float = 1.0, depth: int = 3,
                     weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample Boltzmann-explored rankings for a batch of requests, as
    ``exploration.epsilon_greedy`` does for epsilon-greedy.

    eligible: (m, n) bool; keys: (n,) or (m, n) sort keys of the greedy order (ascending =
    better, from ordering.greedy_keys); scores: (n,) or (m, n), higher = better, what the
    draw of the explored candidate weighs (the model's scores); pinned: (n,) bool;
    weight: optional (n,) or (m, n) positive draw weights.
    Returns shown (m, slots) banner indices (-1 past the candidates), propensity (m, slots)
    of each shown banner at its position, and explored (m,) bool.
    """
    eligible = np.asarray(eligible, dtype=bool)
    m, n = eligible.shape
    keys = np.broadcast_to(np.asarray(keys, dtype=np.float64), (m, n))
    scores = np.broadcast_to(np.asarray(scores, dtype=np.float64), (m, n))
    pinned = np.asarray(pinned, dtype=bool)
    order = np.argsort(np.where(eligible, keys, np.inf), axis=1, kind="stable")
    take = lambda a: np.take_along_axis(np.broadcast_to(a, (m, n)), order, axis=1)  # noqa: E731
    free_o = take(eligible & ~pinned[None, :])
    w = None if weight is None else take(np.asarray(weight, dtype=np.float64))
    q = choice_probabilities(take(scores), temperature, w, free_o)
    before, after = _prefix(q)
    n_cand = eligible.sum(axis=1)
    n_pin = (eligible & pinned[None, :]).sum(axis=1)
    n_free = n_cand - n_pin
    rows = np.arange(m)
    explored = rng.random(m) < epsilon
    u = rng.random(m) * (before[:, -1] + q[:, -1])
    tg = np.minimum((before + q <= u[:, None]).sum(axis=1), n - 1)  # the drawn candidate's greedy position
    tg = np.where(n_free > 0, np.clip(tg, n_pin, np.maximum(n_cand - 1, 0)), n_pin)
    tp = n_pin + np.floor(rng.random(m) * np.maximum(np.minimum(depth, n_free), 1)).astype(np.int64)
    tg = np.where(explored, tg, tp)  # not explored: nothing moves
    t = np.arange(min(slots, n))[None, :]
    tg_, tp_ = tg[:, None], tp[:, None]
    src = np.where((tp_ < tg_) & (t > tp_) & (t <= tg_), t - 1, t)
    src = np.where((tp_ > tg_) & (t >= tg_) & (t < tp_), t + 1, src)
    src = np.where(t == tp_, tg_, src)
    shown = order[rows[:, None], src]
    i, k = src - n_pin[:, None], t - n_pin[:, None]
    prop = (1.0 - epsilon) * (i == k) + epsilon * move_marginal(
        i, k, q[rows[:, None], src], before[rows[:, None], src], after[rows[:, None], src], n_free[:, None], depth)
    prop = np.where(t < n_pin[:, None], 1.0, prop)
    valid = t < n_cand[:, None]
    return np.where(valid, shown, -1), np.where(valid, prop, 0.0), explored
