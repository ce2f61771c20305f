"""Offline evaluation's click model is the project's: its bandit-wide logits equal the
model artifact's own row-by-row answers (the same features/ code), at every position, for
both model kinds and for an encoder with another half-life and position range."""
import numpy as np
import pytest

from features.definition import FeatureConfig
from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.ranker import CandidateRows
from training.ope.data import build_bandit
from training.ope.policies import model_scores
from training.ope.reward import click_matrix, fit_reward_model
from training.fitting import TrainConfig, fit_click_model

DAY = 86400.0


@pytest.fixture(scope="module")
def province(small_province):
    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    past, ev = log.split(float(log.ts.min()) + 2 * DAY)
    return staff, catalog, past, ev, build_bandit(ev, catalog, staff, 3, history_logs=[past])


def _rows(bandit) -> CandidateRows:
    req = bandit.cand_request
    person = bandit.staff[req]
    return CandidateRows(request=req, staff_id=[bandit.staff_ids[s] for s in person],
                         attributes=[bandit.profiles[s] for s in person],
                         banner=[bandit.catalog.banners[b] for b in bandit.cand_banner], ts=bandit.ts[req])


@pytest.mark.parametrize("kind, features", [
    ("logistic", FeatureConfig()),
    ("gbm", FeatureConfig()),
    ("logistic", FeatureConfig(half_life_days=2.0, max_position=2, reference_position=2)),
])
def test_bandit_click_matrix_and_scores_equal_the_models_own(province, kind, features):
    staff, catalog, past, ev, bandit = province
    model = fit_click_model(staff, catalog, past, kind=kind, config=TrainConfig(features=features, gbm_iterations=20))
    rows, history = _rows(bandit), bandit.history_for(model)
    q = click_matrix(bandit, model)
    assert q.shape == (len(bandit.cand_banner), bandit.slots)
    for k in range(bandit.slots):
        expected = model.click_probability(rows, history, np.full(len(rows), k + 1))
        np.testing.assert_allclose(q[:, k], expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model_scores(bandit, model), model.score(rows, history), rtol=1e-9, atol=1e-9)


def test_the_reward_model_is_the_projects_click_model_fitted_on_the_evaluated_logs(province):
    staff, catalog, past, ev, bandit = province
    model, name = fit_reward_model(staff, catalog, ev, [past])
    assert name.startswith("training.fitting.fit_click_model")
    assert model.kind == "logistic" and model.metadata == {}
    reference = fit_click_model(staff, catalog, ev, history_logs=[past])
    np.testing.assert_array_equal(model.estimator.coef_, reference.estimator.coef_)
