"""The candidates of a ranking request, remembered per (candidate ids, profile).

Eligibility (DESIGN.md) is a function of the banner, the person's attributes and the
time; between two window bounds of the banners involved, the time does not change the
answer. The service asks the same question for every request of a person with the same
profile and candidate list, so the answer is kept with the span of time it holds for,
and the same list object comes back: the models' per-candidate-list caches key on it.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from features.lru import LRU

from recommender.domain import UNKNOWN, Banner, Catalog
from recommender.eligibility import eligible_banners, is_eligible
from recommender.ranker import CandidateSet


class Candidates(CandidateSet):
    """One request's candidates, in order, and what the engine needs of them."""

    def __init__(self, banners: Sequence[Banner], n_unknown: int):
        super().__init__(banners)
        self.n_unknown = n_unknown  # ids the catalog does not know, ranked with cold-start defaults
        self.category = {b.banner_id: b.category for b in self.banners}


def select_candidates(catalog: Catalog, attributes: Mapping[str, str], ts: float,
                      ids: Sequence[str] | None) -> Candidates:
    """The request's own list (eligibility applied to known banners; unknown ids kept with
    cold-start defaults; repeats dropped), else every eligible banner of the catalog."""
    if ids is None:
        return Candidates(eligible_banners(catalog, attributes, ts), 0)
    out, seen, unknown = [], set(), 0
    for bid in ids:
        if bid in seen:
            continue
        seen.add(bid)
        b = catalog.get(bid)
        if b is None:
            out.append(Banner(bid, UNKNOWN))
            unknown += 1
        elif is_eligible(b, attributes, ts):
            out.append(b)
    return Candidates(out, unknown)


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
