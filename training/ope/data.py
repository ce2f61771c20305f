"""Logged bandit feedback: per logged request its candidates, the banner shown at each of
the first K positions, the logged propensity and the click.

Candidates are laid out flat (one row per (request, candidate banner), grouped by
request, catalog order inside a request) with request offsets; a target policy is a
(n_candidates_total, K) array over those rows. A request's candidates are its explicit
``candidates`` list when its rows carry one, else the banners eligible at its ts for its
staff member (recommender.eligibility, vectorised over unique staff profiles).

Nothing questionable is used silently: impressions past position K are dropped and
counted; a request whose shown banner is not among its candidates, or whose first
min(K, n_candidates) positions were not all logged, is excluded and counted (its
positions would otherwise count as no click, a silent wrong number).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from features.definition import FeatureConfig
from features.history import History
from features.pipeline import history_from_logs
from recommender.contracts.impressions import ImpressionLog
from recommender.domain import Catalog, StaffDirectory
from recommender.eligibility import matches_target


class EvaluationInputError(ValueError):
    """Input that offline evaluation cannot use (and that is not a contract violation)."""


@dataclass
class LoggedBandit:
    slots: int
    catalog: Catalog
    request_ids: list[str]  # kept requests
    staff_ids: list[str]  # vocabulary of staff ids
    profiles: list[Mapping[str, str]]  # attributes per staff index ({} for unknown staff)
    staff: np.ndarray  # (n,) staff index per request
    ts: np.ndarray  # (n,) request time, epoch seconds UTC
    offsets: np.ndarray  # (n + 1,) candidate rows of request i: offsets[i]:offsets[i+1]
    cand_request: np.ndarray  # (N,) request index per candidate row
    cand_banner: np.ndarray  # (N,) catalog index per candidate row
    shown: np.ndarray  # (n, K) candidate row shown at position k+1, -1 if none
    propensity: np.ndarray  # (n, K) logged propensity of the shown banner (0 if none)
    click: np.ndarray  # (n, K) float 0/1 (0 if none)
    history: History  # events of --history and of these logs, queried strictly before ts
    exclusions: dict[str, int] = field(default_factory=dict)  # reason -> count (requests or rows)
    n_logged_requests: int = 0
    unknown_staff: int = 0  # requests by staff missing from the staff file (ranked as unknown)
    cache: dict = field(default_factory=dict, repr=False)  # derived arrays shared by policies and click models
    logs: list = field(default_factory=list, repr=False)  # the logs the history was built from

    def history_for(self, model) -> History:
        """The click history with the half-life ``model``'s features were defined with
        (a model artifact's encoder config), built once from the same logs."""
        cfg = getattr(getattr(model, "encoder", None), "config", None)
        half_life = getattr(cfg, "half_life_days", None)
        if half_life is None or not self.logs or float(half_life) == getattr(self.history, "half_life_days", None):
            return self.history
        key = ("history", float(half_life))
        if key not in self.cache:
            self.cache[key] = history_from_logs(self.logs, self.catalog, float(half_life))
        return self.cache[key]

    @property
    def n(self) -> int:
        return len(self.request_ids)

    @property
    def n_candidates(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def filled(self) -> np.ndarray:
        return self.shown >= 0

    def shown_banner(self) -> np.ndarray:
        """(n, K) catalog index of the banner shown at each position, -1 if none."""
        return np.where(self.filled, self.cand_banner[np.maximum(self.shown, 0)], -1)

    def rows_by_person(self) -> np.ndarray:
        """Every candidate row, person by person (a person's requests in logged order,
        each request's rows in catalog order): history queries in this order read the
        history's indexes, sorted by person, nearly in order."""
        by_person = np.argsort(self.staff, kind="stable")
        return _ranges(self.offsets[by_person], self.n_candidates[by_person])

    def categories(self) -> list[str]:
        return sorted({b.category for b in self.catalog})

    def cand_category(self) -> np.ndarray:
        """(N,) index into ``categories()`` of each candidate row."""
        cats = self.categories()
        per_banner = np.array([cats.index(b.category) for b in self.catalog], dtype=np.int64)
        return per_banner[self.cand_banner]

    def subset(self, keep: np.ndarray) -> "LoggedBandit":
        """The bandit restricted to the requests where ``keep`` (n,) is true."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)
        counts = self.n_candidates[idx]
        rows = _ranges(self.offsets[idx], counts)
        new_index = np.full(len(self.cand_banner), -1, dtype=np.int64)
        new_index[rows] = np.arange(len(rows))
        shown = self.shown[idx]
        return LoggedBandit(
            slots=self.slots, catalog=self.catalog, request_ids=[self.request_ids[i] for i in idx],
            staff_ids=self.staff_ids, profiles=self.profiles, staff=self.staff[idx], ts=self.ts[idx],
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            cand_request=np.repeat(np.arange(len(idx)), counts), cand_banner=self.cand_banner[rows],
            shown=np.where(shown >= 0, new_index[np.maximum(shown, 0)], -1), propensity=self.propensity[idx],
            click=self.click[idx], history=self.history, exclusions=dict(self.exclusions),
            n_logged_requests=self.n_logged_requests, unknown_staff=self.unknown_staff, logs=self.logs)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    rep_start = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return rep_start + np.arange(total)


def build_bandit(log: ImpressionLog, catalog: Catalog, staff: StaffDirectory, slots: int = 3,
                 history_logs: Sequence[ImpressionLog] = (), history: History | None = None) -> LoggedBandit:
    """Turn an impression log into logged bandit feedback over the first ``slots`` positions.

    ``history_logs`` are earlier logs (``--history``); the click history used by the
    policies and the click model is built from them and ``log`` (strictly before each
    request's ts), unless ``history`` is given.
    """
    if slots < 1:
        raise EvaluationInputError("slots must be at least 1")
    K = int(slots)
    n0 = log.n_requests
    if n0 == 0:
        raise EvaluationInputError(f"{log.source or 'impressions'}: no impressions to evaluate")
    nb = len(catalog)
    index = catalog.index
    # map log banner vocabulary to catalog indices (the loader checked membership when given the catalog)
    ban_map = np.array([index.get(b, -1) for b in log.banner_ids], dtype=np.int64)
    if np.any(ban_map[log.banner] < 0):
        missing = sorted({log.banner_ids[b] for b in np.unique(log.banner) if ban_map[b] < 0})
        raise EvaluationInputError(f"banners not in the catalog: {', '.join(missing[:5])}")
    row_banner = ban_map[log.banner]
    exclusions: dict[str, int] = {}

    # --- candidates per request ------------------------------------------------------
    r_ts = log.request_ts()
    r_staff = log.request_staff()
    profiles: list[Mapping[str, str]] = []
    unknown = np.zeros(len(log.staff_ids), dtype=bool)
    for i, sid in enumerate(log.staff_ids):
        if sid in staff:
            profiles.append(staff.get(sid).attributes)
        else:
            profiles.append({})
            unknown[i] = True
    prof_key: dict[tuple, int] = {}
    prof_of_staff = np.empty(len(profiles), dtype=np.int64)
    uniq: list[Mapping[str, str]] = []
    for i, p in enumerate(profiles):
        key = tuple(sorted(p.items()))
        j = prof_key.get(key)
        if j is None:
            j = prof_key[key] = len(uniq)
            uniq.append(p)
        prof_of_staff[i] = j
    target_ok = np.array([[matches_target(b, p) for b in catalog] for p in uniq], dtype=bool).reshape(len(uniq), nb)
    starts = np.array([-np.inf if b.start is None else b.start for b in catalog])
    ends = np.array([np.inf if b.end is None else b.end for b in catalog])
    M = target_ok[prof_of_staff[r_staff]] & (starts[None, :] <= r_ts[:, None]) & (r_ts[:, None] < ends[None, :])
    for r, cands in log.candidates.items():
        row = np.zeros(nb, dtype=bool)
        row[[index[b] for b in cands if b in index]] = True
        M[r] = row

    # --- shown banners on the first K positions ----------------------------------------
    in_slots = log.position <= K
    beyond = int((~in_slots).sum())
    if beyond:
        exclusions[f"impressions at positions beyond --slots {K} (not part of the value)"] = beyond
    rq, pos, bn = log.request[in_slots], log.position[in_slots] - 1, row_banner[in_slots]
    bad = np.zeros(n0, dtype=bool)
    not_cand = ~M[rq, bn]
    bad[rq[not_cand]] = True
    if not_cand.any():
        exclusions["requests whose shown banner is not among their candidates (not eligible at ts)"] = int(np.unique(rq[not_cand]).size)
    n_cand = M.sum(axis=1)
    n_pos = np.bincount(rq, minlength=n0)
    gap = (n_pos < np.minimum(K, n_cand)) & ~bad
    if gap.any():
        exclusions[f"requests missing a logged position among 1..min({K}, candidates)"] = int(gap.sum())
    bad |= gap
    keep = ~bad
    n = int(keep.sum())
    if n == 0:
        raise EvaluationInputError("no request is usable for evaluation: " +
                                   "; ".join(f"{v:,} {k}" for k, v in exclusions.items()))

    # --- flat layout -------------------------------------------------------------------
    Mk = M[keep]
    cand_request, cand_banner = np.nonzero(Mk)
    counts = Mk.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat_of = np.full(Mk.shape, -1, dtype=np.int64)
    flat_of[cand_request, cand_banner] = np.arange(len(cand_banner))
    new_req = np.full(n0, -1, dtype=np.int64)
    new_req[keep] = np.arange(n)
    sel = keep[rq]
    r_new = new_req[rq[sel]]
    shown = np.full((n, K), -1, dtype=np.int64)
    prop = np.zeros((n, K))
    click = np.zeros((n, K))
    shown[r_new, pos[sel]] = flat_of[r_new, bn[sel]]
    prop[r_new, pos[sel]] = log.propensity[in_slots][sel]
    click[r_new, pos[sel]] = log.clicked[in_slots][sel]

    logs = [*history_logs, log]
    if history is None:
        history = history_from_logs(logs, catalog, FeatureConfig().half_life_days)
    kept_staff = r_staff[keep]
    return LoggedBandit(
        slots=K, catalog=catalog, request_ids=[log.request_ids[i] for i in np.flatnonzero(keep)],
        staff_ids=list(log.staff_ids), profiles=profiles, staff=kept_staff, ts=r_ts[keep], offsets=offsets,
        cand_request=cand_request.astype(np.int64), cand_banner=cand_banner.astype(np.int64), shown=shown,
        propensity=prop, click=click, history=history, exclusions=exclusions, n_logged_requests=n0,
        unknown_staff=int(unknown[kept_staff].sum()), logs=logs)
