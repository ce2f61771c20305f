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


def _two_blocks(n: int, seed: int):
    """Rows with one column on in each of two blocks of 20: block 0's weights are real
    (sd 0.5), block 1's are all zero; a completion column and a numeric column of zeros."""
    from training.linear import LinearRows

    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 20, n), rng.integers(0, 20, n)
    effect = rng.normal(0, 0.5, 20)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.0 + effect[a])))).astype(np.float64)
    pair = a * 20 + b
    pairs = np.arange(400)
    static = sp.csr_matrix((np.ones(800), (np.repeat(pairs, 2), np.c_[pairs // 20, 20 + pairs % 20].ravel())),
                           shape=(400, 42))
    X = LinearRows(static, pair.astype(np.intp), np.full(n, 40, dtype=np.intp), np.zeros(n), 41, np.zeros((n, 1)))
    groups = np.r_[np.zeros(20), np.ones(20), [2, 3]].astype(np.int64)
    return X, y, groups, effect


def test_evidence_shrinks_a_block_without_effects_and_keeps_one_with():
    from training.linear import fit_logistic_evidence

    X, y, groups, effect = _two_blocks(60_000, seed=4)
    est, precision = fit_logistic_evidence(X, y, np.ones(len(y)), LogisticRegression(C=0.05, max_iter=100, tol=1e-8),
                                           groups)
    coef = est.coef_.ravel()
    real, empty = precision[0], precision[20]
    # the real block's prior variance is estimated near the true 0.25 (precision 4)
    assert 1.5 < real < 10
    assert empty > 50 * real
    assert np.abs(coef[20:40]).max() < 0.05
    np.testing.assert_allclose(coef[:20] - coef[:20].mean(), effect - effect.mean(), atol=0.15)


def test_one_precision_for_every_coefficient_is_sklearns_penalty(rows):
    _, parts, y, weights = rows
    c = 0.05
    plain = fit_logistic(parts, y, weights, LogisticRegression(C=c, max_iter=500, tol=1e-8))
    same = fit_logistic(parts, y, weights, LogisticRegression(C=123.0, max_iter=500, tol=1e-8),
                        precision=np.full(parts.shape[1], 1 / c))
    np.testing.assert_allclose(same.coef_, plain.coef_, atol=1e-7)
