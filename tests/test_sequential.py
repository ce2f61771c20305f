"""The always-valid intervals of online A/B comparisons (recommender.sequential)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.sequential import ArmOutcome, difference_sequence, mean_sequence


def test_equal_arms_are_rarely_called_different_however_often_one_looks():
    """200 pairs of equal arms (a 10% click per request), looked at every 100 requests up
    to 20,000 each: the sequence excludes 0 at some look in at most alpha of them (a
    fixed-sample interval looked at 200 times would, in about half)."""
    rng = np.random.default_rng(7)
    looks = np.arange(100, 20_001, 100)
    false_alarms = 0
    for _ in range(200):
        a = np.cumsum(rng.random(20_000) < 0.1)
        b = np.cumsum(rng.random(20_000) < 0.1)
        for n in looks:
            ma, mb = a[n - 1] / n, b[n - 1] / n
            _, lo, hi = difference_sequence(ArmOutcome(n, mb, mb * (1 - mb)), ArmOutcome(n, ma, ma * (1 - ma)))
            if lo > 0 or hi < 0:
                false_alarms += 1
                break
    assert false_alarms <= 0.05 * 200, false_alarms


def test_a_worse_arm_is_found_worse():
    rng = np.random.default_rng(3)
    n = 20_000
    a, b = rng.random(n) < 0.12, rng.random(n) < 0.08
    diff, lo, hi = difference_sequence(ArmOutcome(n, b.mean(), b.var(ddof=1)), ArmOutcome(n, a.mean(), a.var(ddof=1)))
    assert hi < 0 and lo < diff < hi


@settings(max_examples=200)
@given(st.integers(1, 10**7), st.floats(0, 5), st.floats(0, 4), st.floats(0.001, 0.5))
def test_the_interval_holds_the_mean_and_narrows_with_more_outcomes(n, mean, variance, alpha):
    lo, hi = mean_sequence(n, mean, variance, alpha)
    lo4, hi4 = mean_sequence(4 * n, mean, variance, alpha)
    assert lo <= mean <= hi and hi4 - lo4 <= hi - lo + 1e-12


def test_counts_of_clicks_per_request_give_the_mean_and_variance():
    arm = ArmOutcome.from_counts({0: 8, 1: 1, 2: 1})
    assert arm.n == 10 and arm.mean == 0.3 and abs(arm.variance - np.var([0] * 8 + [1, 2], ddof=1)) < 1e-12
    assert ArmOutcome.from_counts({}).n == 0
