"""The simulator: reproducible, exact propensities, sane clicks, contract-valid files."""
import filecmp

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.eligibility import eligible_banners
from recommender.exploration import epsilon_greedy, position_propensities
from recommender.ordering import greedy_keys
from simulator import SETTINGS, GroundTruth, SimulationConfig, setting_config, simulate


def test_same_seed_same_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    cfg = SimulationConfig(staff=500, days=2, seed=3)
    simulate(a, cfg)
    simulate(b, cfg)
    simulate(c, SimulationConfig(staff=500, days=2, seed=4))
    for name in ("staff.csv", "banners.json", "impressions.jsonl"):
        assert filecmp.cmp(a / name, b / name, shallow=False)
    assert not filecmp.cmp(a / "impressions.jsonl", c / "impressions.jsonl", shallow=False)


def test_files_meet_the_contracts_and_clicks_never_exceed_impressions(small_province):
    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    assert len(staff) == 5000 and len(catalog) == 30
    assert set(log.clicked.tolist()) <= {0, 1}
    assert log.clicked.sum() <= len(log)
    # a request shows each banner once, position 1 first, contiguous positions
    counts = np.bincount(log.request)
    assert counts.max() <= 3
    assert np.array_equal(np.bincount(log.request, weights=log.position), counts * (counts + 1) / 2)
    # Korean titles survive
    assert any("교" in b.title for b in catalog)
    # every shown banner was eligible for that person at that time
    rng = np.random.default_rng(0)
    for i in rng.choice(len(log), 300, replace=False):
        person = staff.get(log.staff_ids[log.staff[i]])
        ids = {b.banner_id for b in eligible_banners(catalog, person.attributes, log.ts[i])}
        assert log.banner_ids[log.banner[i]] in ids


def test_logged_propensities_match_the_policy(small_province):
    """Recompute each logged request's full propensity matrix from the public rules
    (eligibility, pinning) and check the logged values for pinned banners and for the
    epsilon share: a free banner's propensity is eps/n_free or (1-eps)+eps/n_free."""
    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    eps = 0.2
    rng = np.random.default_rng(1)
    for i in rng.choice(len(log), 300, replace=False):
        person = staff.get(log.staff_ids[log.staff[i]])
        elig = eligible_banners(catalog, person.attributes, log.ts[i])
        n_pin = sum(b.pinned for b in elig)
        b = catalog.get(log.banner_ids[log.banner[i]])
        if b.pinned:
            assert log.propensity[i] == 1.0
        else:
            n_free = len(elig) - n_pin
            assert np.isclose(log.propensity[i], eps / n_free) or np.isclose(log.propensity[i], 1 - eps + eps / n_free)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_position_propensities_sum_to_one_over_candidates(n, slots, eps, seed):
    rng = np.random.default_rng(seed)
    m = 20
    eligible = rng.random((m, n)) < 0.7
    pinned = rng.random(n) < 0.2
    keys = greedy_keys(rng.random(n), pinned, rng.integers(0, 3, n))
    P = position_propensities(eligible, keys, pinned, eps, slots)
    n_cand = eligible.sum(axis=1)
    for i in range(m):
        for k in range(min(slots, n)):
            expected = 1.0 if k < n_cand[i] else 0.0
            assert np.isclose(P[i, :, k].sum(), expected)
        assert np.all(P[i, ~eligible[i]] == 0)


def test_sampled_positions_follow_the_propensities():
    rng = np.random.default_rng(5)
    n, slots, eps, m = 6, 3, 0.3, 60000
    eligible = np.ones((m, n), dtype=bool)
    pinned = np.array([False, True, False, False, False, False])
    keys = greedy_keys(np.arange(n)[::-1].astype(float), pinned, np.zeros(n))
    shown, prop, _ = epsilon_greedy(eligible, keys, pinned, eps, slots, rng)
    P = position_propensities(eligible[:1], keys, pinned, eps, slots)[0]
    for k in range(slots):
        freq = np.bincount(shown[:, k], minlength=n) / m
        assert np.allclose(freq, P[:, k], atol=0.01)
        assert np.allclose(prop[:, k], P[shown[:, k], k])


def test_ground_truth_scores_rankings_and_hidden_share(small_province):
    truth = GroundTruth.load(small_province)
    assert 1 / 3 <= truth.hidden_variance_share() <= 1
    u = np.array([0, 1])
    ranked = np.array([[0, 1, 2], [3, -1, -1]])
    zeros = np.zeros((2, 3))
    ec = truth.expected_clicks(u, ranked, zeros, zeros)
    assert ec.shape == (2,) and np.all(ec > 0) and np.all(ec < 3)
    # the first position is examined more than the third
    assert truth.examination(1) > truth.examination(3)
    # completion: having clicked a survey makes it much less attractive
    survey = truth.banner_index["b-survey-01"]
    assert truth.attractiveness(0, survey, 1, 1) < truth.attractiveness(0, survey, 1, 0) / 5


# recorded from the simulator before the world settings existed: the default world must not move
GOLDEN_TINY = "16124666981b2073fc34573e92bcbf19dc7684bf65512c3f7807cf6ed54b1c49"


def _digest(folder) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in ("staff.csv", "banners.json", "impressions.jsonl", "truth.json"):
        h.update((folder / name).read_bytes())
    with np.load(folder / "truth.npz") as z:
        for k in sorted(z.files):
            h.update(np.ascontiguousarray(z[k]).tobytes())
    return h.hexdigest()


def test_default_world_is_unchanged(tmp_path):
    simulate(tmp_path / "a", SimulationConfig(staff=300, days=2, seed=1))
    simulate(tmp_path / "b", setting_config("default", staff=300, days=2, seed=1))
    assert _digest(tmp_path / "a") == GOLDEN_TINY
    assert _digest(tmp_path / "b") == GOLDEN_TINY


def test_every_setting_runs_with_its_banner_count(tmp_path):
    shares = {}
    for name, knobs in SETTINGS.items():
        summary = simulate(tmp_path / name, setting_config(name, staff=2000, days=3, seed=2))
        catalog = load_banners(tmp_path / name / "banners.json")
        assert summary.banners == len(catalog) == knobs["banners"]
        assert len({b.category for b in catalog}) == 5
        assert summary.clicks > 0
        shares[name] = summary.hidden_variance_share
    assert shares["structured"] < 0.45 < shares["default"] < shares["personal"]


def test_banner_count_is_honoured_and_generated_banners_are_deterministic():
    from simulator.banners import TEMPLATES, make_banners

    t0, t1 = 0.0, 14 * 86400.0
    assert [b.banner_id for b in make_banners(t0, t1)] == [t[0] for t in TEMPLATES]
    for n in (1, 20, 29, 31, 100):
        banners = make_banners(t0, t1, n, seed=5)
        assert len(banners) == n == len({b.banner_id for b in banners})
    many = make_banners(t0, t1, 100, seed=5)
    assert many == make_banners(t0, t1, 100, seed=5)
    assert many[:30] == make_banners(t0, t1)
    generated = many[30:]
    assert sum(b.start is not None and b.start > t0 for b in generated) >= 10  # new banners appear over time
    assert any(b.end is not None for b in generated)
    assert any(b.is_targeted() for b in generated)
    assert [b.banner_id for b in make_banners(t0, t1, 100, seed=6)[30:]] == [b.banner_id for b in generated]
    assert make_banners(t0, t1, 100, seed=6)[30:] != generated


def test_hidden_share_and_click_rate_follow_their_knobs(tmp_path):
    def run(name, **kw):
        return simulate(tmp_path / name, SimulationConfig(staff=2000, days=2, seed=4, **kw))

    weak, strong = run("weak", personal_scale=0.5), run("strong", personal_scale=1.5)
    assert weak.hidden_variance_share < 0.45 < 0.75 < strong.hidden_variance_share
    rare, common = run("rare", base_logit=-4.0), run("common", base_logit=-2.0)
    assert rare.clicks / rare.impressions < common.clicks / common.impressions


def test_outcomes_follow_clicks_differ_by_category_and_a_survey_is_answered_once(tmp_path):
    plain = simulate(tmp_path / "plain", SimulationConfig(staff=3000, days=4, seed=2))
    summary = simulate(tmp_path / "o", SimulationConfig(staff=3000, days=4, seed=2, outcomes=True))
    catalog = load_banners(tmp_path / "o" / "banners.json")
    log = load_impressions(tmp_path / "o" / "impressions.jsonl", catalog=catalog)
    assert summary.outcomes == int(log.outcome.sum()) > 50 and summary.outcomes < summary.clicks
    assert np.all(log.clicked[log.outcome > 0] == 1)  # an outcome follows a click
    cat = np.array([catalog.get(b).category for b in log.banner_ids])[log.banner]
    assert set(cat[log.outcome > 0]) == {"survey", "event"}
    rate = {c: log.outcome[(cat == c) & (log.clicked == 1)].mean() for c in ("survey", "event")}
    assert rate["survey"] != rate["event"]
    rules = {b.category: b.outcome for b in catalog if b.outcome is not None}
    assert rules["survey"].after_completion == "hide" and rules["event"].after_completion == "downweight"
    # nobody has a banner's outcome twice, and a completed survey is never shown to that person again
    done: dict[tuple[int, int], float] = {}
    for i in np.argsort(log.ts, kind="stable").tolist():
        key = (int(log.staff[i]), int(log.banner[i]))
        if key in done and log.ts[i] > done[key]:
            assert cat[i] != "survey" and log.outcome[i] == 0
        if log.outcome[i] > 0:
            done.setdefault(key, float(log.ts[i]))
    truth = GroundTruth.load(tmp_path / "o")
    assert truth.outcome_probability(0, truth.banner_index["b-survey-01"], 1) == 0
    assert GroundTruth.load(tmp_path / "plain").outcome_base is None and plain.outcomes == 0
