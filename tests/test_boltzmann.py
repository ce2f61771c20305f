"""Boltzmann exploration (recommender.boltzmann): the propensities are the exact marginals of
what it samples, checked against a brute-force enumeration of every explored outcome and
against sampled frequencies; the batch sampler and the per-request one agree."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from recommender.boltzmann import (
    boltzmann_greedy,
    boltzmann_marginals,
    boltzmann_order,
    choice_probabilities,
)
from recommender.ordering import greedy_keys, greedy_order


def brute_force(greedy: list[int], n_pinned: int, scores, epsilon, temperature, depth, weight=None) -> np.ndarray:
    """P[b, k] by enumerating every (drawn candidate, target position) with its probability,
    the draw probabilities written out from the definition."""
    n = len(greedy)
    P = np.zeros((n, n))
    for k, b in enumerate(greedy):
        P[b, k] += 1.0 - epsilon
    free = greedy[n_pinned:]
    if not free:
        for k, b in enumerate(greedy):
            P[b, k] += epsilon
        return P
    s = np.array([scores[b] for b in free], dtype=float)
    sd = s.std()
    z = (s - s.mean()) / sd if sd > 1e-12 * abs(s.mean()) else np.zeros(len(s))
    w = np.exp(z / temperature) * (1.0 if weight is None else np.array([weight[b] for b in free]))
    q = w / w.sum()
    d = min(depth, len(free))
    for g in range(len(free)):
        for p in range(d):
            moved = list(free)
            moved.insert(p, moved.pop(g))
            for k, b in enumerate(greedy[:n_pinned] + moved):
                P[b, k] += epsilon * q[g] / d
    return P


def case(n, n_pinned, seed, ties=False):
    rng = np.random.default_rng(seed)
    pinned = np.zeros(n, dtype=bool)
    pinned[rng.permutation(n)[:n_pinned]] = True
    scores = rng.integers(0, 3, n).astype(float) if ties else rng.normal(size=n) * 3
    priority = rng.integers(0, 2, n)
    return scores, pinned, greedy_order(scores, pinned, priority).tolist()


cases = st.tuples(st.integers(1, 7), st.integers(0, 7), st.integers(0, 2**31 - 1), st.booleans(),
                  st.floats(0, 1), st.floats(0.05, 10), st.integers(1, 5))


@settings(max_examples=150, deadline=None)
@given(cases)
def test_marginals_equal_the_enumeration_of_every_move(c):
    n, n_pinned, seed, ties, eps, temp, depth = c
    n_pinned = min(n_pinned, n)
    scores, pinned, greedy = case(n, n_pinned, seed, ties)
    P = boltzmann_marginals(greedy, n_pinned, scores, eps, temp, depth)
    assert np.allclose(P, brute_force(greedy, n_pinned, scores, eps, temp, depth), atol=1e-12)
    assert np.allclose(P.sum(axis=0), 1.0) and np.allclose(P.sum(axis=1), 1.0)
    assert (P >= 0).all()


@pytest.mark.parametrize("n,n_pinned", [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (4, 4), (5, 0)])
def test_small_and_all_pinned_cases(n, n_pinned):
    scores, pinned, greedy = case(n, n_pinned, 3)
    for depth in (1, 2, 3):
        P = boltzmann_marginals(greedy, n_pinned, scores, 0.7, 0.5, depth)
        assert np.allclose(P, brute_force(greedy, n_pinned, scores, 0.7, 0.5, depth), atol=1e-12)
        for k in range(n_pinned):
            assert P[greedy[k], k] == 1.0


def test_weights_multiply_the_draw_and_equal_scores_draw_uniformly():
    scores, pinned, greedy = case(6, 1, 5)
    weight = np.array([1.0, 4.0, 0.5, 2.0, 1.0, 3.0])
    P = boltzmann_marginals(greedy, 1, scores, 0.4, 1.5, 3, weight)
    assert np.allclose(P, brute_force(greedy, 1, scores, 0.4, 1.5, 3, weight), atol=1e-12)
    assert np.allclose(choice_probabilities(np.full(4, 0.1), 1.0), 0.25)
    assert np.allclose(choice_probabilities(np.full(4, -7.3), 0.01), 0.25)


def test_temperature_is_in_units_of_the_score_spread():
    s = np.array([0.3, -1.0, 2.0, 0.7])
    assert np.allclose(choice_probabilities(s, 0.8), choice_probabilities(50 * s - 9, 0.8))
    assert choice_probabilities(s, 0.1)[2] > 0.99  # cold: the best one
    assert np.allclose(choice_probabilities(s, 1e6), 0.25)  # hot: uniform


@settings(max_examples=60, deadline=None)
@given(cases)
def test_logged_propensities_are_the_marginals_of_the_shown_ranking(c):
    n, n_pinned, seed, ties, eps, temp, depth = c
    n_pinned = min(n_pinned, n)
    scores, pinned, greedy = case(n, n_pinned, seed, ties)
    P = boltzmann_marginals(greedy, n_pinned, scores, eps, temp, depth)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        shown, props, explored, move = boltzmann_order(greedy, n_pinned, scores, eps, temp, depth, rng)
        assert sorted(shown) == sorted(greedy) and shown[:n_pinned] == greedy[:n_pinned]
        assert np.allclose(props, [P[b, k] for k, b in enumerate(shown)], atol=1e-12)
        if not explored:
            assert shown == greedy and move is None
        elif move is not None:
            g, p = move
            assert shown[p] == greedy[g] and n_pinned <= p < n_pinned + depth
            rest = list(greedy)
            rest.insert(p, rest.pop(g))
            assert shown == rest


def test_sampled_frequencies_match_the_propensities():
    """Chi-square per position over 40,000 sampled rankings; the same test with the
    draw made uniform (a wrong q) fails by far."""
    scores = np.array([2.0, 0.5, -0.3, 1.1, 0.0, -2.0, 0.4])
    pinned = np.array([False, False, True, False, False, False, False])
    greedy = greedy_order(scores, pinned, np.zeros(7)).tolist()
    eps, temp, depth, N = 0.6, 0.7, 3, 40_000
    P = boltzmann_marginals(greedy, 1, scores, eps, temp, depth)
    rng = np.random.default_rng(11)
    counts = np.zeros_like(P)
    for _ in range(N):
        shown, props, _, _ = boltzmann_order(greedy, 1, scores, eps, temp, depth, rng)
        counts[shown, np.arange(7)] += 1
    wrong = boltzmann_marginals(greedy, 1, np.zeros(7), eps, temp, depth)
    for k in range(1, 7):  # position 1 is the pinned banner's
        e, e_wrong = P[:, k] * N, wrong[:, k] * N
        used = e > 0
        stat = (((counts[used, k] - e[used]) ** 2) / e[used]).sum()
        assert stat < chi2.ppf(1 - 1e-4, used.sum() - 1)
        used = e_wrong > 0
        assert (((counts[used, k] - e_wrong[used]) ** 2) / e_wrong[used]).sum() > chi2.ppf(1 - 1e-4, used.sum() - 1) \
            or k > depth + 1  # far down, a wrong draw changes little


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.integers(0, 2**31 - 1), st.floats(0, 1), st.floats(0.1, 5),
       st.integers(1, 4), st.booleans())
def test_the_batch_sampler_agrees_with_the_per_request_marginals(n, slots, seed, eps, temp, depth, ties):
    rng = np.random.default_rng(seed)
    m = 30
    pinned = rng.random(n) < 0.25
    priority = rng.integers(0, 2, n)
    scores = rng.integers(0, 3, (m, n)).astype(float) if ties else rng.normal(size=(m, n))
    eligible = rng.random((m, n)) < 0.8
    keys = greedy_keys(scores, pinned, priority)
    shown, prop, explored = boltzmann_greedy(eligible, keys, scores, pinned, eps, slots, rng, temp, depth)
    assert shown.shape == prop.shape == (m, min(slots, n))
    for r in range(m):
        cand = np.flatnonzero(eligible[r])
        greedy = [int(cand[i]) for i in greedy_order(scores[r, cand], pinned[cand], priority[cand])]
        n_pin = int(pinned[cand].sum())
        P = boltzmann_marginals(list(range(len(cand))), n_pin, scores[r, greedy], eps, temp, depth)
        k = min(slots, n, len(cand))
        assert (shown[r, k:] == -1).all() and (prop[r, k:] == 0).all()
        pos = {b: j for j, b in enumerate(greedy)}
        assert len(set(shown[r, :k].tolist())) == k
        assert set(shown[r, :k].tolist()) <= set(cand.tolist())
        assert np.allclose(prop[r, :k], [P[pos[b], t] for t, b in enumerate(shown[r, :k])], atol=1e-12)
        if not explored[r]:
            assert shown[r, :k].tolist() == greedy[:k]


def test_batch_frequencies_match_the_marginals():
    rng = np.random.default_rng(4)
    n, m = 6, 60_000
    scores = np.array([0.2, 1.5, -1.0, 0.7, 0.1, 2.2])
    pinned = np.array([False, False, False, True, False, False])
    keys = greedy_keys(scores, pinned, np.zeros(n))
    shown, prop, _ = boltzmann_greedy(np.ones((m, n), dtype=bool), keys, scores, pinned, 0.5, n, rng, 1.0, 2)
    greedy = np.argsort(keys, kind="stable").tolist()
    P = boltzmann_marginals(greedy, 1, scores, 0.5, 1.0, 2)
    freq = np.zeros((n, n))
    np.add.at(freq, (shown, np.broadcast_to(np.arange(n), shown.shape)), 1.0)
    freq /= m
    assert np.abs(freq - P).max() < 5 * np.sqrt(0.25 / m)


class _Fixed:
    version = "fixed"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def score(self, rows, history):
        return self.scores


def _banners(n, pinned=()):
    from recommender.domain import Banner

    return [Banner(f"b{i}", "c", pinned=i in pinned, priority=i % 2) for i in range(n)]


def test_the_ranker_serves_boltzmann_with_the_exact_propensities():
    from features.history import History
    from recommender.exploration import BOLTZMANN, Exploration
    from recommender.ranker import CandidateSet, Ranker

    scores = np.array([0.3, 1.2, -0.4, 0.9, 0.0, 2.0, -1.1, 0.5])
    cands = CandidateSet(_banners(8, pinned=(4,)))
    x = Exploration(BOLTZMANN, 0.5, 0.8, 2)
    ranker = Ranker(_Fixed(scores), rng=np.random.default_rng(3), exploration=x)
    assert ranker.epsilon == 0.5
    greedy = cands.greedy(scores.tolist())
    P = boltzmann_marginals(greedy, 1, scores, 0.5, 0.8, 2)
    ids = {b: i for i, b in enumerate(cands.ids)}
    seen_moves = set()
    for _ in range(200):
        res = ranker.rank("s", {}, 1.78e9, cands, History.empty())
        shown = [ids[b] for b in res.banner_ids]
        assert np.allclose(res.propensities, [P[b, k] for k, b in enumerate(shown)])
        assert res.scores == [scores[b] for b in shown]
        assert (res.moved is not None) == res.explored
        seen_moves.add(res.moved)
    assert len(seen_moves) > 3
    # the weights change the draw, and the propensities follow
    weight = np.array([1, 1, 1, 1, 1, 1, 50, 1.0])
    def moved_b6(w):
        res = [Ranker(_Fixed(scores), rng=np.random.default_rng(s), exploration=Exploration(BOLTZMANN, 1.0, 0.8, 2))
               .rank("s", {}, 1.78e9, cands, History.empty(), explore_weight=w) for s in range(60)]
        return sum(r.banner_ids[r.moved[1]] == "b6" for r in res)

    assert moved_b6(weight) >= 8 > 2 >= moved_b6(None)

def test_epsilon_greedy_stays_the_default_and_epsilons_must_agree():
    from recommender.exploration import EPSILON_GREEDY, Exploration
    from recommender.ranker import Ranker

    r = Ranker(None, 0.2, np.random.default_rng(0))
    assert r.exploration == Exploration(EPSILON_GREEDY, 0.2) and r.epsilon == 0.2
    with pytest.raises(ValueError, match="epsilon"):
        Ranker(None, 0.2, exploration=Exploration("boltzmann", 0.3))
    with pytest.raises(ValueError, match="epsilon must be in"):
        Ranker(None, 1.5)
    for bad, field in ((dict(policy="softmax"), "exploration"), (dict(temperature=0.0), "temperature"),
                       (dict(temperature=float("inf")), "temperature"), (dict(depth=0), "depth"),
                       (dict(depth=2.5), "depth")):
        with pytest.raises(ValueError, match=field):
            Exploration(**bad)


def _ope_bandit(seed, pin_share=0.3, capped=False):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from ope_synth import synth_bandit

    from recommender.domain import Banner, Catalog

    bandit, _, _ = synth_bandit(40, 7, 4, 0.3, seed)
    rng = np.random.default_rng(seed)
    bandit.catalog = Catalog(Banner(x.banner_id, x.category, pinned=bool(rng.random() < pin_share),
                                    priority=int(rng.integers(0, 3))) for x in bandit.catalog)
    if capped:
        bandit.capped = rng.random(len(bandit.cand_banner)) < 0.2
    return bandit, rng


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0, 1), st.floats(0.2, 4), st.integers(1, 4), st.booleans(), st.booleans())
def test_the_ope_target_policy_is_boltzmann_as_served(seed, eps, temp, depth, ties, capped):
    """pi of ranking_policy(..., exploration=Boltzmann) is, for every candidate row and
    logged position, the marginal the Ranker would log for the same scores."""
    from recommender.exploration import BOLTZMANN, Exploration
    from recommender.ranker import CandidateSet
    from training.ope.policies import ranking_policy

    bandit, rng = _ope_bandit(seed, capped=capped)
    N, K = len(bandit.cand_banner), bandit.slots
    scores = rng.integers(0, 3, N).astype(float) if ties else rng.normal(size=N) * 2
    weight = rng.uniform(0.5, 3, N)
    x = Exploration(BOLTZMANN, eps, temp, depth)
    pol = ranking_policy(bandit, scores, exploration=x, explore_weight=weight)
    for i in range(bandit.n):
        rows = np.arange(bandit.offsets[i], bandit.offsets[i + 1])
        if capped:
            rows = rows[~bandit.capped[rows]]
            assert (pol.pi[bandit.offsets[i]:bandit.offsets[i + 1]][bandit.capped[bandit.offsets[i]:bandit.offsets[i + 1]]]
                    == 0).all()
        if not len(rows):
            continue
        cands = CandidateSet([bandit.catalog.banners[j] for j in bandit.cand_banner[rows]])
        greedy = greedy_order(scores[rows], cands.pinned, cands.priority).tolist()
        P = boltzmann_marginals(greedy, cands.n_pinned, scores[rows], eps, temp, depth, weight[rows])
        k = min(K, len(rows))
        assert np.allclose(pol.pi[rows, :k], P[:, :k], atol=1e-12)
        assert (pol.pi[rows, k:] == 0).all()


def test_resolve_policy_names_the_exploration():
    from recommender.exploration import BOLTZMANN, Exploration
    from training.ope.evaluate import _exploration_suffix

    assert _exploration_suffix(0.1, None) == "+eps0.1" and _exploration_suffix(0.0, None) == ""
    assert _exploration_suffix(0.0, Exploration(BOLTZMANN, 0.2, 0.5, 2)) == "+boltzmann-eps0.2-t0.5-d2"
