"""The candidates of a ranking request, remembered per (candidate ids, profile).

Eligibility (docs/data-contracts.md) is a function of the banner, the person's attributes and the
time; between two window bounds of the banners involved, the time does not change the
answer. The service asks the same question for every request of a person with the same
profile and candidate list, so the answer is kept with the span of time it holds for,
and the same list object comes back: the models' per-candidate-list caches key on it.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from features.lru import LRU
from recommender.candidates import Candidates, select_candidates
from recommender.domain import Banner, Catalog


def stable_span(banners: Iterable[Banner], ts: float) -> tuple[float, float]:
    """[from, until): the time around ``ts`` in which no banner's window opens or closes."""
    lo, hi = -math.inf, math.inf
    for b in banners:
        for bound in (b.start, b.end):
            if bound is None:
                continue
            if bound <= ts:
                lo = max(lo, bound)
            else:
                hi = min(hi, bound)
    return lo, hi


def targeted_attributes(catalog: Catalog) -> tuple[str, ...]:
    """The attributes some banner of the catalog targets: the only ones eligibility reads."""
    return tuple(sorted({name for b in catalog for name, allowed in b.target.items() if allowed}))


class CandidateCache:
    """``select_candidates`` with its answers kept, keyed by the candidate ids and the
    values of the attributes the catalog targets (at most ``max_entries``, least recently
    used evicted first)."""

    def __init__(self, max_entries: int = 4096):
        self._entries: LRU[tuple, tuple[Catalog, float, float, Candidates]] = LRU(max_entries)
        self._targeted: tuple[Catalog | None, tuple[str, ...]] = (None, ())

    def get(self, catalog: Catalog, attributes: Mapping[str, str], ts: float,
            ids: Sequence[str] | None) -> Candidates:
        if self._targeted[0] is not catalog:
            self._targeted = (catalog, targeted_attributes(catalog))
        profile = tuple(attributes.get(name) or "" for name in self._targeted[1])
        key = (None if ids is None else tuple(ids), profile)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is catalog and hit[1] <= ts < hit[2]:
            return hit[3]
        found = select_candidates(catalog, attributes, ts, ids)
        involved = catalog if ids is None else (b for b in map(catalog.get, set(ids)) if b is not None)
        lo, hi = stable_span(involved, ts)
        self._entries.put(key, (catalog, lo, hi, found))
        return found
