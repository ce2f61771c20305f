"""Batch ranking: many requests at once, greedy (no exploration), the same rules and
features as the service. The history is the logs that happened before the requests.
A candidate id that the catalog does not hold is ranked as a cold-start banner, as the
service ranks it (recommender.domain.cold_start_banner)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .candidates import build_candidate_table, greedy_positions
from .domain import Catalog, Ranking, Request, StaffDirectory
from .ranker import CandidateRows


def rank_requests(scorer, directory: StaffDirectory, catalog: Catalog, history, requests: Sequence[Request],
                  chunk: int = 20_000) -> list[Ranking]:
    """Rankings (best first, every candidate) for each request; scorer None = operators' order."""
    catalog = catalog.with_cold_start(b for r in requests if r.candidates is not None for b in r.candidates)
    out: list[Ranking] = []
    for start in range(0, len(requests), chunk):
        part = requests[start:start + chunk]
        people = sorted({r.staff_id for r in part})
        pidx = {s: i for i, s in enumerate(people)}
        profiles = [directory.get(s).attributes for s in people]
        person = np.array([pidx[r.staff_id] for r in part], dtype=np.int64)
        ts = np.array([r.ts for r in part], dtype=np.float64)
        explicit = {i: r.candidates for i, r in enumerate(part) if r.candidates is not None}
        cands = build_candidate_table(catalog, profiles, person, ts, explicit)
        if scorer is None or len(cands) == 0:
            score = np.zeros(len(cands))
        else:
            banners = catalog.banners
            rows = CandidateRows(cands.request, [people[p] for p in cands.person], [profiles[p] for p in cands.person],
                                 [banners[b] for b in cands.banner], cands.ts)
            score = np.asarray(scorer.score(rows, history), dtype=np.float64)
        pos = greedy_positions(cands, score, catalog)
        order = np.lexsort((pos, cands.request))
        ids = catalog.ids
        per_req: list[list[str]] = [[] for _ in part]
        for j in order:
            per_req[cands.request[j]].append(ids[cands.banner[j]])
        out.extend(Ranking(r.request_id, tuple(lst)) for r, lst in zip(part, per_req))
    return out


def outside_catalog(catalog: Catalog, requests: Sequence[Request]) -> list[str]:
    """The candidate ids of ``requests`` that the catalog does not hold (in first-seen order)."""
    return list(dict.fromkeys(b for r in requests if r.candidates is not None for b in r.candidates
                              if not catalog.knows(b)))
