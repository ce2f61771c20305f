"""The logistic regression's rows in parts (training.linear): the same matrix as the
encoder's CSR transform, and a fit that reaches scikit-learn's optimum."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from training.linear import _hessian, _loss_gradient, fit_logistic, log_rows


@pytest.fixture(scope="module")
def rows(small_province):
    from features.definition import FeatureEncoder
    from recommender.candidates import cold_start_catalog
    from recommender.contracts import load_banners, load_impressions, load_staff
    from training.dataset import log_context
    from training.fitting import TrainConfig, attribute_values, fit_scale

    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    cfg = TrainConfig()
    catalog = cold_start_catalog(catalog, [log])
    enc = FeatureEncoder(cfg.features).fit(attribute_values(staff, cfg.features), catalog.known, log.click_rate())
    ctx = log_context(enc, staff, catalog, log)
    idx = np.sort(np.random.default_rng(0).choice(len(log), min(40_000, len(log)), replace=False))
    ctx.prepare(idx)
    fit_scale(enc, ctx, np.random.default_rng(0), idx)
    csr = ctx.features(enc, idx, position=log.position[idx])
    parts = log_rows(enc, ctx, idx, log.position[idx])
    weights = np.random.default_rng(1).uniform(0.5, 3.0, len(idx))
    return csr, parts, log.clicked[idx].astype(np.float64), weights


def test_parts_multiply_as_the_csr_matrix(rows):
    csr, parts, _, _ = rows
    rng = np.random.default_rng(2)
    w = rng.normal(size=csr.shape[1])
    assert parts.shape == csr.shape
    np.testing.assert_allclose(parts @ w, csr @ w, rtol=1e-12, atol=1e-10)


def test_hessian_is_the_explicit_one(rows):
    csr, parts, _, weights = rows
    sw, l2 = weights / weights.sum(), 1e-3
    w = np.random.default_rng(3).normal(size=csr.shape[1] + 1) * 0.05
    xa = sp.hstack([csr, np.ones((csr.shape[0], 1))]).tocsr()
    p = 1 / (1 + np.exp(-(xa @ w)))
    expected = (xa.T @ xa.multiply((sw * p * (1 - p))[:, None]).tocsr()).toarray()
    expected[np.arange(csr.shape[1]), np.arange(csr.shape[1])] += l2
    np.testing.assert_allclose(_hessian(w, parts, sw, l2), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("c", [0.01, 0.05])
def test_fit_reaches_sklearn_optimum(rows, c):
    csr, parts, y, weights = rows
    ours = fit_logistic(parts, y, weights, LogisticRegression(C=c, max_iter=500, tol=1e-5))
    ref = LogisticRegression(C=c, max_iter=2000, tol=1e-8).fit(csr, y, sample_weight=weights)
    sw, l2 = weights / weights.sum(), 1.0 / (c * weights.sum())

    def objective(est):
        return _loss_gradient(np.r_[est.coef_.ravel(), est.intercept_], parts, y, sw, l2)[0]

    assert objective(ours) <= objective(ref) + 1e-9
    np.testing.assert_allclose(ours.predict_proba(csr)[:, 1], ref.predict_proba(csr)[:, 1], atol=2e-3)
    warm = fit_logistic(parts, y, weights, LogisticRegression(C=c, max_iter=500, tol=1e-5),
                        np.r_[ours.coef_.ravel(), ours.intercept_])
    assert warm.n_iter_[0] <= 1
