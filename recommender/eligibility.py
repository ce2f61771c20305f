"""Which banners are candidates for a staff member at a time (docs/data-contracts.md).

A banner is a candidate when the time is inside its window (start inclusive, end
exclusive; a null bound is open) and the staff member matches every non-empty target
list. The answer keeps the catalog's order but does not depend on it otherwise.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from .domain import Banner


def in_window(banner: Banner, ts: float) -> bool:
    if banner.start is not None and ts < banner.start:
        return False
    if banner.end is not None and ts >= banner.end:
        return False
    return True


def matches_target(banner: Banner, attributes: Mapping[str, str]) -> bool:
    for name, allowed in banner.target.items():
        if allowed and (attributes.get(name) or "") not in allowed:
            return False
    return True


def is_eligible(banner: Banner, attributes: Mapping[str, str], ts: float) -> bool:
    return in_window(banner, ts) and matches_target(banner, attributes)


def eligible_banners(banners: Iterable[Banner], attributes: Mapping[str, str], ts: float) -> list[Banner]:
    """The candidate banners for a staff member with these attributes at time ``ts``."""
    return [b for b in banners if is_eligible(b, attributes, ts)]
