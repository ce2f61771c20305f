"""Watching a ramp: a new arm's online clicks per request against its control's.

While a ramp runs (training.registry.start_ramp: the new arm's share steps up on a
schedule), one process at a time (the one holding ``ramp-monitor.lock`` in the model
registry) reads from the event store the clicks per request of both arms since the ramp
began, and compares them with an always-valid interval (recommender.sequential): it can
look every minute without the false alarms a fixed-sample test would raise. When the
interval of (new - control) lies wholly below zero, the ramp stops and the control gets
the new arm's traffic back; when the new arm has held the last step for a whole step
without that (and has had ``min_requests`` requests), the ramp is done: the new arm's
model becomes the control's, and the control serves everyone the two arms served. The
rule itself is recommender.ramps.judge_ramp.
"""
from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import asdict, dataclass

from recommender.ramps import DONE, STOPPED, judge_ramp
from recommender.sequential import ArmOutcome, difference_sequence
from recommender.store import EventStore
from training.registry import ModelRegistry

from .arms import Arm, effective_shares

log = logging.getLogger("service.ramp")
MONITOR_LOCK = "ramp-monitor.lock"


@dataclass
class RampStatus:
    arm: str
    control: str
    status: str  # ramping, stopped, done, ended
    reason: str
    share: float  # the new arm's share now
    new_requests: int
    new_clicks_per_request: float
    control_requests: int
    control_clicks_per_request: float
    difference: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)


def arm_outcomes(store: EventStore, ramp: dict) -> tuple[ArmOutcome, ArmOutcome]:
    """The new arm's and the control's clicks per request since the ramp began."""
    counts = store.clicks_per_request(ramp["started"])
    return (ArmOutcome.from_counts(counts.get(ramp["arm"], {})),
            ArmOutcome.from_counts(counts.get(ramp["control"], {})))


def ramp_status(store: EventStore, state: dict, arms: list[Arm], now: float, alpha: float = 0.05,
                outcomes: tuple[ArmOutcome, ArmOutcome] | None = None) -> RampStatus | None:
    """The last ramp of the registry state and how its arms compare since it began
    (``outcomes``: the arms' outcomes when already read)."""
    ramp = state.get("ramp")
    if not ramp:
        return None
    new, control = outcomes or arm_outcomes(store, ramp)
    diff, lo, hi = difference_sequence(new, control, alpha)
    shares = effective_shares(arms, state, now)
    return RampStatus(ramp["arm"], ramp["control"], ramp.get("status", ""), ramp.get("reason", ""),
                      shares.get(ramp["arm"], 0.0), new.n, new.mean, control.n, control.mean, diff, lo, hi)


class RampMonitor:
    def __init__(self, store: EventStore, registry: ModelRegistry, arms: list[Arm], alpha: float = 0.05,
                 min_requests: int = 500):
        self.store = store
        self.registry = registry
        self.arms = list(arms)
        self.alpha = alpha
        self.min_requests = min_requests
        self.last: RampStatus | None = None
        self._lock_file = None

    def _is_monitor(self) -> bool:
        """Whether this process watches the ramp: the first to lock the file keeps it."""
        if self._lock_file is None:
            self.registry.root.mkdir(parents=True, exist_ok=True)
            f = open(self.registry.root / MONITOR_LOCK, "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return False
            self._lock_file = f
            log.info("process %d watches the ramps", os.getpid())
        return True

    def check(self, now: float) -> RampStatus | None:
        """Stop a losing ramp, finish a ramp that held its last step; the status either way."""
        state = self.registry.state()
        ramp = state.get("ramp")
        if not ramp or ramp.get("status") != "ramping" or not self._is_monitor():
            self.last = ramp_status(self.store, state, self.arms, now, self.alpha) if ramp else None
            return self.last
        new, control = arm_outcomes(self.store, ramp)
        verdict = judge_ramp(ramp, new, control, now, self.alpha, self.min_requests)
        status = ramp_status(self.store, state, self.arms, now, self.alpha, (new, control))
        if verdict.status == STOPPED:
            reason = (f"arm {status.arm} got {status.new_clicks_per_request:.4f} clicks per request against "
                      f"{status.control_clicks_per_request:.4f} for {status.control}: difference "
                      f"{status.difference:+.4f}, always-valid {1 - self.alpha:.0%} interval "
                      f"[{status.low:+.4f}, {status.high:+.4f}] after {status.new_requests:,} and "
                      f"{status.control_requests:,} requests")
            self.registry.end_ramp("stopped", reason)
            log.warning("ramp stopped: %s", reason)
        elif verdict.status == DONE:
            version = state["arms"].get(status.arm)
            shares = effective_shares(self.arms, state, now)
            shares[status.control] += shares[status.arm]
            shares[status.arm] = 0.0
            reason = (f"arm {status.arm} held its last step without falling behind: its model {version} now "
                      f"serves arm {status.control}")
            self.registry.end_ramp("done", reason, shares=shares,
                                   promote=(version, status.control) if version else None)
            log.info("ramp done: %s", reason)
        self.last = ramp_status(self.store, self.registry.state(), self.arms, now, self.alpha, (new, control))
        return self.last
