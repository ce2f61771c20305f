"""A/B arms: a staff member's arm comes from a salted hash of the staff_id.

The hash (sha256 of ``salt + ":" + staff_id``) maps each person to a point in [0, 1); the
arms split [0, 1) by their shares in config order. Same salt and shares, same arm, in
every process, on every restart. Changing the salt reshuffles everyone.
"""
from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    share: float
    epsilon: float = 0.1
    model: str | None = None  # a version pinned by the config; None = what the registry promotes


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
