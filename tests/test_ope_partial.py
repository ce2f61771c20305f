"""Offline evaluation on logs that hold only some positions of a request (sampled logs, lost
rows, one position logged per request id), on synthetic logs whose truth is known."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.metrics import observed_positions
from training.ope.estimators import IPS, SNIPS, DirectMethod, DoublyRobust, dr_breakdown
from training.ope.evaluate import evaluate
from training.ope.policies import TargetPolicy, logged_policy, ranking_policy

from ope_synth import drop_positions, split_requests, synth_bandit

ESTIMATORS = (IPS(), SNIPS(), DirectMethod(), DoublyRobust())
bandits = st.builds(lambda n, nb, K, eps, seed, pin: synth_bandit(n, nb, K, eps, seed, pin),
                    st.integers(5, 150), st.integers(4, 9), st.integers(1, 4), st.floats(0.05, 1.0),
                    st.integers(0, 2**31 - 1), st.booleans())


def _policy(bandit, seed=3, eps=0.1):
    return ranking_policy(bandit, np.random.default_rng(seed).random(len(bandit.cand_banner)), eps)


@settings(max_examples=40, deadline=None)
@given(bandits)
def test_complete_logs_keep_the_estimates_of_complete_requests(b):
    """Every position logged: each estimator is the per-request mean it always was."""
    bandit, q, _ = b
    assert bandit.observed.all() and bandit.n_partial == 0
    pol = _policy(bandit)
    K = bandit.slots
    w = pol.weights(bandit)
    qs = np.where(bandit.filled, q[np.maximum(bandit.shown, 0), np.arange(K)[None, :]], 0.0)
    dm = np.bincount(bandit.cand_request, weights=(pol.pi * q).sum(axis=1), minlength=bandit.n)
    mass = np.stack([np.bincount(bandit.cand_request, weights=pol.pi[:, k], minlength=bandit.n) for k in range(K)], 1)
    wc = (w * bandit.click).mean(axis=0)
    snips = np.where(w.mean(axis=0) > 0, wc * mass.mean(axis=0) / np.where(w.mean(axis=0) > 0, w.mean(axis=0), 1), 0).sum()
    want = {"ips": (w * bandit.click).sum(axis=1).mean(), "snips": snips, "dm": dm.mean(),
            "dr": (dm + (w * (bandit.click - qs)).sum(axis=1)).mean()}
    for est in ESTIMATORS:
        c = est.contributions(bandit, pol, q)
        assert c.value() == pytest.approx(want[est.name], rel=1e-12, abs=1e-15), est.name
        if est.name in ("ips", "dr"):
            assert c.columns.shape[1] == 1  # one column per request, as before


@settings(max_examples=40, deadline=None)
@given(bandits)
def test_one_position_per_request_gives_the_estimates_of_the_complete_logs(b):
    """Each logged position as its own request (with its request's candidates): every
    estimator gives the complete logs' value, for a target and for the logging policy."""
    bandit, q, _ = b
    split, rows = split_requests(bandit)
    assert split.n_partial == split.n - int((np.minimum(bandit.slots, bandit.n_candidates) == 1).sum())
    pol = _policy(bandit)
    pol_split = TargetPolicy(pol.name, pol.pi[rows])
    for est in ESTIMATORS:
        full = est.contributions(bandit, pol, q).value()
        assert est.contributions(split, pol_split, q[rows]).value() == pytest.approx(full, rel=1e-9, abs=1e-12), est.name
        on_policy = est.contributions(bandit, logged_policy(bandit), q).value()
        assert est.contributions(split, logged_policy(split), q[rows]).value() == pytest.approx(on_policy, rel=1e-9, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(bandits, st.floats(0.1, 0.7), st.integers(0, 2**31 - 1))
def test_on_policy_estimates_are_the_logged_clicks_per_observed_request(b, share, seed):
    bandit, q, _ = b
    part, _ = drop_positions(bandit, share, seed)
    if part.n == 0:
        return
    observed = part.observed
    per_position = part.click.sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
    for est in (IPS(), SNIPS(), DoublyRobust()):
        assert est.contributions(part, logged_policy(part), q[_rows_of(bandit, part)]).value() == pytest.approx(
            per_position.sum(), abs=1e-12)


def _rows_of(bandit, part):
    """The candidate rows of ``bandit`` that ``part`` (a subset of its requests) kept."""
    keep = np.isin(bandit.request_ids, part.request_ids)
    return np.concatenate([np.arange(bandit.offsets[i], bandit.offsets[i + 1]) for i in np.flatnonzero(keep)])


@settings(max_examples=30, deadline=None)
@given(bandits, st.floats(0.1, 0.7), st.integers(0, 2**31 - 1))
def test_positions_and_categories_add_up_on_partial_logs(b, share, seed):
    bandit, q, _ = b
    part, _ = drop_positions(bandit, share, seed)
    if part.n == 0:
        return
    q = q[_rows_of(bandit, part)]
    pol = _policy(part)
    K = part.slots
    cat = part.cand_category()
    by_pos, by_cat = dr_breakdown(part, pol, q, cat, int(cat.max()) + 1)
    for est in ESTIMATORS:
        total = est.contributions(part, pol, q).value()
        per_pos = [est.contributions(part, pol, q, np.eye(K)[None, k].repeat(len(cat), 0)).value() for k in range(K)]
        assert sum(per_pos) == pytest.approx(total, abs=1e-12)
        if est.name == "dr":
            assert [c.value() for c in by_pos] == pytest.approx(per_pos, abs=1e-12)
            assert sum(c.value() for c in by_cat) == pytest.approx(total, abs=1e-12)


def test_observed_positions_count_a_short_request_where_its_last_position_was_logged():
    logged = np.array([[True, False, False],   # 3 candidates, positions 2 and 3 lost
                       [False, True, False],   # 2 candidates, its last position logged
                       [True, False, False],   # 2 candidates, its last position lost
                       [True, False, False]])  # 1 candidate
    got = observed_positions(logged, np.array([3, 2, 2, 1]))
    assert got.tolist() == [[True, False, False], [False, True, True], [True, False, False], [True, True, True]]


def _true_value(policy, q, n):
    return float((policy.pi * q).sum() / n)


def test_estimators_stay_unbiased_with_a_third_of_the_positions_lost():
    """Mean error over 60 logs, a third of whose logged positions are lost at random, is
    within 4 standard errors of 0 against the truth of every request (the lost requests'
    included), with a biased click model for DR."""
    errs = {e: [] for e in ("ips", "snips", "dm", "dr")}
    for seed in range(60):
        bandit, q, _ = synth_bandit(400, nb=5, K=3, eps=0.3, seed=seed)
        scores = np.random.default_rng(seed + 1000).random(len(bandit.cand_banner))
        t = _true_value(ranking_policy(bandit, scores), q, bandit.n)
        part, _ = drop_positions(bandit, 1 / 3, seed)
        rows = _rows_of(bandit, part)
        pol = ranking_policy(part, scores[rows])
        qm = np.clip(q[rows] * 1.5, 0, 1)
        for est in ESTIMATORS:
            errs[est.name].append(est.contributions(part, pol, q[rows] if est.name == "dm" else qm).value() - t)
    for name, e in errs.items():
        e = np.asarray(e)
        assert abs(e.mean()) < 4 * e.std(ddof=1) / np.sqrt(len(e)) + 1e-3, name


def test_intervals_cover_the_truth_about_95_percent_with_a_third_of_the_positions_lost():
    """Coverage over 120 logs of 1,500 requests with a third of the positions lost: the
    bootstrap resamples each position's numerator and denominator together, so the
    intervals stay calibrated. Binomial(120, 0.95) is 106 or more with probability 99.9%."""
    cover = {e: 0 for e in ("ips", "snips", "dr")}
    n_runs = 120
    for seed in range(n_runs):
        bandit, q, _ = synth_bandit(1500, nb=6, K=2, eps=0.5, seed=30_000 + seed)
        scores = np.random.default_rng(seed).random(len(bandit.cand_banner))
        t = _true_value(ranking_policy(bandit, scores), q, bandit.n)
        part, _ = drop_positions(bandit, 1 / 3, seed)
        rows = _rows_of(bandit, part)
        pol = ranking_policy(part, scores[rows])
        res = evaluate(part, [pol], q[rows], n_boot=200, seed=seed, breakdowns=False)
        assert res.n_partial_requests > 0
        for e in cover:
            v = res.policies[pol.name][e]
            cover[e] += v["ci_low"] <= t <= v["ci_high"]
    for e in cover:
        assert cover[e] >= 106, (e, cover)


def test_training_metrics_on_one_position_per_request_are_those_of_the_complete_logs(small_province):
    """Training reads every impression whatever request it belongs to: on logs that give each
    position a request id of its own, the model and its IPS clicks@K are the complete logs'."""
    from recommender.contracts import load_banners, load_impressions, load_staff
    from training.train import TrainConfig, train

    from test_ope_accuracy import one_position_per_request

    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    cfg = TrainConfig(models=("logistic",), max_valid_requests=10**9)
    full = train(staff, catalog, log, None, cfg).metrics
    split = train(staff, catalog, one_position_per_request(log), None, cfg).metrics
    for name in ("logistic", "popularity"):
        assert split[name]["clicks@3"] == pytest.approx(full[name]["clicks@3"], rel=1e-9)
        assert split[name]["log_loss"] == pytest.approx(full[name]["log_loss"], rel=1e-9)
