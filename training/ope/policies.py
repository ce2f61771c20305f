"""Target policies: for each logged request, the probability of each candidate at each
position, as a flat (n_candidates_total, K) array aligned with LoggedBandit's rows.

Builders:
- ``ranking_policy``: the Ranker's greedy order from scores (pinned first by priority,
  then score descending, ties by priority then catalog order, as recommender/ranker.py),
  optionally explored exactly as served: epsilon-greedy, or Boltzmann with an
  ``Exploration`` (recommender.exploration and recommender.boltzmann's propensities).
- ``uniform_policy``: pinned first (the operators' rule), the rest in uniformly random order.
- ``popularity_policy``: greedy by smoothed click rate from the history strictly before
  each request.
- ``logged_policy``: the logging policy itself, from its logged propensities (on-policy).
- ``model_policy``: a model artifact ranking the candidates by its scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.definition import popularity
from recommender.boltzmann import move_marginal
from recommender.exploration import BOLTZMANN, EPSILON_GREEDY, Exploration, marginal_propensity
from recommender.ordering import greedy_places
from training.artifact import ModelArtifact

from .data import LoggedBandit
from .reward import bandit_logits


@dataclass
class TargetPolicy:
    """``pi[j, k]``: probability that the policy puts candidate row j at position k+1.

    ``pi_shown[i, k]`` is pi of the logged banner at position k+1 of request i (what the
    importance weights use); it defaults to a gather of ``pi``. ``usable`` marks the
    requests the policy can rank; the others are excluded (and counted) by the evaluation.
    """

    name: str
    pi: np.ndarray
    pi_shown: np.ndarray | None = None
    usable: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def shown_probability(self, bandit: LoggedBandit) -> np.ndarray:
        if self.pi_shown is not None:
            return self.pi_shown
        K = bandit.slots
        filled = bandit.filled
        out = self.pi[np.maximum(bandit.shown, 0), np.arange(K)[None, :]]
        return np.where(filled, out, 0.0)

    def weights(self, bandit: LoggedBandit) -> np.ndarray:
        """(n, K) importance weights pi(shown_k, k) / p_k (0 where nothing was shown)."""
        p = bandit.propensity
        return np.where(bandit.filled, self.shown_probability(bandit) / np.where(p > 0, p, 1.0), 0.0)

    def restrict(self, bandit_rows: np.ndarray, requests: np.ndarray) -> "TargetPolicy":
        return TargetPolicy(self.name, self.pi[bandit_rows],
                            None if self.pi_shown is None else self.pi_shown[requests],
                            None if self.usable is None else self.usable[requests], list(self.notes))


def greedy_place(bandit: LoggedBandit, scores: np.ndarray) -> np.ndarray:
    """0-based place of each candidate row in its request's greedy order
    (recommender.ordering: the rule the Ranker serves)."""
    banners = bandit.catalog.banners
    pinned = np.array([b.pinned for b in banners], dtype=bool)[bandit.cand_banner]
    priority = np.array([b.priority for b in banners], dtype=np.float64)[bandit.cand_banner]
    if bandit.boost is not None:  # down-weighted completions, as the service adds them before its greedy order
        scores = scores + bandit.boost
    if bandit.capped is not None:  # capped rows last: the others keep the places they have without them
        pinned = pinned & ~bandit.capped
        scores = np.where(bandit.capped, -np.inf, scores)
    return greedy_places(bandit.cand_request, scores, pinned, priority, bandit.cand_banner)


def ranking_policy(bandit: LoggedBandit, scores: np.ndarray, epsilon: float = 0.0, name: str = "ranking",
                   exploration: Exploration | None = None, explore_weight: np.ndarray | None = None) -> TargetPolicy:
    """Greedy ranking by ``scores`` (higher first) under the operators' rules, explored
    exactly as served: epsilon-greedy with ``epsilon``, or the policy ``exploration``
    names (Boltzmann draws by these scores, times ``explore_weight`` per candidate row
    when given). Requests with a non-finite score are not usable."""
    if exploration is None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        exploration = Exploration(EPSILON_GREEDY, float(epsilon))
    elif epsilon and epsilon != exploration.epsilon:
        raise ValueError("give epsilon or exploration, not two different epsilons")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != bandit.cand_banner.shape:
        raise ValueError(f"expected {bandit.cand_banner.shape[0]} scores, got {scores.shape}")
    finite = np.isfinite(scores)
    usable = np.bincount(bandit.cand_request[~finite], minlength=bandit.n) == 0
    scores = np.where(finite, scores, 0.0)
    rank = greedy_place(bandit, scores)
    if exploration.policy == BOLTZMANN:
        pi = _boltzmann_pi(bandit, rank, scores, exploration, explore_weight)
    else:
        pi = _epsilon_greedy_pi(bandit, rank, exploration.epsilon)
    notes = []
    if not usable.all():
        notes.append(f"{int((~usable).sum()):,} requests have candidates the policy cannot score")
    return TargetPolicy(name, pi, usable=usable, notes=notes)


def _policy_rows(bandit: LoggedBandit) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate row: pinned (and a candidate of the policy), allowed (not capped);
    per request: the policy's candidates and pinned candidates."""
    pinned_b = np.array([b.pinned for b in bandit.catalog.banners], dtype=bool)
    pinned = pinned_b[bandit.cand_banner]
    n_cand = bandit.n_candidates
    allowed = np.ones(len(pinned), dtype=bool) if bandit.capped is None else ~bandit.capped
    if bandit.capped is not None:  # a capped row is not a candidate of the policy
        pinned = pinned & allowed
        n_cand = np.bincount(bandit.cand_request, weights=allowed, minlength=bandit.n).astype(np.int64)
    n_pin = np.bincount(bandit.cand_request, weights=pinned, minlength=bandit.n).astype(np.int64)
    return pinned, allowed, n_cand, n_pin


def _boltzmann_pi(bandit: LoggedBandit, rank: np.ndarray, scores: np.ndarray, x: Exploration,
                  weight: np.ndarray | None) -> np.ndarray:
    """pi (N, K) of Boltzmann exploration around the greedy places ``rank``, on the flat
    candidate rows: the draw probabilities of recommender.boltzmann.choice_probabilities
    per request, then its move_marginal past the pinned block."""
    K = bandit.slots
    r = bandit.cand_request
    pinned, allowed, n_cand, n_pin = _policy_rows(bandit)
    free = allowed & ~pinned
    n_free = n_cand - n_pin
    count = np.maximum(n_free, 1)
    s = np.where(free, scores, 0.0)
    mean = np.bincount(r, weights=s, minlength=bandit.n) / count
    z = np.where(free, s - mean[r], 0.0)
    sd = np.sqrt(np.bincount(r, weights=z * z, minlength=bandit.n) / count)
    spread = sd > 1e-12 * np.abs(mean)
    logit = np.where(spread[r], z / np.where(spread, sd, 1.0)[r], 0.0) / x.temperature
    top = np.full(bandit.n, -np.inf)
    np.maximum.at(top, r[free], logit[free])
    w = np.where(free, np.exp(logit - np.where(np.isfinite(top), top, 0.0)[r]), 0.0)
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float64)
        if weight.shape != r.shape or not (np.isfinite(weight[free]).all() and (weight[free] > 0).all()):
            raise ValueError("explore_weight must be one finite weight above 0 per candidate row")
        w = np.where(free, w * weight, 0.0)
    total = np.bincount(r, weights=w, minlength=bandit.n)
    q = w / np.where(total > 0, total, 1.0)[r]
    width = int(rank.max()) + 1 if len(rank) else 1
    cum = np.zeros((bandit.n, width))
    cum[r, rank] = q
    cum = np.cumsum(cum, axis=1)  # per request, in greedy order: free rows come after the pinned block
    before = cum[r, rank] - q
    after = np.maximum(cum[r, -1] - cum[r, rank], 0.0)
    k = np.arange(K)[None, :]
    at_greedy = (rank[:, None] == k).astype(np.float64)
    explored = move_marginal((rank - n_pin[r])[:, None], k - n_pin[r][:, None], q[:, None], before[:, None],
                             after[:, None], n_free[r][:, None], x.depth)
    pi_free = (1.0 - x.epsilon) * at_greedy + x.epsilon * explored
    return np.where(pinned[:, None], at_greedy, np.where(free[:, None], pi_free, 0.0))


def _epsilon_greedy_pi(bandit: LoggedBandit, rank: np.ndarray, epsilon: float) -> np.ndarray:
    """pi (N, K) of epsilon-greedy around the greedy places ``rank``, on the flat candidate
    rows: recommender.exploration.marginal_propensity where a banner can be (a pinned one
    at its greedy place; an unpinned one past the pinned block)."""
    K = bandit.slots
    pinned, allowed, n_cand, n_pin = _policy_rows(bandit)
    n_free = np.maximum(n_cand - n_pin, 1)
    r = bandit.cand_request
    k = np.arange(K)[None, :]
    at_greedy = (rank[:, None] == k).astype(np.float64)
    can_take = np.where(pinned[:, None], True, (k >= n_pin[r][:, None]) & (k < n_cand[r][:, None]))
    can_take &= allowed[:, None]
    return np.where(can_take, marginal_propensity(at_greedy, pinned[:, None], epsilon, n_free[r][:, None]), 0.0)


def operators_policy(bandit: LoggedBandit, epsilon: float = 0.0, name: str = "operators",
                     exploration: Exploration | None = None) -> TargetPolicy:
    """The operators' order (pinned, then priority, then catalog order), epsilon-greedy with
    ``epsilon`` (or explored as ``exploration`` says): what a service without a model serves."""
    return ranking_policy(bandit, np.zeros(len(bandit.cand_banner)), epsilon, name, exploration)


def uniform_policy(bandit: LoggedBandit, name: str = "random") -> TargetPolicy:
    """Pinned candidates first (the operators' rule), the others in uniformly random order."""
    return ranking_policy(bandit, np.zeros(len(bandit.cand_banner)), epsilon=1.0, name=name)


def popularity_scores(bandit: LoggedBandit) -> np.ndarray:
    """Each candidate banner's popularity (features.definition.popularity) from the history
    strictly before its request, shrunk towards the click rate of the logs."""
    h = bandit.history
    _, hb, _ = h.codes([], bandit.catalog.ids, [])
    b = hb[bandit.cand_banner]
    none = np.full(len(b), -1, dtype=np.int64)  # no person, no category: only the banner's counts matter
    q = h.query_codes(none, b, none, bandit.ts[bandit.cand_request])
    clicked = np.concatenate([np.asarray(log.clicked, dtype=np.float64) for log in bandit.logs]) if bandit.logs else []
    base_rate = float(np.mean(clicked)) if len(clicked) else 0.0
    return popularity(q["global_clicks"], q["global_views"], base_rate)


def popularity_policy(bandit: LoggedBandit, name: str = "popularity") -> TargetPolicy:
    return ranking_policy(bandit, popularity_scores(bandit), 0.0, name)


def logged_policy(bandit: LoggedBandit, name: str = "logged") -> TargetPolicy:
    """The logging policy itself. Its full distribution over candidates is not in the logs,
    only the propensity of what was shown: importance weights are exactly 1, and the direct
    method averages the click model over the logged rankings (an unbiased sample of the
    logging policy's rankings)."""
    K = bandit.slots
    pi = np.zeros((len(bandit.cand_banner), K))
    filled = bandit.filled
    r, k = np.nonzero(filled)
    pi[bandit.shown[r, k], k] = 1.0
    return TargetPolicy(name, pi, pi_shown=np.where(filled, bandit.propensity, 0.0))


def model_scores(bandit: LoggedBandit, model: ModelArtifact) -> np.ndarray:
    """The model's score (click logit at its reference position) of every candidate row,
    through the click model's bandit-wide features (reward.bandit_logits)."""
    return bandit_logits(bandit, model, [model.encoder.reference_position])[:, 0]


def model_policy(bandit: LoggedBandit, model: ModelArtifact, epsilon: float = 0.0, name: str | None = None,
                 exploration: Exploration | None = None) -> TargetPolicy:
    """The model's ranking, explored with ``epsilon`` (epsilon-greedy) or as ``exploration`` says."""
    name = name or str(model.version)
    return ranking_policy(bandit, model_scores(bandit, model), epsilon, name, exploration)
