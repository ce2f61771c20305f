"""Candidate sets for many requests at once, and greedy rankings of them.

Candidates are a request's explicit list when it has one, else the banners eligible at
its time (recommender.eligibility). Greedy order follows the Ranker's rule: pinned first
(higher priority first), then score descending, ties by priority then catalog order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from recommender.domain import Catalog
from recommender.eligibility import is_eligible


@dataclass
class CandidateSet:
    request: np.ndarray  # request index per row (rows grouped by request, in request order)
    banner: np.ndarray  # catalog index per row
    ts: np.ndarray  # request time per row
    person: np.ndarray  # person index per row (into the caller's people list)

    def __len__(self) -> int:
        return len(self.request)


def build_candidates(catalog: Catalog, profiles: Sequence[Mapping[str, str]], person: np.ndarray, ts: np.ndarray,
                     explicit: Mapping[int, Sequence[str]] | None = None) -> CandidateSet:
    """Rows (request, candidate) for requests i = 0..n-1 made by person[i] at ts[i].

    Explicit candidate lists keep only the banners the catalog knows and that are eligible
    (the same rule the service applies)."""
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
            idx = [j for j, b in enumerate(banners) if is_eligible(b, prof, t)]
        req.extend([i] * len(idx))
        ban.extend(idx)
    req_a = np.asarray(req, dtype=np.int64)
    return CandidateSet(req_a, np.asarray(ban, dtype=np.int64), np.asarray(ts, dtype=np.float64)[req_a], np.asarray(person)[req_a])


def greedy_positions(cands: CandidateSet, score: np.ndarray, catalog: Catalog) -> np.ndarray:
    """1-based position of each candidate row in its request's greedy order."""
    pinned = np.array([b.pinned for b in catalog.banners])[cands.banner]
    prio = np.array([b.priority for b in catalog.banners], dtype=np.float64)[cands.banner]
    order = np.lexsort((cands.banner, -prio, -np.asarray(score), np.where(pinned, -prio, 0.0), ~pinned, cands.request))
    r = cands.request[order]
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]]) if len(r) else np.zeros(0, dtype=np.int64)
    rank = np.arange(len(r)) - np.repeat(starts, np.diff(np.r_[starts, len(r)]))
    pos = np.empty(len(r), dtype=np.int64)
    pos[order] = rank + 1
    return pos
