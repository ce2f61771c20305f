"""The quality ceiling of personalisation from logs: what a ranker could reach that knew
the whole population part of the ground truth, and inferred each person's hidden taste
from their own logged views and clicks as well as it can be inferred.

The hidden part of the click model is z_c = interest[c] + tendency for each category c,
with normal priors. For each person this computes the posterior of every z_c given their
impressions in a window (exact likelihood of each click and non-click at its position,
with the true population logit and history effects), on a grid, with the shared tendency
integrated out; a candidate's value is then the posterior mean of its attractiveness.
Ranking by it is the Bayes-optimal use of the logged evidence, so no model trained on the
same window can capture much more of the oracle's gain. Two approximations keep it
cheap and both favour the model slightly: the grid (steps of 0.1), and the posterior uses
the window before the evaluated day only (a model also sees the person's earlier loads of
the same day).

For benchmarks only: it reads the ground truth.
"""
from __future__ import annotations

import numpy as np

from .groundtruth import GroundTruth, sigmoid

STEP = 0.1


def _grids(truth: GroundTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s_i = max(float(truth.interest.std()), 1e-3)
    s_t = max(float(truth.tendency.std()), 1e-3)
    interest = np.arange(-np.ceil(5 * s_i / STEP), np.ceil(5 * s_i / STEP) + 1) * STEP
    tendency = np.arange(-np.ceil(5 * s_t / STEP), np.ceil(5 * s_t / STEP) + 1) * STEP
    z = np.arange(interest[0] + tendency[0], interest[-1] + tendency[-1] + STEP / 2, STEP)
    return interest, tendency, z


def posterior_attractiveness(truth: GroundTruth, people: np.ndarray, u: np.ndarray, b: np.ndarray,
                             base: np.ndarray, window: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """The posterior mean attractiveness of candidates (person u[i], banner b[i], with the
    known part of the logit ``base[i]``: population and history effects), given each
    person's window impressions ``window`` = (person, banner, position, known logit part,
    clicked). ``people``: every person the candidates name."""
    interest_g, tendency_g, z_g = _grids(truth)
    s_i = max(float(truth.interest.std()), 1e-3)
    s_t = max(float(truth.tendency.std()), 1e-3)
    # prior of z given the tendency: interest = z - t
    prior = np.exp(-0.5 * ((z_g[None, :] - tendency_g[:, None]) / s_i) ** 2)
    prior[np.abs(z_g[None, :] - tendency_g[:, None]) > interest_g[-1] + 1e-9] = 0.0
    prior /= prior.sum(axis=1, keepdims=True)
    log_prior_t = -0.5 * (tendency_g / s_t) ** 2
    nc = truth.interest.shape[1]
    people = np.asarray(people, dtype=np.int64)
    unit_of = np.full(len(truth.staff_ids) * nc, -1, dtype=np.int64)
    units = (people[:, None] * nc + np.arange(nc)[None, :]).ravel()
    unit_of[units] = np.arange(len(units))

    wu, wb, wpos, wbase, wclick = window
    unit = unit_of[wu * nc + truth.banner_cat[wb]]
    keep = unit >= 0
    unit, exam, wbase, wclick = unit[keep], truth.examination(wpos[keep]), wbase[keep], wclick[keep] > 0
    loglik = np.empty((len(units), len(z_g)))
    for j, z in enumerate(z_g):
        p = exam * sigmoid(wbase + z)
        loglik[:, j] = np.bincount(unit, weights=np.where(wclick, np.log(p), np.log1p(-p)), minlength=len(units))
    lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    marginal = lik @ prior.T  # (units, tendency): likelihood of a category's clicks given t
    log_post_t = log_prior_t[None, :] + np.log(np.maximum(marginal, 1e-300)).reshape(len(people), nc, -1).sum(axis=1)
    post_t = np.exp(log_post_t - log_post_t.max(axis=1, keepdims=True))
    post_t /= post_t.sum(axis=1, keepdims=True)
    weight = np.repeat(post_t, nc, axis=0) / np.maximum(marginal, 1e-300)
    post_z = lik * (weight @ prior)
    post_z /= post_z.sum(axis=1, keepdims=True)
    cand_unit = unit_of[np.asarray(u, dtype=np.int64) * nc + truth.banner_cat[b]]
    return np.einsum("ij,ij->i", post_z[cand_unit], sigmoid(np.asarray(base)[:, None] + z_g[None, :]))


def ceiling_scores(held, window_start: float, window_end: float) -> np.ndarray:
    """``posterior_attractiveness`` of every candidate of ``held``
    (simulator.quality.HeldOutRequests), the evidence being its logs' impressions in
    [window_start, window_end)."""
    truth = held.truth
    u_all, b_all, position, ts, clicked = held.events
    w = (ts >= window_start) & (ts < window_end)
    views, clicked_before = held.state.at(u_all[w], b_all[w], ts[w])
    known = truth.observable_logit(u_all[w], b_all[w]) + truth.history_logit(b_all[w], views, clicked_before)
    base = truth.observable_logit(held.u, held.b) + truth.history_logit(held.b, held.views, held.clicked_before)
    return posterior_attractiveness(truth, np.unique(held.u), held.u, held.b, base,
                                    (u_all[w], b_all[w], position[w], known, clicked[w]))
