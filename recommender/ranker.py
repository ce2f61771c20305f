"""The Ranker: a scorer (a trained model, or none) + the operators' rules + exploration.

It answers one request at a time for the service and many at a time for batch ranking.
Rules: pinned candidates come first (higher priority first); the rest follow the
scorer's order, ties broken by priority then catalog order. With no scorer, or when the
scorer fails, the answer is the operators' order (pinned, priority, catalog order) with
``model_version == "fallback"``. With epsilon > 0 the unpinned part is a uniformly random
order with probability epsilon, and every position's exact marginal propensity is given.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import numpy as np

from features.history import History

from .domain import Banner
from .exploration import greedy_keys, marginal_propensity

FALLBACK_VERSION = "fallback"
log = logging.getLogger(__name__)


@dataclass
class CandidateRows:
    """One row per (request, candidate banner): what a scorer needs."""

    request: np.ndarray  # request index per row
    staff_id: Sequence[str]
    attributes: Sequence[Mapping[str, str]]  # the person's profile per row
    banner: Sequence[Banner]
    ts: np.ndarray  # request time per row, epoch seconds UTC

    def __len__(self) -> int:
        return len(self.banner)


class Scorer(Protocol):
    """Anything that scores candidates: higher is better. ``version`` names the model."""

    version: str

    def score(self, rows: CandidateRows, history: History) -> np.ndarray: ...


@dataclass(slots=True)
class RankedItem:
    banner_id: str
    position: int
    score: float
    propensity: float


@dataclass
class RankResult:
    model_version: str
    explored: bool
    items: list[RankedItem]

    @property
    def banner_ids(self) -> list[str]:
        return [i.banner_id for i in self.items]


def _keys(candidates: Sequence[Banner], scores: np.ndarray) -> np.ndarray:
    pinned = np.fromiter((b.pinned for b in candidates), dtype=bool, count=len(candidates))
    priority = np.fromiter((b.priority for b in candidates), dtype=np.float64, count=len(candidates))
    return greedy_keys(scores, pinned, priority)


def operator_order(candidates: Sequence[Banner]) -> list[int]:
    """Indices of the candidates in the operators' order: pinned, then priority, then as given
    (the greedy order when every score is equal)."""
    return greedy_order(candidates, np.zeros(len(candidates)))


def greedy_order(candidates: Sequence[Banner], scores: np.ndarray) -> list[int]:
    """Pinned first (by priority), then by score descending; ties by priority, then as given
    (recommender.exploration.greedy_keys, the simulator's rule)."""
    return np.argsort(_keys(candidates, np.asarray(scores, dtype=np.float64)), kind="stable").tolist()


def explore_order(greedy: list[int], candidates: Sequence[Banner], rng: np.random.Generator) -> list[int]:
    n_pin = sum(1 for i in greedy if candidates[i].pinned)
    free = greedy[n_pin:]
    return greedy[:n_pin] + [free[j] for j in rng.permutation(len(free)).tolist()]


def propensities(shown: list[int], greedy: list[int], candidates: Sequence[Banner], epsilon: float) -> list[float]:
    """Marginal probability that epsilon-greedy puts each shown banner at its position."""
    n_pin = sum(1 for i in greedy if candidates[i].pinned)
    n_free = max(len(greedy) - n_pin, 1)
    at_greedy = np.array([g == i for g, i in zip(greedy, shown)], dtype=np.float64)
    pinned = np.array([candidates[i].pinned for i in shown], dtype=bool)
    return marginal_propensity(at_greedy, pinned, epsilon, n_free).tolist()


class Ranker:
    """Ranks candidates for one person. ``scorer`` may be None (operators' order)."""

    def __init__(self, scorer: Scorer | None = None, epsilon: float = 0.0, rng: np.random.Generator | None = None):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        self.scorer = scorer
        self.epsilon = float(epsilon)
        self.rng = rng if rng is not None else np.random.default_rng()

    def scores(self, staff_id: str, attributes: Mapping[str, str], ts: float, candidates: Sequence[Banner],
               history: History) -> tuple[np.ndarray | None, str]:
        if self.scorer is None or not candidates:
            return None, FALLBACK_VERSION
        rows = CandidateRows(np.zeros(len(candidates), dtype=np.int64), [staff_id] * len(candidates),
                             [attributes] * len(candidates), list(candidates), np.full(len(candidates), float(ts)))
        try:
            s = np.asarray(self.scorer.score(rows, history), dtype=np.float64)
            if s.shape != (len(candidates),) or not np.all(np.isfinite(s)):
                raise ValueError(f"scorer returned {s.shape} values, some not finite")
            return s, self.scorer.version
        except Exception:  # the banner server must get an answer even when the model breaks
            log.exception("scorer %s failed; answering with the operators' order", getattr(self.scorer, "version", "?"))
            return None, FALLBACK_VERSION

    def rank(self, staff_id: str, attributes: Mapping[str, str], ts: float, candidates: Sequence[Banner],
             history: History) -> RankResult:
        scores, version = self.scores(staff_id, attributes, ts, candidates, history)
        if scores is None:
            order = operator_order(candidates)
            return RankResult(version, False, [RankedItem(candidates[i].banner_id, p + 1, 0.0, 1.0)
                                               for p, i in enumerate(order)])
        greedy = greedy_order(candidates, scores)
        explored = self.epsilon > 0 and self.rng.random() < self.epsilon
        shown = explore_order(greedy, candidates, self.rng) if explored else greedy
        props = propensities(shown, greedy, candidates, self.epsilon)
        sc = scores.tolist()
        return RankResult(version, explored, [RankedItem(candidates[i].banner_id, p, sc[i], q)
                                              for p, (i, q) in enumerate(zip(shown, props), 1)])
