"""Offline-evaluation estimators: exact identities (hypothesis) and statistical behaviour
on synthetic logs whose true value is known exactly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.domain import Banner, Catalog
from recommender.exploration import shown_propensities
from recommender.ordering import greedy_order
from recommender.ranker import CandidateSet
from training.ope.estimators import (
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    bootstrap,
    dr_breakdown,
    interval,
    paired_difference,
    resample_counts,
)
from training.ope.evaluate import evaluate
from training.ope.policies import TargetPolicy, logged_policy, ranking_policy, uniform_policy

from ope_synth import synth_bandit, true_value

bandits = st.builds(lambda n, nb, K, eps, seed, pin: synth_bandit(n, nb, K, eps, seed, pin),
                    st.integers(5, 200), st.integers(4, 9), st.integers(1, 4), st.floats(0.05, 1.0),
                    st.integers(0, 2**31 - 1), st.booleans())


@settings(max_examples=40, deadline=None)
@given(bandits)
def test_on_policy_ips_snips_dr_equal_the_logged_mean(b):
    bandit, q, _ = b
    pol = logged_policy(bandit)
    mean = bandit.click.sum() / bandit.n
    for est in (IPS(), SNIPS(), DoublyRobust()):
        assert est.contributions(bandit, pol, q).value() == pytest.approx(mean, abs=1e-12)
    assert np.allclose(pol.weights(bandit)[bandit.filled], 1.0)


@settings(max_examples=40, deadline=None)
@given(bandits)
def test_target_equal_to_the_logging_policy_has_weights_one(b):
    bandit, q, logging_pi = b
    pol = TargetPolicy("same", logging_pi)
    w = pol.weights(bandit)
    assert np.allclose(w[bandit.filled], 1.0)
    assert np.all(w[~bandit.filled] == 0)
    assert IPS().contributions(bandit, pol).value() == pytest.approx(bandit.click.sum() / bandit.n)


@settings(max_examples=40, deadline=None)
@given(bandits, st.floats(0, 1))
def test_dr_equals_dm_when_clicks_equal_the_model(b, eps):
    """With each logged outcome replaced by q at the shown cell (q exact, no noise), the
    correction term of DR vanishes whatever the weights."""
    bandit, q, _ = b
    K = bandit.slots
    bandit.click = np.where(bandit.filled, q[np.maximum(bandit.shown, 0), np.arange(K)[None, :]], 0.0)
    scores = np.random.default_rng(1).random(len(bandit.cand_banner))
    pol = ranking_policy(bandit, scores, eps)
    dm = DirectMethod().contributions(bandit, pol, q).value()
    assert DoublyRobust().contributions(bandit, pol, q).value() == pytest.approx(dm, rel=1e-10, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(bandits, st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_policy_probabilities_are_distributions_and_match_the_ranker(b, eps, seed):
    bandit, q, _ = b
    K = bandit.slots
    # operators' rules in play: several pinned banners, priorities with ties
    rng = np.random.default_rng(seed)
    bandit.catalog = Catalog(Banner(x.banner_id, x.category, pinned=bool(rng.random() < 0.3), priority=int(rng.integers(0, 3)))
                             for x in bandit.catalog)
    scores = np.random.default_rng(2).normal(size=len(bandit.cand_banner))
    pol = ranking_policy(bandit, scores, eps)
    ncand = bandit.n_candidates
    for k in range(K):
        mass = np.bincount(bandit.cand_request, weights=pol.pi[:, k], minlength=bandit.n)
        assert np.allclose(mass, (ncand > k).astype(float))
    assert np.all(pol.pi.sum(axis=1) <= 1 + 1e-9)
    # the greedy ranking's own propensities are those the Ranker logs when it serves it
    for i in range(min(bandit.n, 25)):
        rows = np.arange(bandit.offsets[i], bandit.offsets[i + 1])
        cands = CandidateSet([bandit.catalog.banners[j] for j in bandit.cand_banner[rows]])
        greedy = greedy_order(scores[rows], cands.pinned, cands.priority).tolist()
        shown = greedy[:K]
        expected = shown_propensities(shown, greedy, cands.pinned, eps)
        got = [pol.pi[rows[j], p] for p, j in enumerate(shown)]
        assert np.allclose(got, expected)


@settings(max_examples=40, deadline=None)
@given(bandits)
def test_epsilon_greedy_policy_is_exactly_the_logging_policy_rebuilt(b):
    """Rebuilding the logging policy from its scores and epsilon gives the propensities of
    recommender.exploration for every candidate, and weights 1 on the logs."""
    bandit, _, logging_pi = b
    pol = ranking_policy(bandit, bandit.logging_scores, bandit.logging_epsilon)
    assert np.allclose(pol.pi, logging_pi)
    assert np.allclose(pol.weights(bandit)[bandit.filled], 1.0)


@settings(max_examples=30, deadline=None)
@given(bandits)
def test_positions_and_categories_add_up_to_the_value(b):
    bandit, q, _ = b
    K = bandit.slots
    pol = ranking_policy(bandit, np.random.default_rng(3).random(len(bandit.cand_banner)), 0.1)
    cat = bandit.cand_category()
    for est in (IPS(), DirectMethod(), DoublyRobust()):
        total = est.contributions(bandit, pol, q).value()
        per_pos = sum(est.contributions(bandit, pol, q, np.eye(K)[None, k].repeat(len(cat), 0)).value() for k in range(K))
        per_cat = sum(est.contributions(bandit, pol, q, np.repeat((cat == c)[:, None], K, 1).astype(float)).value()
                      for c in np.unique(cat))
        assert per_pos == pytest.approx(total, abs=1e-12)
        assert per_cat == pytest.approx(total, abs=1e-12)
    # the one-pass DR breakdown gives the same numbers as the cell masks
    by_pos, by_cat = dr_breakdown(bandit, pol, q, cat, int(cat.max()) + 1)
    for k in range(K):
        cell = np.eye(K)[None, k].repeat(len(cat), 0)
        assert by_pos[k].value() == pytest.approx(DoublyRobust().contributions(bandit, pol, q, cell).value(), abs=1e-12)
    for c in range(int(cat.max()) + 1):
        cell = np.repeat((cat == c)[:, None], K, 1).astype(float)
        assert np.allclose(by_cat[c].columns, DoublyRobust().contributions(bandit, pol, q, cell).columns)


def test_resample_counts_are_multinomial_resamples():
    counts = np.concatenate(list(resample_counts(50, 60, seed=4)))
    assert counts.shape == (60, 50)
    assert np.all(counts.sum(axis=1) == 50)
    assert np.all(counts >= 0) and len({tuple(c) for c in counts}) == 60


def test_difference_of_a_policy_with_itself_is_exactly_zero_and_intervals_hold_the_estimate():
    bandit, q, _ = synth_bandit(500, seed=5)
    pol = uniform_policy(bandit)
    for est in (IPS(), SNIPS(), DirectMethod(), DoublyRobust()):
        c = est.contributions(bandit, pol, q)
        d = paired_difference(c, c, 100, seed=1)
        assert d.value == 0 and d.ci_low == 0 and d.ci_high == 0
        e = interval(c.value(), bootstrap([c], 100, 1)[0])
        assert e.ci_low <= e.value <= e.ci_high and e.ci_low < e.ci_high


def test_estimators_are_unbiased_on_average():
    """Mean of each estimator over 60 independent logs is within 4 standard errors of the
    mean true value (the truth differs slightly per log: it is conditional on its requests)."""
    errs = {e: [] for e in ("ips", "snips", "dr")}
    for seed in range(60):
        bandit, q, _ = synth_bandit(400, nb=8, K=3, eps=0.3, seed=seed)
        scores = np.random.default_rng(seed + 1000).random(len(bandit.cand_banner))
        pol = ranking_policy(bandit, scores)
        t = true_value(pol, q, bandit.n)
        qm = np.clip(q * 1.5, 0, 1)  # a biased click model: DR must still be unbiased
        for est in (IPS(), SNIPS(), DoublyRobust()):
            errs[est.name].append(est.contributions(bandit, pol, qm).value() - t)
    for name, e in errs.items():
        e = np.asarray(e)
        assert abs(e.mean()) < 4 * e.std(ddof=1) / np.sqrt(len(e)) + 1e-3, name


def test_bootstrap_intervals_cover_the_truth_about_95_percent():
    """Coverage of the 95% intervals over 150 independent synthetic logs of 1,500 requests:
    for a well-calibrated interval the count is Binomial(150, 0.95), so 131..149 covers
    ~99.9% of its mass; a systematically too narrow or too wide interval falls outside."""
    cover = {e: 0 for e in ("ips", "snips", "dr")}
    n_runs = 150
    for seed in range(n_runs):
        bandit, q, _ = synth_bandit(1500, nb=6, K=2, eps=0.5, seed=10_000 + seed)
        pol = ranking_policy(bandit, np.random.default_rng(seed).random(len(bandit.cand_banner)))
        t = true_value(pol, q, bandit.n)
        res = evaluate(bandit, [pol], q, n_boot=200, seed=seed, breakdowns=False)
        for e in cover:
            v = res.policies[pol.name][e]
            cover[e] += v["ci_low"] <= t <= v["ci_high"]
        # DM with the exact click model is the truth itself (the truth is conditional on the requests)
        assert res.policies[pol.name]["dm"]["value"] == pytest.approx(t, rel=1e-12)
    for e in ("ips", "snips", "dr"):
        assert 131 <= cover[e] <= 149, (e, cover)


def test_unscorable_requests_are_excluded_and_counted():
    bandit, q, _ = synth_bandit(300, seed=6)
    scores = np.random.default_rng(0).random(len(bandit.cand_banner))
    scores[bandit.offsets[5]] = np.nan
    scores[bandit.offsets[9]] = np.inf
    pol = ranking_policy(bandit, scores, name="model")
    res = evaluate(bandit, [pol, uniform_policy(bandit)], q, n_boot=50)
    assert res.n_requests == 298
    assert any("cannot rank" in k and v == 2 for k, v in res.exclusions.items())
    assert any("cannot score" in w for w in res.warnings)


def test_far_target_and_tiny_propensities_are_flagged_unreliable():
    # logging: nearly greedy (eps 0.02) over 9 banners; target: the reverse order
    bandit, q, _ = synth_bandit(3000, nb=9, K=3, eps=0.02, seed=7)
    scores = -np.random.default_rng(8).random(len(bandit.cand_banner))
    far = ranking_policy(bandit, scores, name="far")
    near = logged_policy(bandit)
    res = evaluate(bandit, [near, far], q, n_boot=50)
    assert res.diagnostics["far"]["ips_reliable"] is False
    assert res.diagnostics["logged"]["ips_reliable"] is True
    assert any(w.startswith("far: IPS and SNIPS are unreliable (effective sample size") for w in res.warnings)


def test_ranking_policy_rejects_bad_shapes_and_epsilon():
    bandit, _, _ = synth_bandit(20, seed=9)
    with pytest.raises(ValueError):
        ranking_policy(bandit, np.zeros(3))
    with pytest.raises(ValueError):
        ranking_policy(bandit, np.zeros(len(bandit.cand_banner)), epsilon=1.5)


def test_pinned_banners_stay_first_for_every_policy():
    bandit, _, _ = synth_bandit(200, nb=6, K=3, eps=0.4, seed=10, pinned_first=True)
    pinned_rows = bandit.cand_banner == 0
    for pol in (uniform_policy(bandit), ranking_policy(bandit, -np.arange(len(bandit.cand_banner), dtype=float), 0.3)):
        assert np.allclose(pol.pi[pinned_rows, 0], 1.0)


def test_a_policy_that_is_not_a_distribution_is_refused():
    from training.ope.data import EvaluationInputError

    bandit, q, _ = synth_bandit(50, seed=11)
    pi = uniform_policy(bandit).pi.copy()
    pi[bandit.offsets[3]:bandit.offsets[4], 0] += 0.5  # position 1 of request r3 sums past 1
    with pytest.raises(EvaluationInputError, match="position 1 of request 'r3'"):
        evaluate(bandit, [TargetPolicy("bad", pi)], q, n_boot=20)
    with pytest.raises(EvaluationInputError, match="non-negative"):
        evaluate(bandit, [TargetPolicy("neg", -uniform_policy(bandit).pi)], q, n_boot=20)


def test_staff_resampling_widens_intervals_for_correlated_requests():
    """Each person's 5 requests repeat the same outcome: resampling people sees 1/5 of the
    information that resampling requests pretends to, so its interval is ~sqrt(5) wider."""
    rng = np.random.default_rng(12)
    people = np.repeat(np.arange(400), 5)
    x = np.repeat(rng.random(400), 5)[:, None]
    from training.ope.estimators import Contributions

    c = Contributions(x, lambda m: m[..., 0])
    by_req = bootstrap([c], 400, seed=1)[0]
    by_staff = bootstrap([c], 400, seed=1, clusters=people)[0]
    ratio = by_staff.std() / by_req.std()
    assert 1.8 < ratio < 2.7, ratio  # sqrt(5) = 2.24
    assert by_staff.mean() == pytest.approx(x.mean(), abs=0.01)


def test_direct_method_interval_spans_the_click_model_error():
    """With a biased click model, request resampling alone gives DM a narrow interval far
    from the truth; DM's interval must span DR's (the logs' measure of the model's error),
    so it covers the truth about as often as DR's does."""
    cover = {"dm": 0, "dr": 0}
    n_runs = 40
    for seed in range(n_runs):
        bandit, q, _ = synth_bandit(1500, nb=6, K=2, eps=0.5, seed=20_000 + seed)
        pol = ranking_policy(bandit, np.random.default_rng(seed).random(len(bandit.cand_banner)))
        t = true_value(pol, q, bandit.n)
        res = evaluate(bandit, [pol], np.clip(q * 1.5, 0, 1), n_boot=200, seed=seed, breakdowns=False)
        dm, dr = res.policies[pol.name]["dm"], res.policies[pol.name]["dr"]
        assert dm["ci_low"] <= min(dm["value"], dr["ci_low"]) + 1e-12
        assert dm["ci_high"] >= max(dm["value"], dr["ci_high"]) - 1e-12
        for e in cover:
            cover[e] += res.policies[pol.name][e]["ci_low"] <= t <= res.policies[pol.name][e]["ci_high"]
    assert cover["dm"] >= cover["dr"] >= 30, cover
