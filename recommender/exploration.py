"""Exploration around the greedy order (recommender.ordering), shared by the simulator's
logging policy, the ranking service and offline evaluation, so that all log and evaluate
propensities computed the same way. ``Exploration`` names a policy and its parameters:
epsilon-greedy (here, the default) or Boltzmann (recommender.boltzmann).

Epsilon-greedy shows the greedy order with probability 1 - epsilon and a uniformly
random order of the unpinned candidates otherwise. So the marginal probability that an
unpinned banner sits at position k is (1 - eps) * [it is greedy's k-th] + eps / n_free, and a
pinned banner sits at its place with probability 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPSILON_GREEDY = "epsilon-greedy"
BOLTZMANN = "boltzmann"
POLICIES = (EPSILON_GREEDY, BOLTZMANN)


@dataclass(frozen=True)
class Exploration:
    """An exploration policy and its parameters.

    ``epsilon``: the share of requests explored (both policies). Epsilon-greedy shows the
    unpinned candidates of an explored request in a uniformly random order. Boltzmann
    moves one unpinned candidate, drawn by a softmax of the request's standardised scores
    over ``temperature`` (in units of the request's score spread: low = the best-scored
    ones, high = any), to one of the first ``depth`` unpinned positions.
    """

    policy: str = EPSILON_GREEDY
    epsilon: float = 0.0
    temperature: float = 1.0
    depth: int = 3

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"exploration must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        if not (isinstance(self.temperature, (int, float)) and 0 < self.temperature < math.inf):
            raise ValueError(f"temperature must be a number above 0, got {self.temperature!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be a whole number of at least 1, got {self.depth!r}")

    def describe(self) -> dict:
        """The policy and the parameters it uses (for /readyz and reports)."""
        if self.policy == BOLTZMANN:
            return {"exploration": self.policy, "epsilon": self.epsilon, "temperature": self.temperature,
                    "depth": self.depth}
        return {"exploration": self.policy, "epsilon": self.epsilon}


def epsilon_greedy(
    eligible: np.ndarray,
    keys: np.ndarray,
    pinned: np.ndarray,
    epsilon: float,
    slots: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample epsilon-greedy rankings for a batch of requests.

    eligible: (m, n) bool, candidates of each request; keys: (n,) or (m, n) sort keys
    (ascending = better, from greedy_keys); pinned: (n,) bool.
    Returns shown (m, slots) banner indices (-1 past the candidates), propensity (m, slots)
    of each shown banner at its position, and explored (m,) bool.
    """
    eligible = np.asarray(eligible, dtype=bool)
    m, n = eligible.shape
    keys = np.broadcast_to(np.asarray(keys, dtype=np.float64), (m, n))
    pinned = np.asarray(pinned, dtype=bool)
    greedy = np.argsort(np.where(eligible, keys, np.inf), axis=1, kind="stable")[:, :slots]
    rand = np.where(pinned[None, :], keys, rng.random((m, n)) - 0.5)
    uniform = np.argsort(np.where(eligible, rand, np.inf), axis=1, kind="stable")[:, :slots]
    explored = rng.random(m) < epsilon
    shown = np.where(explored[:, None], uniform, greedy)
    P = position_propensities(eligible, keys, pinned, epsilon, slots)
    k = shown.shape[1]
    prop = P[np.arange(m)[:, None], shown, np.arange(k)[None, :]]
    valid = np.arange(k)[None, :] < eligible.sum(axis=1)[:, None]
    return np.where(valid, shown, -1), np.where(valid, prop, 0.0), explored


def marginal_propensity(at_greedy, pinned, epsilon: float, n_free):
    """The probability that epsilon-greedy puts a banner at a position it can take: a
    pinned banner is always at its greedy place; an unpinned one is there with (1 - eps)
    if greedy puts it there, plus eps / n_free from the uniform order of the n_free
    unpinned candidates. The one formula behind the simulator's and the service's logged
    propensities (arrays broadcast)."""
    at_greedy = np.asarray(at_greedy, dtype=np.float64)
    return np.where(pinned, at_greedy, (1 - epsilon) * at_greedy + epsilon / np.asarray(n_free, dtype=np.float64))


def position_propensities(eligible: np.ndarray, keys: np.ndarray, pinned: np.ndarray, epsilon: float, slots: int) -> np.ndarray:
    """P[i, b, k]: probability that epsilon-greedy puts banner b at position k+1 in request i.

    Over the candidates of a request, each shown position sums to 1 (and so does each
    candidate over all positions when every candidate is shown).
    """
    eligible = np.asarray(eligible, dtype=bool)
    m, n = eligible.shape
    keys = np.broadcast_to(np.asarray(keys, dtype=np.float64), (m, n))
    pinned = np.asarray(pinned, dtype=bool)
    order = np.argsort(np.where(eligible, keys, np.inf), axis=1, kind="stable")
    k = min(slots, n)
    n_cand = eligible.sum(axis=1)
    n_pin = (eligible & pinned[None, :]).sum(axis=1)
    n_free = np.maximum(n_cand - n_pin, 1)
    pos_of = np.empty((m, n), dtype=np.int64)
    pos_of[np.arange(m)[:, None], order] = np.arange(n)[None, :]
    positions = np.arange(k)[None, None, :]
    at_greedy = (pos_of[:, :, None] == positions).astype(np.float64)
    free = eligible & ~pinned[None, :]
    free_pos = positions >= n_pin[:, None, None]  # positions after the pinned block
    P = marginal_propensity(at_greedy, ~free[:, :, None], epsilon, n_free[:, None, None])
    P = np.where(free[:, :, None], np.where(free_pos, P, 0.0), np.where(eligible[:, :, None], P, 0.0))
    P = np.where(positions < n_cand[:, None, None], P, 0.0)
    return P


def explore_order(greedy: list[int], n_pinned: int, rng: np.random.Generator) -> list[int]:
    """One explored ranking: the pinned block as greedy has it (greedy puts every pinned
    candidate first), then the other candidates in a uniformly random order."""
    free = greedy[n_pinned:]
    return greedy[:n_pinned] + [free[j] for j in rng.permutation(len(free)).tolist()]


def shown_propensities(shown: list[int], greedy: list[int], pinned: np.ndarray, epsilon: float) -> list[float]:
    """The marginal probability that epsilon-greedy puts each shown candidate (indices into
    ``pinned``) at its position, given the greedy order of the same candidates."""
    n_free = max(len(greedy) - int(np.count_nonzero(pinned)), 1)
    shown_a = np.asarray(shown, dtype=np.int64)
    at_greedy = shown_a == np.asarray(greedy[:len(shown)], dtype=np.int64)
    return marginal_propensity(at_greedy, pinned[shown_a], epsilon, n_free).tolist()
