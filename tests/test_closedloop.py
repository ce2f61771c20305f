"""The closed loop: deterministic, the same requests for every policy, the policy's own
propensities in the logs, and true expected clicks that the logs and the truth recompute."""
import filecmp

import numpy as np
import pytest

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.eligibility import eligible_banners
from simulator import GroundTruth, SimulationConfig
from simulator.closedloop import (POLICIES, ClosedLoopConfig, Policy, epsilon_greedy_policy, pair_agreement,
                                  policy_by_name, run_closed_loop)
from simulator.groundtruth import HistoryState

EPS = 0.2


def _cfg() -> ClosedLoopConfig:
    return ClosedLoopConfig(world=SimulationConfig(staff=400, days=3, seed=3), parity_requests=200)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    out = tmp_path_factory.mktemp("closedloop")
    result = run_closed_loop([epsilon_greedy_policy(0.0), epsilon_greedy_policy(EPS)], _cfg(), out, progress=False)
    return out, result


def _requests(folder):
    log = load_impressions(folder / "impressions.jsonl")
    rts, rst = log.request_ts(), log.request_staff()
    return {(log.request_ids[i], log.staff_ids[rst[i]], rts[i]) for i in range(log.n_requests)}


def _policies(log) -> set:
    return set(np.asarray(log.policies)[log.policy].tolist())


def test_same_seed_same_run(loop, tmp_path):
    out, result = loop
    again = run_closed_loop([epsilon_greedy_policy(EPS)], _cfg(), tmp_path, progress=False)
    name = f"epsilon-greedy-{EPS:g}"
    assert filecmp.cmp(out / name / "impressions.jsonl", tmp_path / name / "impressions.jsonl", shallow=False)
    assert again.runs[name].expected_clicks == result.runs[name].expected_clicks
    assert result.runs[name].models[0] == "operators" and result.runs[name].models[-1] != "operators"


def test_policies_see_the_same_requests_and_differ_in_what_they_show(loop):
    out, result = loop
    greedy, explored = _requests(out / "greedy"), _requests(out / f"epsilon-greedy-{EPS:g}")
    assert greedy == explored and len(greedy) > 500
    a = (out / "greedy" / "impressions.jsonl").read_bytes()
    assert a != (out / f"epsilon-greedy-{EPS:g}" / "impressions.jsonl").read_bytes()
    assert result.runs["greedy"].requests == result.runs[f"epsilon-greedy-{EPS:g}"].requests


def test_logged_propensities_are_the_policys(loop):
    out, _ = loop
    staff = load_staff(out / "staff.csv")
    catalog = load_banners(out / "banners.json")
    greedy = load_impressions(out / "greedy" / "impressions.jsonl", catalog=catalog)
    assert np.all(greedy.propensity == 1.0) and _policies(greedy) == {"greedy"}
    log = load_impressions(out / f"epsilon-greedy-{EPS:g}" / "impressions.jsonl", catalog=catalog)
    assert _policies(log) == {f"epsilon-greedy-{EPS:g}"}
    off_greedy = 0
    for i in range(len(log)):
        elig = eligible_banners(catalog, staff.get(log.staff_ids[log.staff[i]]).attributes, log.ts[i])
        b = catalog.get(log.banner_ids[log.banner[i]])
        assert b in elig
        if b.pinned:
            assert log.propensity[i] == 1.0
            continue
        n_free = len(elig) - sum(x.pinned for x in elig)
        assert np.isclose(log.propensity[i], EPS / n_free) or np.isclose(log.propensity[i], 1 - EPS + EPS / n_free)
        off_greedy += np.isclose(log.propensity[i], EPS / n_free) and n_free > 1
    assert off_greedy > 0


def test_a_plugged_in_sampler_logs_its_own_propensities(tmp_path):
    """Any sampler with epsilon_greedy's outputs plugs in; what it returns is logged."""
    def first_eligible(batch, rng):
        m = len(batch.eligible)
        order = np.argsort(~batch.eligible, axis=1, kind="stable")[:, :batch.slots]
        valid = np.take_along_axis(batch.eligible, order, axis=1)
        return np.where(valid, order, -1), np.where(valid, 0.5, 0.0), np.zeros(m, dtype=bool)

    cfg = ClosedLoopConfig(world=SimulationConfig(staff=150, days=1, seed=1))
    named = [policy_by_name(name) for name in POLICIES]
    run_closed_loop([Policy("catalog-order", first_eligible), *named], cfg, tmp_path, progress=False)
    log = load_impressions(tmp_path / "catalog-order" / "impressions.jsonl")
    assert len(log) > 0 and np.all(log.propensity == 0.5) and _policies(log) == {"catalog-order"}
    for p in named:
        log = load_impressions(tmp_path / p.name / "impressions.jsonl")
        assert len(log) > 0 and np.all((log.propensity > 0) & (log.propensity <= 1)) and _policies(log) == {p.name}


def test_true_expected_clicks_recompute_from_the_logs_and_the_truth(loop):
    out, result = loop
    truth = GroundTruth.load(out)
    for name, run in result.runs.items():
        log = load_impressions(out / name / "impressions.jsonl")
        u = truth.staff_idx(np.asarray(log.staff_ids)[log.staff])
        b = truth.banner_idx(np.asarray(log.banner_ids)[log.banner])
        views, clicked_before = HistoryState(u, b, log.ts, log.clicked, len(truth.banner_ids)).at(u, b, log.ts)
        expected = truth.click_probability(u, b, log.position, views, clicked_before)
        # the loop keeps each person's static logit in float32 (simulator.run.static_parts)
        assert np.isclose(expected.sum(), run.total_expected_clicks, rtol=1e-6)
        assert int(log.clicked.sum()) == sum(run.clicks) and len(log) == sum(run.impressions)
        assert len(run.log) == len(log)


def test_pair_agreement_counts_pairs_ordered_as_the_truth():
    scores = np.array([[3.0, 2.0, 1.0, 0.0]])
    truth_value = np.array([[0.9, 0.1, 0.5, 0.2]])
    eligible = np.array([[True, True, True, False]])
    a, n = pair_agreement(scores, truth_value, eligible, np.array([0]), np.arange(4))
    assert (a, n) == (2.0, 2)  # banner 0 over 1 and over 2: both right; banner 3 not eligible
    a, n = pair_agreement(scores, truth_value, eligible, np.array([1]), np.arange(4))
    assert (a, n) == (1.0, 2)  # banner 1 under 0: right; above 2: wrong
    scores[0, 2] = 2.0
    a, n = pair_agreement(scores, truth_value, eligible, np.array([1]), np.arange(4))
    assert (a, n) == (1.5, 2)  # a tie in the scores counts half


def test_candidate_scores_are_the_models(loop):
    """The loop scores a batch at once; the scores are ModelArtifact.score's."""
    from features.pipeline import history_from_logs
    from recommender.ranker import CandidateRows
    from simulator.closedloop import World, score_candidates
    from training.train import TrainConfig, train

    _, result = loop
    world = World(_cfg().world)
    log = result.runs["greedy"].log
    u, ts, elig = world.rounds(2)[1]
    u, ts, elig = u[:50], ts[:50], elig[:50]
    for kind in ("logistic", "gbm"):
        model = train(world.staff, world.catalog, log, None, TrainConfig(models=(kind,))).artifact
        history = history_from_logs([log], world.catalog, model.encoder.config.half_life_days)
        got = score_candidates(model, world, u, ts, elig, history)
        r, b = np.nonzero(elig)
        rows = CandidateRows(r, [world.truth.staff_ids[i] for i in u[r]], [world.profiles[i] for i in u[r]],
                             [world.banners[j] for j in b], ts[r].astype(float))
        assert np.allclose(got[r, b], model.score(rows, history), rtol=1e-9, atol=1e-9)
        assert np.all(got[~elig] == 0)
