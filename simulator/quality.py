"""True quality of rankings on logged requests, from the simulator's ground truth.

For held-out requests (time, person, the banners eligible then, and the person's true
history state from the logs strictly before), it computes the true expected clicks on the
first K positions of: random order (exact expectation), popularity order, the attribute
oracle (knows the true effect of role, school level, region and the history, not the
hidden interests), any model, and the full oracle (the best possible order).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.definition import popularity
from features.pipeline import history_from_logs
from recommender.candidates import CandidateTable, build_candidate_table, greedy_positions
from recommender.ranker import CandidateRows

from .groundtruth import GroundTruth, HistoryState


@dataclass
class QualityReport:
    n_requests: int
    slots: int
    values: dict[str, float]  # policy -> mean true expected clicks@K per request

    def captured_share(self, name: str) -> float:
        """Share of the full oracle's gain over popularity that ``name`` captures."""
        pop, best = self.values["popularity"], self.values["oracle"]
        return (self.values[name] - pop) / (best - pop) if best > pop else float("nan")

    def table(self) -> str:
        lines = [f"true expected clicks@{self.slots} per request on {self.n_requests:,} held-out requests:"]
        for k, v in self.values.items():
            lines.append(f"  {k:<18} {v:.4f}")
        for k in self.values:
            if k not in ("random", "popularity", "attribute_oracle", "oracle"):
                lines.append(f"  share of the oracle's gain over popularity captured by {k}: {self.captured_share(k):.1%}")
        return "\n".join(lines)


class HeldOutRequests:
    """Requests of ``log`` at or after ``since`` (up to ``max_requests`` of them, sampled),
    with their candidates and true history state. The true state uses every row of
    ``history_logs`` + ``log``; the features see only rows at or after ``features_since``
    (so a model can be judged with the days of history it was trained on)."""

    def __init__(self, truth: GroundTruth, directory, catalog, log, since: float, history_logs=(),
                 max_requests: int = 20_000, seed: int = 0, half_life_days: float = 7.0,
                 features_since: float | None = None):
        self.truth, self.catalog = truth, catalog
        req_ts = log.request_ts()
        req = np.flatnonzero(np.nan_to_num(req_ts, nan=-np.inf) >= since)
        if len(req) > max_requests:
            req = np.sort(np.random.default_rng(seed).choice(req, max_requests, replace=False))
        self.req = req
        staff_of_req = log.request_staff()[req]
        self.people = list(log.staff_ids)
        self.profiles = [directory.get(s).attributes for s in self.people]
        self.cands: CandidateTable = build_candidate_table(catalog, self.profiles, staff_of_req, req_ts[req])
        # truth state: views and clicks strictly before each request, over every log
        logs = [*history_logs, log]
        t_idx = truth.banner_idx([b.banner_id for b in catalog.banners])
        u_all = np.concatenate([truth.staff_idx(np.asarray(lg.staff_ids)[lg.staff]) for lg in logs])
        b_all = np.concatenate([truth.banner_idx(np.asarray(lg.banner_ids)[lg.banner]) for lg in logs])
        ts_all, clicked_all = np.concatenate([lg.ts for lg in logs]), np.concatenate([lg.clicked for lg in logs])
        state = HistoryState(u_all, b_all, ts_all, clicked_all, len(truth.banner_ids))
        # every logged impression in truth's indices, and the true state before each: what
        # simulator.ceiling reads as evidence
        self.events = (u_all, b_all, np.concatenate([lg.position for lg in logs]), ts_all, clicked_all)
        self.state = state
        self.u = truth.staff_idx(np.asarray(self.people)[self.cands.person])
        self.b = t_idx[self.cands.banner]
        self.views, self.clicked_before = state.at(self.u, self.b, self.cands.ts)
        self.attr = truth.attractiveness(self.u, self.b, self.views, self.clicked_before)
        if features_since is not None:
            logs = [lg.subset(lg.ts >= features_since) for lg in logs]
        self.history = history_from_logs(logs, catalog, half_life_days)
        self.base_rate = float(np.concatenate([lg.clicked for lg in logs]).mean())
        self.pinned = np.array([b.pinned for b in catalog.banners])[self.cands.banner]

    def value_of_scores(self, score: np.ndarray, slots: int) -> float:
        """Mean true expected clicks@slots of the greedy order of ``score`` (pinned first)."""
        pos = greedy_positions(self.cands, score, self.catalog)
        exam = self.truth.examination(np.minimum(pos, 10 ** 6))
        contrib = np.where(pos <= slots, exam * self.attr, 0.0)
        return float(contrib.sum() / len(self.req))

    def random_value(self, slots: int) -> float:
        """Exact expectation of a uniformly random order of the unpinned candidates."""
        c = self.cands
        n_req = len(self.req)
        pos_pin = greedy_positions(c, np.zeros(len(c)), self.catalog)
        n_pin = np.bincount(c.request, weights=self.pinned, minlength=n_req)
        n_all = np.bincount(c.request, minlength=n_req)
        free = ~self.pinned
        mean_free = np.bincount(c.request, weights=np.where(free, self.attr, 0.0), minlength=n_req) / np.maximum(n_all - n_pin, 1)
        total = np.bincount(c.request, weights=np.where(self.pinned & (pos_pin <= slots),
                                                        self.truth.examination(pos_pin) * self.attr, 0.0), minlength=n_req)
        for k in range(1, slots + 1):
            filled = (k > n_pin) & (k <= n_all)
            total += np.where(filled, self.truth.examination(k) * mean_free, 0.0)
        return float(total.sum() / n_req)

    def candidate_rows(self) -> CandidateRows:
        c = self.cands
        banners = self.catalog.banners
        return CandidateRows(c.request, [self.people[p] for p in c.person], [self.profiles[p] for p in c.person],
                             [banners[b] for b in c.banner], c.ts)

    def report(self, scorers: dict, slots: int = 3) -> QualityReport:
        """Values of the reference policies and of each scorer (name -> Scorer)."""
        t = self.truth
        hist = self.history.query(np.asarray(self.people, dtype=object)[self.cands.person],
                                  np.asarray([b.banner_id for b in self.catalog.banners], dtype=object)[self.cands.banner],
                                  np.asarray([b.category for b in self.catalog.banners], dtype=object)[self.cands.banner],
                                  self.cands.ts)
        popularity_score = popularity(hist["global_clicks"], hist["global_views"], self.base_rate)
        attribute = t.observable_logit(self.u, self.b) + t.history_logit(self.b, self.views, self.clicked_before)
        values = {"random": self.random_value(slots), "popularity": self.value_of_scores(popularity_score, slots),
                  "attribute_oracle": self.value_of_scores(attribute, slots)}
        rows = self.candidate_rows() if scorers else None
        for name, scorer in scorers.items():
            values[name] = self.value_of_scores(np.asarray(scorer.score(rows, self.history)), slots)
        values["oracle"] = self.value_of_scores(self.attr, slots)
        return QualityReport(len(self.req), slots, values)
