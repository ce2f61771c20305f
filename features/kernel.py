"""The feature kernel: from a row's history counters to its numeric features and, for a
linear model, to its score, compiled (numba) and shared by every caller.

``numeric_rows`` fills the numeric features of many rows (training, batch ranking, tree
models); ``score_person`` gathers one person's counters (features.counters), computes the
same numeric features per candidate and takes the linear model's dot product, in one call
(the service's request). Both call ``_numeric_row``: one definition of the features.

Per-banner inputs come as rows of ``BANNER_INPUTS`` (start, targeted, the category's click
rate) and the scalar parameters as ``PARAMS`` (base rate, prior strength of
the smoothed rates, the interest prior k of features.interest), so that a new input is a
column, not a new argument of every caller.

Compiled code is cached on disk (numba's ``cache=True``: next to this file when it is
writable, else in the user's cache folder; ``NUMBA_CACHE_DIR`` moves it), so a server
start or a test run compiles only once per machine.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .counters import N_HIST, gather_person

DAY = 86400.0
N_NUMERIC = 22
# the numeric features of encoders fitted before the interest features: an old model
# reads the first N_NUMERIC_V1 columns
N_NUMERIC_V1 = 18
# columns of a banner-input row, and positions in the parameter vector
BANNER_INPUTS = ("start", "targeted", "category_rate")
_START, _TARGETED, _CAT_RATE = range(len(BANNER_INPUTS))
PARAMS = ("base_rate", "prior_strength", "interest_prior")
_BASE_RATE, _STRENGTH, _PRIOR = range(len(PARAMS))
# columns of a history row (features.counters.HIST_FIELDS)
_VB, _CB, _EVER_CLICKED, _EVER_VB, _VC, _EVER_VC, _EVER_CC, _CC, _VP, _CP, _HOURS, _GV, _GC = range(N_HIST)


@njit(cache=True, inline="always")
def _logit(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p) - math.log1p(-p)


@njit(cache=True, inline="always")
def _rate(clicks, views, base_rate, strength):
    return _logit((clicks + strength * base_rate) / (views + strength))


@njit(cache=True, inline="always")
def _log1p(x):
    return 0.0 if x == 0.0 else math.log1p(x)  # most counters of a request are 0


@njit(cache=True, inline="always")
def _interest(clicks, expected, prior):
    """log of the posterior mean of a personal click-rate factor (features.interest)."""
    return math.log((clicks + prior) / (expected + prior))


@njit(cache=True, inline="always")
def _person_features(h, params, out):
    """The features that only depend on the person (the same for all their candidates)."""
    base_rate, strength = params[_BASE_RATE], params[_STRENGTH]
    out[8] = _rate(h[_CP], h[_VP], base_rate, strength)
    never = math.isnan(h[_HOURS])
    out[10] = 0.0 if never else _log1p(h[_HOURS])
    out[11] = 1.0 if never else 0.0
    out[19] = _interest(h[_CP], base_rate * h[_VP], params[_PRIOR])


@njit(cache=True, inline="always")
def _category_features(h, b, params, out):
    """The features that depend on the person and the banner's category."""
    base_rate, strength, prior = params[_BASE_RATE], params[_STRENGTH], params[_PRIOR]
    out[5] = _log1p(h[_CC])
    out[6] = _log1p(h[_VC])
    out[7] = _rate(h[_CC], h[_VC], base_rate, strength)
    out[13] = _log1p(h[_EVER_CC])
    out[14] = _log1p(h[_EVER_VC])
    out[15] = _rate(h[_EVER_CC], h[_EVER_VC], base_rate, strength) - _logit(base_rate)
    rate = b[_CAT_RATE]
    out[18] = _interest(h[_CC], rate * h[_VC], prior)
    out[21] = _interest(h[_EVER_CC], rate * h[_EVER_VC], prior)


@njit(cache=True, inline="always")
def _banner_features(h, ts, b, params, out):
    """The features of the person and the banner itself, and the banner's popularity."""
    base_rate, strength = params[_BASE_RATE], params[_STRENGTH]
    start = b[_START]
    age = ts - start  # nan when the banner is open-ended: 0 days
    out[0] = _log1p(max(age, 0.0) / DAY) if not math.isnan(age) else 0.0
    out[1] = 1.0 if math.isnan(start) else 0.0
    out[2] = b[_TARGETED]
    out[3] = _log1p(h[_VB])
    out[4] = h[_EVER_CLICKED]
    out[12] = _log1p(h[_EVER_VB])
    out[16] = _rate(h[_GC], h[_GV], base_rate, strength)
    out[17] = _log1p(h[_GV])


@njit(cache=True, inline="always")
def _combined(out):
    """The features that combine the others."""
    out[9] = out[7] - out[8]
    out[20] = out[18] - out[19]


@njit(cache=True)
def _numeric_row(h, ts, b, params, out):
    """The NUMERIC_FEATURES (features.definition) of one row, from its history row ``h``
    and its banner's inputs ``b``."""
    _person_features(h, params, out)
    _category_features(h, b, params, out)
    _banner_features(h, ts, b, params, out)
    _combined(out)


@njit(cache=True)
def numeric_rows(hist, ts, banner_inputs, params, out):
    """``_numeric_row`` of every row: hist (n, N_HIST), banner_inputs (n, BANNER_INPUTS),
    out (n, N_NUMERIC)."""
    for i in range(hist.shape[0]):
        _numeric_row(hist[i], ts[i], banner_inputs[i], params, out[i])


@njit(cache=True)
def score_person(base, base_tref, delta, delta_tref, tau, p, bcodes, ccodes, ts, banner_inputs, params,
                 weight, completion_weight, static, out):
    """A linear model's logit of one person's candidates at ``ts``: ``static`` (the
    one-hot part, cached per profile and list) + numeric features . ``weight`` +
    the completion column's weight when the person already clicked the banner.

    The features are ``_numeric_row``'s, computed by its parts: the person's once, each
    category's once per request, the banner's per candidate."""
    n = bcodes.shape[0]
    hist = np.empty((n, N_HIST))
    gather_person(base, base_tref, delta, delta_tref, tau, p, bcodes, ccodes, ts, hist)
    rows = np.empty((n, N_NUMERIC))
    for i in range(n):
        row = rows[i]
        if i == 0:
            _person_features(hist[0], params, row)
        else:
            for j in (8, 10, 11, 19):
                row[j] = rows[0, j]
        same = -1
        for k in range(i):
            if ccodes[k] == ccodes[i]:
                same = k
                break
        if same < 0:
            _category_features(hist[i], banner_inputs[i], params, row)
        else:
            for j in (5, 6, 7, 13, 14, 15, 18, 21):
                row[j] = rows[same, j]
        _banner_features(hist[i], ts, banner_inputs[i], params, row)
        _combined(row)
        z = static[i] + completion_weight[i] * hist[i, _EVER_CLICKED]
        for j in range(N_NUMERIC):
            z += row[j] * weight[j]
        out[i] = z
