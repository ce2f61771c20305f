"""The logistic regression's rows held in parts, and its fit on them.

The linear model's sparse matrix (``FeatureEncoder.transform``) is, row by row, the sum of
three parts with disjoint columns: the static one-hots and tags of the person's profile
and the banner, the completion column, and the dense numeric block. Millions of
training rows share a few thousand (profile, banner) pairs, so ``LinearRows`` keeps the
static part once per distinct pair and an index per row. A product with weights, and the
fit's loss, gradient and Hessian, then cost one pass over each row's numeric block plus
work per distinct pair, instead of a pass over every stored one-hot; and the matrix is
never built (about 12 bytes per non-zero, over 30 non-zeros a row).

``fit_logistic`` minimises exactly what scikit-learn's LogisticRegression minimises, by
Newton's method as its "newton-cholesky" solver does, and returns such an estimator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numba import njit
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from features.definition import BannerArrays, FeatureEncoder, StaffArrays

CHUNK_ROWS = 500_000  # rows whose history counters and numeric features are computed at once


@dataclass
class LinearRows:
    """Rows of the linear model's matrix: ``X @ w`` and ``X.T @ r`` without building X."""

    static: sp.csr_matrix  # (distinct (profile, banner) pairs, features)
    static_of_row: np.ndarray  # (n,) each row's pair
    completion_col: np.ndarray  # (n,) each row's completion column
    completion_val: np.ndarray  # (n,) and its value
    numeric_offset: int  # the numeric block's first column: log(position), then the numeric features
    numeric: np.ndarray  # (n, 1 + numeric features)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.static_of_row), self.static.shape[1]

    def __len__(self) -> int:
        return len(self.static_of_row)

    def __matmul__(self, w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64).ravel()
        out = (self.static @ w)[self.static_of_row]
        out += w[self.completion_col] * self.completion_val
        out += self.numeric @ w[self.numeric_offset:self.numeric_offset + self.numeric.shape[1]]
        return out


def profile_codes(encoder: FeatureEncoder, staff: StaffArrays) -> np.ndarray:
    """One integer per person; people with equal codes have equal static features."""
    out = np.zeros(len(next(iter(staff.codes.values()))) if staff.codes else 0, dtype=np.int64)
    for a in encoder.config.staff_attributes:
        codes = staff.codes[a]
        out = out * (int(codes.max(initial=0)) + 1) + codes
    return out


def linear_rows(encoder: FeatureEncoder, staff: StaffArrays, staff_idx: np.ndarray, banners: BannerArrays,
                banner_idx: np.ndarray, ts: np.ndarray, position: np.ndarray | None, hist) -> LinearRows:
    """The rows ``encoder.transform(...)`` would give as a CSR matrix (same arguments), in
    parts. ``hist`` is the history query of the rows, or a function of a slice of them
    that returns the query of those rows: the rows' numeric block is then built a chunk
    at a time, so that the history counters of every row are never all held at once."""
    staff_idx, banner_idx = np.asarray(staff_idx), np.asarray(banner_idx)
    ts = np.asarray(ts, dtype=np.float64)
    pair = profile_codes(encoder, staff)[staff_idx] * max(len(banners.ids), 1) + banner_idx
    _, first, static_of_row = np.unique(pair, return_index=True, return_inverse=True)
    static = _static_matrix(encoder.static_parts(staff, staff_idx[first], banners, banner_idx[first]), len(first),
                            encoder.n_features_)
    n = len(ts)
    numeric = np.empty((n, 1 + encoder.n_numeric))
    completion_col, completion_val = np.empty(n, dtype=np.intp), np.empty(n)
    offset = encoder.blocks_["log position"][0]
    for lo in range(0, n, CHUNK_ROWS):
        part = slice(lo, min(n, lo + CHUNK_ROWS))
        h = hist(part) if callable(hist) else {k: v[part] for k, v in hist.items()}
        parts = encoder.history_parts(banners, banner_idx[part], ts[part], None if position is None else position[part], h)
        numeric[part], completion_col[part], completion_val[part] = parts.numeric, parts.completion_col, parts.completion_val
        offset = parts.numeric_offset
    return LinearRows(static, static_of_row.reshape(-1).astype(np.intp), completion_col, completion_val, offset, numeric)


def log_rows(encoder: FeatureEncoder, ctx, rows: np.ndarray, position: np.ndarray | None) -> LinearRows:
    """``linear_rows`` of rows of a training log (a LogContext): what ``ctx.features`` gives
    as a CSR matrix."""
    log = ctx.log
    rows = np.asarray(rows)
    return linear_rows(encoder, ctx.staff, log.staff[rows], ctx.banners, log.banner[rows], log.ts[rows], position,
                       lambda part: ctx.history_rows(rows[part]))


def _static_matrix(parts, n_rows: int, n_features: int) -> sp.csr_matrix:
    k = parts.one_hot.shape[1]
    rows = np.concatenate([np.repeat(np.arange(n_rows), k), parts.tag_row])
    cols = np.concatenate([parts.one_hot.ravel(), parts.tag_col])
    # duplicates add up, as in the CSR matrix of the transform
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n_features))


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _loss_kernel(static_logit, pair, comp_col, comp_val, coef, numeric, w_num, intercept, y, sw, g_pair, g_comp, g_num):
    """The weighted log loss of every row, summed, in one pass over the rows (reading each
    row once, where matrix products would read it twice); adds its gradient by part into
    ``g_pair``, ``g_comp`` and ``g_num``, and returns (loss, the intercept's gradient)."""
    n, m = numeric.shape
    loss, g_icpt = 0.0, 0.0
    for i in range(n):
        z = static_logit[pair[i]] + coef[comp_col[i]] * comp_val[i] + intercept
        for j in range(m):
            z += numeric[i, j] * w_num[j]
        if z > 0.0:
            e = math.exp(-z)
            log1pexp = z + math.log1p(e)
            prob = 1.0 / (1.0 + e)
        else:
            e = math.exp(z)
            log1pexp = math.log1p(e)
            prob = e / (1.0 + e)
        loss += sw[i] * (log1pexp - y[i] * z)
        r = sw[i] * (prob - y[i])
        g_icpt += r
        g_pair[pair[i]] += r
        g_comp[comp_col[i]] += r * comp_val[i]
        for j in range(m):
            g_num[j] += r * numeric[i, j]
    return loss, g_icpt


def _loss_gradient(w: np.ndarray, X: LinearRows, y: np.ndarray, sw: np.ndarray,
                   l2: float | np.ndarray) -> tuple[float, np.ndarray]:
    """scikit-learn's objective: the weighted mean of the log loss (``sw`` sums to 1), plus
    l2 / 2 times the squared weights (not the intercept); and its gradient. ``l2`` is one
    number, or one per coefficient (a prior of its own for each block of columns)."""
    coef = w[:-1]
    off, m = X.numeric_offset, X.numeric.shape[1]
    g_pair, g_comp, g_num = np.zeros(X.static.shape[0]), np.zeros(X.shape[1]), np.zeros(m)
    loss, g_icpt = _loss_kernel(X.static @ coef, X.static_of_row, X.completion_col, X.completion_val, coef, X.numeric,
                                np.ascontiguousarray(coef[off:off + m]), w[-1], y, sw, g_pair, g_comp, g_num)
    grad = np.empty_like(w)
    grad[:-1] = X.static.T @ g_pair + l2 * coef
    grad[:-1] += g_comp
    grad[off:off + m] += g_num
    grad[-1] = g_icpt
    return loss + 0.5 * float(coef @ (l2 * coef)), grad


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _hessian_kernel(static_logit, pair, comp_rel, comp_val, coef_comp, numeric, w_num, intercept, sw,
                    h_pair, h_pair_comp, h_pair_num, h_comp, h_comp_num, h_num):
    """The Hessian of the weighted log loss, sum of d_i x_i x_i' with d_i = sw_i p_i (1 - p_i),
    by part: summed per (profile, banner) pair, per completion column and over the
    numeric block (its upper triangle), in one pass over the rows."""
    n, m = numeric.shape
    for i in range(n):
        k, c, v = pair[i], comp_rel[i], comp_val[i]
        z = static_logit[k] + coef_comp[c] * v + intercept
        for j in range(m):
            z += numeric[i, j] * w_num[j]
        e = math.exp(-abs(z))
        d = sw[i] * e / ((1.0 + e) * (1.0 + e))
        dv = d * v
        h_pair[k] += d
        h_pair_comp[k, c] += dv
        h_comp[c] += dv * v
        for j in range(m):
            x = numeric[i, j]
            h_pair_num[k, j] += d * x
            h_comp_num[c, j] += dv * x
            dx = d * x
            for l in range(j, m):
                h_num[j, l] += dx * numeric[i, l]


def _hessian(w: np.ndarray, X: LinearRows, sw: np.ndarray, l2: float | np.ndarray) -> np.ndarray:
    """The objective's Hessian (features, then the intercept), dense: the model has a few
    thousand columns at most."""
    coef, p = w[:-1], X.shape[1]
    off, m, n_pairs = X.numeric_offset, X.numeric.shape[1], X.static.shape[0]
    base = int(X.completion_col.min()) if len(X) else 0
    comp_rel = X.completion_col - base
    nc = int(comp_rel.max()) + 1 if len(X) else 1
    h_pair, h_pair_comp, h_pair_num = np.zeros(n_pairs), np.zeros((n_pairs, nc)), np.zeros((n_pairs, m))
    h_comp, h_comp_num, h_num = np.zeros(nc), np.zeros((nc, m)), np.zeros((m, m))
    _hessian_kernel(X.static @ coef, X.static_of_row, comp_rel, X.completion_val, np.ascontiguousarray(coef[base:base + nc]),
                    X.numeric, np.ascontiguousarray(coef[off:off + m]), w[-1], sw,
                    h_pair, h_pair_comp, h_pair_num, h_comp, h_comp_num, h_num)
    comp, num = np.arange(base, base + nc), np.arange(off, off + m)
    S, St = X.static, X.static.T.tocsr()
    H = np.zeros((p + 1, p + 1))
    H[:p, :p] = (St @ S.multiply(h_pair[:, None]).tocsr()).toarray()
    H[np.diag_indices(p)] += l2
    H[comp, comp] += h_comp
    H[np.ix_(num, num)] += np.triu(h_num) + np.triu(h_num, 1).T
    H[p, p] = h_pair.sum()
    # the blocks off the diagonal, and their mirror images
    for rows, cols, block in ((slice(0, p), comp, St @ h_pair_comp), (slice(0, p), num, St @ h_pair_num),
                              (slice(0, p), [p], (St @ h_pair)[:, None]), (comp, num, h_comp_num),
                              (comp, [p], h_pair_comp.sum(axis=0)[:, None]), (num, [p], h_pair_num.sum(axis=0)[:, None])):
        rows = np.arange(p)[rows] if isinstance(rows, slice) else np.asarray(rows)
        H[np.ix_(rows, cols)] += block
        H[np.ix_(cols, rows)] += block.T
    return H


class _Factor:
    """The Cholesky factor of the objective's Hessian H on its active columns. A column no
    fitted row has (an unseen value's one-hot, a cross nobody is in) meets only its
    penalty: its row and column of H are zero but for the diagonal, so it is solved on
    its own, and the factorisation costs only the columns the rows have."""

    def __init__(self, H: np.ndarray, l2: float | np.ndarray):
        p = len(H) - 1
        data = np.diag(H)[:p] - (l2 if np.ndim(l2) else np.full(p, l2))
        self.active = np.flatnonzero(np.r_[data > 0, True])  # the intercept always
        self.diag = np.diag(H).copy()
        # one BLAS thread: threads spinning on a busy two-core machine made the
        # factorisation ten times slower
        with threadpool_limits(limits=1, user_api="blas"):
            self.factor, info = scipy.linalg.lapack.dpotrf(H[np.ix_(self.active, self.active)], lower=False,
                                                            clean=False)
        self.H = H if info != 0 else None  # not positive definite in floating point: least squares

    def solve(self, b: np.ndarray) -> np.ndarray:
        """H^-1 b."""
        out = b / self.diag
        with threadpool_limits(limits=1, user_api="blas"):
            if self.H is not None:
                return np.linalg.lstsq(self.H, b, rcond=None)[0]
            out[self.active] = scipy.linalg.lapack.dpotrs(self.factor, b[self.active], lower=False)[0]
        return out

    def inverse_diagonal(self) -> np.ndarray:
        """The diagonal of H^-1 (LAPACK's potri from the factor: a third of the work of
        solving for the identity)."""
        out = 1.0 / self.diag
        with threadpool_limits(limits=1, user_api="blas"):
            if self.H is not None:
                return np.diag(np.linalg.pinv(self.H))
            inverse, _ = scipy.linalg.lapack.dpotri(self.factor, lower=False)
        out[self.active] = np.diag(inverse)
        return out


def _newton_update(w: np.ndarray, f: float, g: np.ndarray, X: LinearRows, y: np.ndarray, sw: np.ndarray,
                   l2: float | np.ndarray, factor: _Factor) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """One Newton step from ``w`` (objective ``f``, gradient ``g``) with a backtracking
    line search: the new weights, objective and gradient, and whether the step no longer
    lowered the objective."""
    step = factor.solve(-g)
    slope = float(g @ step)
    if slope >= 0:  # numerically no descent: the gradient's direction
        step, slope = -g, -float(g @ g)
    t = 1.0
    while True:
        f_new, g_new = _loss_gradient(w + t * step, X, y, sw, l2)
        if f_new <= f + 1e-4 * t * slope or t < 1e-10:
            break
        t *= 0.5
    converged = f - f_new <= 64 * np.finfo(float).eps * max(abs(f), abs(f_new), 1.0)
    return w + t * step, f_new, g_new, converged


def _minimize_newton(w: np.ndarray, X: LinearRows, y: np.ndarray, sw: np.ndarray, l2: float | np.ndarray,
                     max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """Newton's method with a backtracking line search, stopped as L-BFGS-B stops: when no
    gradient component exceeds ``tol``, or when a step no longer lowers the objective."""
    f, g = _loss_gradient(w, X, y, sw, l2)
    it = 0
    while it < max_iter and np.abs(g).max() > tol:
        it += 1
        w, f, g, converged = _newton_update(w, f, g, X, y, sw, l2, _Factor(_hessian(w, X, sw, l2), l2))
        if converged:
            break
    return w, it


def fit_logistic(X: LinearRows, y: np.ndarray, sample_weight: np.ndarray, estimator: LogisticRegression,
                 init: np.ndarray | None = None, precision: np.ndarray | None = None) -> LogisticRegression:
    """Fit ``estimator`` (an unfitted binary LogisticRegression with an L2 penalty) on ``X``:
    scikit-learn's objective (C multiplies the summed weighted log loss), minimised by
    Newton's method with the Hessian solved by Cholesky, as its "newton-cholesky" solver
    does, from zero or from ``init`` (coefficients then intercept), within its max_iter
    and tol. On these rows a Newton step costs a few gradients, and a few steps reach
    the optimum where L-BFGS took hundreds of gradients.

    ``precision``: one prior precision per coefficient instead of scikit-learn's 1 / C for
    every one (the penalty is then sum(precision * coef^2) / 2 next to the summed weighted
    log loss; ``estimator.C`` is not used)."""
    y = np.asarray(y, dtype=np.float64)
    sw = np.asarray(sample_weight, dtype=np.float64)
    total = float(sw.sum())
    w0 = np.zeros(X.shape[1] + 1) if init is None else np.asarray(init, dtype=np.float64).copy()
    l2 = 1.0 / (estimator.C * total) if precision is None else np.asarray(precision, dtype=np.float64) / total
    w, it = _minimize_newton(w0, X, y, sw / total, l2, estimator.max_iter, estimator.tol)
    return _fitted(estimator, w, X.shape[1], it)


def _fitted(estimator: LogisticRegression, w: np.ndarray, n_features: int, n_iter: int) -> LogisticRegression:
    estimator.coef_ = w[None, :-1].copy()
    estimator.intercept_ = w[-1:].copy()
    estimator.classes_ = np.array([0, 1])
    estimator.n_features_in_ = n_features
    estimator.n_iter_ = np.array([n_iter], dtype=np.int32)
    return estimator


MIN_PRECISION, MAX_PRECISION = 1e-4, 1e8
NEGLIGIBLE_PRECISION = 1e3  # a prior sd of 0.03 on the logit


def fit_logistic_evidence(X: LinearRows, y: np.ndarray, sample_weight: np.ndarray, estimator: LogisticRegression,
                          groups: np.ndarray, init: np.ndarray | None = None, max_rounds: int = 12,
                          rtol: float = 0.1) -> tuple[LogisticRegression, np.ndarray]:
    """The logistic regression with one Gaussian prior per block of columns, each block's
    precision estimated from the data (empirical Bayes): returns the fitted estimator and
    the precision of each coefficient.

    A block is, for example, every role x banner weight. A cross's weights are deviations
    from its parents (the banner's own weight, the role x category weight), so a block
    whose deviations the data do not support gets a large precision and its weights
    shrink to the parents, while a block the data pin down keeps its weights. The
    precisions maximise the evidence (the marginal likelihood, in the Laplace
    approximation) by MacKay's fixed point: alpha_g = gamma_g / |w_g|^2, where gamma_g =
    sum over the block of (1 - alpha_g [H^-1]_jj) counts the weights the data determine;
    each round refits the weights from the last round's (warm start).

    ``groups``: each coefficient's block (0..G-1); ``estimator.C`` gives the first round's
    precision, 1 / C for every block."""
    y = np.asarray(y, dtype=np.float64)
    sw = np.asarray(sample_weight, dtype=np.float64)
    total = float(sw.sum())
    groups = np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    alpha = np.full(n_groups, 1.0 / estimator.C)
    w = np.zeros(X.shape[1] + 1) if init is None else np.asarray(init, dtype=np.float64).copy()
    swn = sw / total
    it = 0
    for _round in range(max_rounds):
        # one Newton step per round, the precisions updated from the same factorisation:
        # the weights and the precisions converge together
        precision = alpha[groups]
        l2 = precision / total
        f, g = _loss_gradient(w, X, y, swn, l2)
        factor = _Factor(_hessian(w, X, swn, l2), l2)
        w, f, g, _converged = _newton_update(w, f, g, X, y, swn, l2, factor)
        it += 1
        variance = factor.inverse_diagonal()[:-1] / total  # of the summed (not mean) objective
        active = np.isin(np.arange(len(variance)), factor.active)  # columns no fitted row has carry no evidence
        determined = np.bincount(groups, weights=np.where(active, 1.0 - precision * variance, 0.0), minlength=n_groups)
        size = np.bincount(groups, weights=np.where(active, w[:-1] ** 2, 0.0), minlength=n_groups)
        new = np.where(size > 0, np.maximum(determined, 0.0) / np.maximum(size, 1e-300), MAX_PRECISION)
        new = np.clip(new, MIN_PRECISION, MAX_PRECISION)
        # a block whose prior sd fell under ~0.03 no longer moves a score: MacKay's fixed
        # point takes many rounds to drive it to zero, and those rounds change nothing
        moving = (np.abs(np.log(new) - np.log(alpha)) >= rtol) & (np.minimum(new, alpha) < NEGLIGIBLE_PRECISION)
        alpha = new
        if not moving.any():
            break
    precision = alpha[groups]
    w, steps = _minimize_newton(w, X, y, sw / total, precision / total, estimator.max_iter, estimator.tol)
    return _fitted(estimator, w, X.shape[1], it + steps), precision
