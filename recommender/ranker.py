"""The Ranker: a scorer (a trained model, or none) + the operators' rules + exploration.

It answers one request at a time for the service and many at a time for batch ranking.
Rules: pinned candidates come first (higher priority first); the rest follow the
scorer's order, ties broken by priority then catalog order. With epsilon > 0 a share
epsilon of the requests is explored (recommender.exploration's ``Exploration``): under
epsilon-greedy (the default) the unpinned part is a uniformly random order, under
Boltzmann one unpinned candidate, drawn by its score, moves to one of the first places;
every position's exact marginal propensity is given. With no scorer (a service before its first model) the
greedy order is the operators' (pinned, priority, catalog order), explored the same way,
so that the first days' logs can train and evaluate the first model; when the scorer
fails on a request, that answer is the operators' order as it is (propensity 1). Both
say ``model_version == "fallback"``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import numpy as np

from features.history import History

from .domain import Banner
from .boltzmann import boltzmann_order
from .exploration import BOLTZMANN, EPSILON_GREEDY, Exploration, explore_order, shown_propensities
from .ordering import greedy_order

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
    single_request: bool = False  # every row is the same request (one person, one time)

    @classmethod
    def for_request(cls, staff_id: str, attributes: Mapping[str, str], ts: float,
                    candidates: Sequence[Banner]) -> "CandidateRows":
        """One request's candidates (the service): scorers may treat the rows as one
        person at one time, and ``banner`` is the candidate sequence as given."""
        n = len(candidates)
        return cls(np.zeros(n, dtype=np.int64), [staff_id] * n, [attributes] * n, candidates,
                   np.full(n, float(ts)), single_request=True)

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
    """A ranking as parallel lists in shown order (position = index + 1)."""

    model_version: str
    explored: bool
    banner_ids: list[str]
    scores: list[float]
    propensities: list[float]
    # Boltzmann exploration's move: (greedy position, shown position), 0-based; None when
    # nothing was moved (not explored, or epsilon-greedy's shuffle)
    moved: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.banner_ids)

    @property
    def items(self) -> list[RankedItem]:
        return [RankedItem(b, p, s, q) for p, (b, s, q) in
                enumerate(zip(self.banner_ids, self.scores, self.propensities), 1)]


class CandidateSet:
    """A request's candidates with the operators' rule inputs (pinned, priority) as
    arrays, built once: the service keeps one per profile and candidate list."""

    def __init__(self, banners: Sequence[Banner]):
        self.banners = list(banners)
        n = len(self.banners)
        self.ids = [b.banner_id for b in self.banners]
        self.pinned = np.fromiter((b.pinned for b in self.banners), dtype=bool, count=n)
        self.priority = np.fromiter((b.priority for b in self.banners), dtype=np.float64, count=n)
        self.n_pinned = int(self.pinned.sum())
        self._greedy_propensities: dict[float, list[float]] = {}
        self._pinned_idx: list[int] = np.flatnonzero(self.pinned).tolist()
        self._free_idx: list[int] = np.flatnonzero(~self.pinned).tolist()
        self._neg_priority: list[float] = (-self.priority).tolist()

    def __len__(self) -> int:
        return len(self.banners)

    def greedy(self, scores: list[float]) -> list[int]:
        """``ordering.greedy_order`` of these candidates for one request, in Python: for a
        few dozen candidates it costs less than the dozen numpy calls, and gives the same
        order (the scores are finite: the Ranker checks them). The pinned block (by
        priority, then score, then index) comes first; the rest are sorted by score alone
        when no two scores are equal (nearly always), by C comparisons of floats, and
        otherwise by (score, priority, index) tuples."""
        neg_priority, free = self._neg_priority, self._free_idx
        pinned = sorted(self._pinned_idx, key=lambda i: (neg_priority[i], -scores[i], i))
        free_scores = [scores[i] for i in free] if pinned else scores  # none pinned: free is 0..n-1
        if len(set(free_scores)) == len(free_scores):  # distinct: the score alone decides
            order = sorted(range(len(free)), key=free_scores.__getitem__, reverse=True)
            return pinned + [free[j] for j in order] if pinned else order
        return pinned + sorted(free, key=lambda i: (-scores[i], neg_priority[i], i))

    def greedy_propensities(self, epsilon: float) -> list[float]:
        """``propensities`` of the greedy order itself (what most requests show): the
        same for every greedy order of these candidates, since greedy puts the pinned
        ones first, so it is computed once per epsilon."""
        hit = self._greedy_propensities.get(epsilon)
        if hit is None:
            order = list(range(len(self.banners)))  # any order with the pinned block first will do
            order.sort(key=lambda i: not self.pinned[i])
            hit = self._greedy_propensities[epsilon] = shown_propensities(order, order, self.pinned, epsilon)
        return list(hit)


def _as_set(candidates: "Sequence[Banner] | CandidateSet") -> CandidateSet:
    return candidates if isinstance(candidates, CandidateSet) else CandidateSet(candidates)


class Ranker:
    """Ranks candidates for one person. ``scorer`` may be None (operators' order)."""

    def __init__(self, scorer: Scorer | None = None, epsilon: float = 0.0, rng: np.random.Generator | None = None,
                 exploration: Exploration | None = None):
        """``exploration`` chooses the policy; without it, epsilon-greedy with ``epsilon``."""
        if exploration is None:
            exploration = Exploration(EPSILON_GREEDY, float(epsilon))
        elif epsilon and epsilon != exploration.epsilon:
            raise ValueError("give epsilon or exploration, not two different epsilons")
        self.scorer = scorer
        self.exploration = exploration
        self.epsilon = exploration.epsilon
        self.rng = rng if rng is not None else np.random.default_rng()

    def scores(self, staff_id: str, attributes: Mapping[str, str], ts: float, candidates: Sequence[Banner],
               history: History) -> tuple[np.ndarray | None, str]:
        """The scorer's scores and version; equal scores (the operators' order) without a
        scorer; None when the scorer fails on this request."""
        if self.scorer is None:  # no model yet: explore around the operators' order
            return np.zeros(len(candidates)), FALLBACK_VERSION
        if not candidates:  # nothing to rank: the model answers, with an empty list
            return np.zeros(0), self.scorer.version
        rows = CandidateRows.for_request(staff_id, attributes, ts, candidates)
        try:
            s = np.asarray(self.scorer.score(rows, history), dtype=np.float64)
            if s.shape != (len(candidates),) or not np.isfinite(s).all():
                raise ValueError(f"scorer returned {s.shape} values, some not finite")
            return s, self.scorer.version
        except Exception:  # the banner server must get an answer even when the model breaks
            log.exception("scorer %s failed; answering with the operators' order", getattr(self.scorer, "version", "?"))
            return None, FALLBACK_VERSION

    def rank(self, staff_id: str, attributes: Mapping[str, str], ts: float,
             candidates: "Sequence[Banner] | CandidateSet", history: History,
             boost: np.ndarray | None = None, explore_weight: np.ndarray | None = None) -> RankResult:
        """``boost``: added to each candidate's score for the greedy order (delivery goals'
        pacing, recommender.goals); the scores answered are the model's own.
        ``explore_weight``: Boltzmann exploration's positive weight per candidate on its
        chance to be drawn (say, more for banners with little evidence); the draw itself
        weighs the model's scores, not the boosted ones."""
        c = _as_set(candidates)
        scores, version = self.scores(staff_id, attributes, ts, c.banners, history)
        if scores is None:  # the model failed on this request: the operators' order, as it is
            order = greedy_order(np.zeros(len(c)) if boost is None else boost, c.pinned, c.priority).tolist()
            return RankResult(version, False, [c.ids[i] for i in order], [0.0] * len(order), [1.0] * len(order))
        sc = scores.tolist()
        if boost is None:
            greedy = c.greedy(sc)
        else:
            keyed = scores + boost
            greedy = c.greedy(keyed.tolist()) if np.isfinite(keyed).all() else \
                greedy_order(keyed, c.pinned, c.priority).tolist()
        x = self.exploration
        if x.policy == BOLTZMANN:
            shown, props, explored, move = boltzmann_order(greedy, c.n_pinned, sc, x.epsilon, x.temperature,
                                                           x.depth, self.rng, explore_weight)
            return RankResult(version, explored, [c.ids[i] for i in shown], [sc[i] for i in shown], props, move)
        explored = self.epsilon > 0 and self.rng.random() < self.epsilon
        if explored:
            shown = explore_order(greedy, c.n_pinned, self.rng)
            props = shown_propensities(shown, greedy, c.pinned, self.epsilon)
        else:
            shown, props = greedy, c.greedy_propensities(self.epsilon)
        return RankResult(version, explored, [c.ids[i] for i in shown], [sc[i] for i in shown], props)
