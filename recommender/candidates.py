"""Which banners a request ranks: its own list, or the banners eligible at its time.

``select_candidates`` answers one request (the service); ``build_candidate_table`` many at
once, as flat (request, banner) rows (batch ranking, training's validation, the
simulator). Both apply the eligibility rules (recommender.eligibility) to the banners the
catalog knows. The service ranks a listed id that the catalog does not hold as a
cold-start banner (recommender.domain.cold_start_banner); training and evaluation do the
same through a catalog extended with the ids their logs name (``cold_start_catalog``).
A cold-start banner is a candidate only of a request that names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .domain import Banner, Catalog, cold_start_banner
from .eligibility import eligible_banners, is_eligible
from .ordering import greedy_places
from .ranker import CandidateSet

COLD_START = "ranked as cold-start banners (unknown category, no tags, target or window), as the service ranks them"


class Candidates(CandidateSet):
    """One request's candidates, in order, and what the service needs of them."""

    def __init__(self, banners: Sequence[Banner], n_unknown: int):
        super().__init__(banners)
        self.n_unknown = n_unknown  # ids the catalog does not know, ranked with cold-start defaults
        self.category = {b.banner_id: b.category for b in self.banners}


def select_candidates(catalog: Catalog, attributes: Mapping[str, str], ts: float,
                      ids: Sequence[str] | None) -> Candidates:
    """The request's own list (eligibility applied to known banners; unknown ids kept with
    cold-start defaults; repeats dropped), else every eligible banner of the catalog."""
    if ids is None:
        return Candidates(eligible_banners(catalog.known, attributes, ts), 0)
    out, seen, unknown = [], set(), 0
    for bid in ids:
        if bid in seen:
            continue
        seen.add(bid)
        b = catalog.get(bid) if catalog.knows(bid) else None
        if b is None:
            out.append(cold_start_banner(bid))
            unknown += 1
        elif is_eligible(b, attributes, ts):
            out.append(b)
    return Candidates(out, unknown)


@dataclass
class CandidateTable:
    """The candidates of many requests as flat rows, grouped by request in request order."""

    request: np.ndarray  # request index per row
    banner: np.ndarray  # catalog index per row
    ts: np.ndarray  # request time per row
    person: np.ndarray  # person index per row (into the caller's people list)

    def __len__(self) -> int:
        return len(self.request)


def build_candidate_table(catalog: Catalog, profiles: Sequence[Mapping[str, str]], person: np.ndarray,
                          ts: np.ndarray, explicit: Mapping[int, Sequence[str]] | None = None) -> CandidateTable:
    """Rows (request, candidate) for requests i = 0..n-1 made by person[i] at ts[i].

    Explicit candidate lists keep the banners of the catalog (cold-start ones included)
    that are eligible; without a list, a request's candidates are the eligible banners the
    catalog itself holds."""
    explicit = explicit or {}
    req, ban = [], []
    banners = catalog.banners
    for i in range(len(ts)):
        prof = profiles[person[i]]
        t = float(ts[i])
        if i in explicit:
            idx = [catalog.index[b] for b in explicit[i] if b in catalog.index]
            idx = [j for j in idx if is_eligible(banners[j], prof, t)]
        else:
            idx = [j for j, b in enumerate(catalog.known) if is_eligible(b, prof, t)]
        req.extend([i] * len(idx))
        ban.extend(idx)
    req_a = np.asarray(req, dtype=np.int64)
    return CandidateTable(req_a, np.asarray(ban, dtype=np.int64), np.asarray(ts, dtype=np.float64)[req_a],
                          np.asarray(person)[req_a])


def greedy_positions(table: CandidateTable, score: np.ndarray, catalog: Catalog) -> np.ndarray:
    """1-based position of each row in its request's greedy order (recommender.ordering)."""
    pinned = np.array([b.pinned for b in catalog.banners], dtype=bool)[table.banner]
    priority = np.array([b.priority for b in catalog.banners], dtype=np.float64)[table.banner]
    return greedy_places(table.request, score, pinned, priority, table.banner) + 1


def cold_start_catalog(catalog: Catalog, logs: Iterable) -> Catalog:
    """``catalog`` with a cold-start banner for each id that ``logs`` (ImpressionLogs) name
    and it does not hold: training and evaluation rank those as the service does."""
    return catalog.with_cold_start(b for log in logs for b in log.outside_catalog(catalog)[0])
