"""A/B arms: a staff member's arm comes from a salted hash of the staff_id.

The hash (sha256 of ``salt + ":" + staff_id``) maps each person to a point in [0, 1); the
arms split [0, 1) by their shares in config order. Same salt and shares, same arm, in
every process, on every restart. Changing the salt reshuffles everyone.

The shares are the config's until they are changed live (``recommender arms set``,
``PUT /v1/admin/arms``: kept in the model registry), and a ramp steps a new arm's share up
on a schedule, taking it from its control arm. Since the arms split [0, 1) in config
order, a person moves only between the two arms whose boundary moves: raising the new
arm's share from 10% to 50% keeps the first 10% where they were.
"""
from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass

from recommender.exploration import EPSILON_GREEDY, Exploration
from recommender.ramps import ramp_share


@dataclass(frozen=True)
class Arm:
    name: str
    share: float
    epsilon: float = 0.1
    model: str | None = None  # a version pinned by the config; None = what the registry promotes
    exploration: str = EPSILON_GREEDY  # or "boltzmann" (recommender.exploration.Exploration)
    temperature: float = 1.0  # Boltzmann's, in units of the request's score spread
    depth: int = 3  # Boltzmann tries the drawn banner at one of the first `depth` unpinned places

    @property
    def explorer(self) -> Exploration:
        """The arm's exploration policy, as its Ranker serves it."""
        return Exploration(self.exploration, self.epsilon, self.temperature, self.depth)


def unit_hash(salt: str, staff_id: str) -> float:
    h = hashlib.sha256(f"{salt}:{staff_id}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


class ArmAssigner:
    def __init__(self, arms: list[Arm], salt: str):
        if not arms:
            raise ValueError("at least one arm is needed")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate arm names in {names}")
        if any(a.share < 0 for a in arms):
            raise ValueError("arm shares must be >= 0")
        total = sum(a.share for a in arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm shares must add up to 1, they add up to {total:g}")
        self.arms = list(arms)
        self.salt = salt
        bounds, acc = [], 0.0
        for a in arms[:-1]:
            acc += a.share
            bounds.append(acc)
        self._bounds = bounds

    def assign(self, staff_id: str) -> str:
        if not self._bounds:  # one arm: the hash decides nothing
            return self.arms[0].name
        return self.arms[bisect_right(self._bounds, unit_hash(self.salt, staff_id))].name


def effective_shares(arms: list[Arm], state: dict, now: float) -> dict[str, float]:
    """Each arm's traffic share now: the config's, replaced by the registry's live shares
    when set, then by a running ramp (the new arm at its step, taken from its control;
    a stopped ramp gives the control the new arm's traffic back)."""
    shares = {a.name: a.share for a in arms}
    live = {k: float(v) for k, v in (state.get("shares") or {}).items() if k in shares}
    if live and abs(sum(live.values()) - 1.0) < 1e-6:
        shares = {name: live.get(name, 0.0) for name in shares}
    ramp = state.get("ramp") or {}
    arm, control = ramp.get("arm"), ramp.get("control")
    if arm in shares and control in shares:
        available = 1.0 - sum(v for k, v in shares.items() if k not in (arm, control))
        if ramp.get("status") == "ramping":
            shares[arm] = min(ramp_share(ramp, now), available)
            shares[control] = available - shares[arm]
        elif ramp.get("status") == "stopped":
            shares[arm], shares[control] = 0.0, available
    return shares
