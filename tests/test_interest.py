"""Personal interest shrunk by evidence (features.interest and its kernel features): the
empirical-Bayes prior, the features' formulas, and models fitted before them."""
import copy
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.definition import NUMERIC_FEATURES, FeatureConfig, FeatureEncoder, smoothed_rate
from features.history import Events, RunningHistory
from features.interest import MAX_PRIOR, category_counts, interest_prior, interest_units
from features.kernel import N_NUMERIC_V1
from recommender.domain import Banner
from recommender.ranker import CandidateRows
from training.artifact import ModelArtifact

BANNERS = [Banner("b1", "policy", priority=3), Banner("b2", "survey", start=0.0), Banner("b3", "event", tags=("ai",))]


def _encoder() -> FeatureEncoder:
    return FeatureEncoder(FeatureConfig()).fit({"role": ["teacher"], "school_level": ["high"], "region": ["Suwon"]},
                                               BANNERS, 0.05)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.3, 8.0), st.floats(0.3, 3.0), st.integers(0, 2**31))
def test_the_prior_is_recovered_from_poisson_gamma_counts(k, mean_expected, seed):
    """Counts drawn from the model the estimate assumes give back its k (a formula that
    forgot the Poisson part of the variance would read a far smaller k)."""
    rng = np.random.default_rng(seed)
    expected = rng.exponential(mean_expected, 60_000)
    clicks = rng.poisson(rng.gamma(k, 1.0 / k, len(expected)) * expected)
    assert abs(np.log(interest_prior(clicks, expected) / k)) < np.log(1.4)


def test_no_spread_between_people_is_the_strongest_prior():
    expected = np.full(1000, 2.0)
    assert interest_prior(np.full(1000, 2.0), expected) == MAX_PRIOR
    assert interest_prior(np.zeros(0), np.zeros(0)) == MAX_PRIOR


def test_units_and_rates_count_each_person_and_category():
    person = np.array([0, 0, 0, 1, 1])
    category = np.array([1, 1, 2, 1, 1])
    clicked = np.array([1, 0, 1, 0, 0])
    rates = smoothed_rate(*category_counts(category, clicked, 3), 0.1, 0.0)
    assert np.allclose(rates[1:], [1 / 4, 1.0])
    clicks, expected = interest_units(person, category, clicked, rates)
    assert np.allclose(clicks, [1, 1, 0]) and np.allclose(expected, [0.5, 1.0, 0.5])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["b1", "b2", "b3"]), st.integers(0, 1)), max_size=30))
def test_interest_features_follow_their_formulas(events):
    """Interest = log((clicks + k) / (rate x views + k)): 0 without views, above 0 where the
    person clicks more than their category's rate predicts."""
    enc = _encoder()
    enc.interest_prior_ = 0.7
    enc.category_rate_ = np.linspace(0.02, 0.2, len(enc.category_rate_))
    running = RunningHistory(half_life_days=1e9)  # no decay: the counts themselves
    cat = {b.banner_id: b.category for b in BANNERS}
    running.add_events(Events(["s"] * len(events), [b for b, _ in events], [cat[b] for b, _ in events],
                              np.arange(len(events), dtype=np.float64), np.array([c for _, c in events])))
    arrays = enc.encode_banners(BANNERS)
    hist = running.query_person("s", arrays.ids, arrays.categories, 1e6)
    got = enc.numeric(arrays, np.arange(3), np.full(3, 1e6), hist)
    names = list(NUMERIC_FEATURES)
    for i, b in enumerate(BANNERS):
        views = sum(1 for x, _ in events if cat[x] == b.category)
        clicks = sum(c for x, c in events if cat[x] == b.category)
        rate = enc.category_rate_[enc.category_code(b.category)]
        want = np.log((clicks + 0.7) / (rate * views + 0.7))
        assert np.isclose(got[i, names.index("interest_category_all_time")], want)
        assert np.isclose(got[i, names.index("interest_category")], want, atol=1e-6)
        person = np.log((sum(c for _, c in events) + 0.7) / (0.05 * len(events) + 0.7))
        assert np.isclose(got[i, names.index("interest_person")], person, atol=1e-6)


def _as_fitted_before(enc: FeatureEncoder) -> FeatureEncoder:
    """The encoder as a model saved before the interest features holds it."""
    state = {k: v for k, v in enc.__dict__.items() if k not in ("numeric_features_", "category_rate_", "interest_prior_")}
    old = FeatureEncoder.__new__(FeatureEncoder)
    old.__setstate__(copy.deepcopy(state))
    old._layout()
    return pickle.loads(pickle.dumps(old))


def test_a_model_fitted_before_the_interest_features_scores_with_its_own():
    """An older model reads its 18 numeric features, and the service's compiled path gives
    the same logits as the matrix path."""
    old = _as_fitted_before(_encoder())
    assert old.n_numeric == N_NUMERIC_V1 and old.describe()["numeric"] == list(NUMERIC_FEATURES[:N_NUMERIC_V1])

    class Linear:
        coef_ = np.random.default_rng(0).normal(size=(1, old.n_features_))
        intercept_ = np.array([-2.0])

    model = ModelArtifact(old, Linear(), "logistic")
    running = RunningHistory()
    running.add_events(Events(["s", "s", "s"], ["b1", "b2", "b1"], ["policy", "survey", "policy"],
                              np.array([1.0, 2.0, 3.0]), np.array([1, 0, 0])))
    rows = CandidateRows.for_request("s", {"role": "teacher"}, 10.0, BANNERS)
    fast = model.score(rows, running)
    slow = model._logit(rows, running, None)
    assert fast.shape == (3,) and np.allclose(fast, slow, atol=1e-9)
