"""Each person's interest in a category, shrunk towards the population by their evidence.

A person's clicks C in a category are compared with the clicks m that the population's
rate would give for the same views (m = the category's click rate x the person's views).
Under the Poisson-gamma model, C ~ Poisson(lambda * m) with a personal factor
lambda ~ Gamma(k, k) (mean 1), the posterior mean of lambda is (C + k) / (m + k): a
person with no views reads as the population (1), and their own ratio C / m takes over
as their expected clicks m grow past k. The interest features are the logarithms of such
posterior means (features.kernel), so a linear model adds them to the population's logit.

``k`` (how many expected clicks of evidence weigh as much as the prior) is estimated from
the training log by the method of moments, not set by hand: Var(C) = m + m^2 / k, so
1 / k = sum((C - m)^2 - C) / sum(m^2) over every person and category.
"""
from __future__ import annotations

import numpy as np

# the bounds of k: a log without spread between people (1/k <= 0) reads as "no personal
# interest": a strong prior; one with very few views cannot support a k below the floor
MIN_PRIOR, MAX_PRIOR = 0.05, 100.0


def category_counts(category: np.ndarray, clicked: np.ndarray, n_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Each category's clicks and views (index = category code), from impression rows."""
    category = np.asarray(category, dtype=np.int64)
    views = np.bincount(category, minlength=n_categories)[:n_categories]
    clicks = np.bincount(category, weights=np.asarray(clicked, dtype=np.float64), minlength=n_categories)[:n_categories]
    return clicks, views


def interest_prior(clicks: np.ndarray, expected: np.ndarray) -> float:
    """The method-of-moments estimate of the gamma prior's k from each unit's clicks and
    expected clicks (one unit = one person and category), clipped to [MIN_PRIOR, MAX_PRIOR]."""
    clicks = np.asarray(clicks, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    denominator = float(np.sum(expected ** 2))
    if denominator <= 0:
        return MAX_PRIOR
    inverse = float(np.sum((clicks - expected) ** 2 - clicks)) / denominator
    if inverse <= 1.0 / MAX_PRIOR:
        return MAX_PRIOR
    return float(min(max(1.0 / inverse, MIN_PRIOR), MAX_PRIOR))


def interest_units(person: np.ndarray, category: np.ndarray, clicked: np.ndarray,
                   rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clicks and expected clicks of each (person, category) that has views, from
    impression rows (person code, category code, clicked) and the category ``rates``."""
    person = np.asarray(person, dtype=np.int64)
    category = np.asarray(category, dtype=np.int64)
    n_cat = len(rates)
    unit, inverse = np.unique(person * n_cat + category, return_inverse=True)
    views = np.bincount(inverse, minlength=len(unit))
    clicks = np.bincount(inverse, weights=np.asarray(clicked, dtype=np.float64), minlength=len(unit))
    return clicks, views * rates[unit % n_cat]
