"""A ramp's schedule and its guardrail: the one rule the service and the season
simulation both follow.

A ramp serves a new arm to a share of the staff that steps up on a schedule (``steps``,
``every_s`` seconds each, the last one held), taking the share from its control arm. It is
judged on the clicks per request of both arms since it began, with the always-valid
interval of (new - control) (recommender.sequential), so it may be looked at as often as
one likes:

- **stopped** when both arms have ``min_requests`` and the interval lies wholly below
  zero: the new arm is surely worse;
- **done** when it has held its last step for a whole step, the new arm has
  ``min_requests``, and it was not stopped: the new arm's model replaces the control's;
- **ramping** otherwise.

A ramp may end on a share of 100%, when its control gets no more requests; that is why
"done" asks for ``min_requests`` of the new arm only.
"""
from __future__ import annotations

from dataclasses import dataclass

from .sequential import ArmOutcome, difference_sequence

RAMPING, STOPPED, DONE = "ramping", "stopped", "done"


def ramp_share(ramp: dict, now: float) -> float:
    """The share a running ramp gives its arm at ``now``."""
    steps = ramp["steps"]
    i = int(max(now - ramp["started"], 0.0) // ramp["every_s"])
    return float(steps[min(i, len(steps) - 1)])


def ramp_finished(ramp: dict, now: float) -> bool:
    """The ramp has held its last step for a whole step."""
    return now - ramp["started"] >= ramp["every_s"] * len(ramp["steps"])


@dataclass(frozen=True)
class RampVerdict:
    status: str  # ramping, stopped or done
    difference: float  # clicks per request, new - control
    low: float  # its always-valid interval
    high: float


def judge_ramp(ramp: dict, new: ArmOutcome, control: ArmOutcome, now: float, alpha: float = 0.05,
               min_requests: int = 500) -> RampVerdict:
    """What a running ramp should do at ``now`` given both arms' outcomes since it began."""
    diff, low, high = difference_sequence(new, control, alpha)
    if min(new.n, control.n) >= min_requests and high < 0:
        return RampVerdict(STOPPED, diff, low, high)
    if ramp_finished(ramp, now) and new.n >= min_requests:
        return RampVerdict(DONE, diff, low, high)
    return RampVerdict(RAMPING, diff, low, high)
