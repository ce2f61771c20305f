"""Always-valid (time-uniform) confidence intervals for online A/B comparisons.

A ramp that watches a new arm's clicks per request against the control's looks at the
numbers again and again; a fixed-sample 95% interval looked at a thousand times would
cross zero by chance far more than 5% of the time. A confidence sequence holds at every
look at once: with probability at least 1 - alpha, the true value is inside the interval
at all times.

Each arm's mean gets the normal-mixture boundary (Robbins; Howard et al., 2021): with S_n
the sum of n centred outcomes and V = n * variance, |S_n| <= sqrt((V + rho) * (log(1 +
V / rho) + 2 log(1 / a))) for all n at once with probability 1 - a; the variance is the
running sample variance (the asymptotic confidence sequence of Waudby-Smith et al.,
2024). The difference of two arms takes each arm's sequence at alpha / 2 (a union
bound), so it holds however the arms' sizes grow, ramp steps included.

>>> lo, hi = mean_sequence(n=10_000, mean=0.20, variance=0.16, alpha=0.05)
>>> round(lo, 3), round(hi, 3)
(0.188, 0.212)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TUNED_FOR = 2_000  # the number of outcomes the boundary is tightest at


def mean_sequence(n: int, mean: float, variance: float, alpha: float = 0.05,
                  tuned_for: int = DEFAULT_TUNED_FOR) -> tuple[float, float]:
    """The always-valid interval of a mean after ``n`` outcomes (infinite when n = 0)."""
    if n <= 0:
        return -math.inf, math.inf
    variance = max(variance, 1e-12)
    rho = variance * tuned_for
    v = n * variance
    radius = math.sqrt((v + rho) * (math.log(1 + v / rho) + 2 * math.log(1 / alpha))) / n
    return mean - radius, mean + radius


@dataclass(frozen=True)
class ArmOutcome:
    """Clicks per request of one arm: requests, mean and sample variance."""

    n: int
    mean: float
    variance: float

    @classmethod
    def from_counts(cls, clicks_per_request: dict[int, int]) -> "ArmOutcome":
        """From {clicks in a request: number of requests}."""
        n = sum(clicks_per_request.values())
        if n == 0:
            return cls(0, 0.0, 0.0)
        mean = sum(k * c for k, c in clicks_per_request.items()) / n
        var = sum(c * (k - mean) ** 2 for k, c in clicks_per_request.items()) / max(n - 1, 1)
        return cls(n, mean, var)


def difference_sequence(new: ArmOutcome, control: ArmOutcome, alpha: float = 0.05) -> tuple[float, float, float]:
    """(difference of means, its always-valid low, high): new minus control."""
    lo_n, hi_n = mean_sequence(new.n, new.mean, new.variance, alpha / 2)
    lo_c, hi_c = mean_sequence(control.n, control.mean, control.variance, alpha / 2)
    return new.mean - control.mean, lo_n - hi_c, hi_n - lo_c
