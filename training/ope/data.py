"""Logged bandit feedback: per logged request its candidates, the banner shown at each of
the first K positions, the logged propensity and the click.

Candidates are laid out flat (one row per (request, candidate banner), grouped by
request, catalog order inside a request) with request offsets; a target policy is a
(n_candidates_total, K) array over those rows. A request's candidates are its explicit
``candidates`` list when its rows carry one, else the banners of the catalog eligible at
its ts for its staff member (recommender.eligibility, vectorised over unique staff
profiles). A banner id outside the catalog is a cold-start banner
(recommender.candidates.cold_start_catalog), a candidate only of the requests that name
it: in their list, or as the banner they showed.

A request may hold only some of its positions (sampled logs, a lost row, one position
logged per request id): the estimators average each position over the requests that
observed it (``LoggedBandit.observed``). Nothing questionable is used silently:
impressions past position K are dropped and counted; a request whose shown banner is not
among its candidates is excluded and counted; a position that exists but was logged in
no request is refused (its value cannot be estimated from these logs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from features.definition import FeatureConfig
from features.history import History
from features.pipeline import history_from_logs
from recommender.candidates import cold_start_catalog
from recommender.caps import capped_rows
from recommender.completion import completion_rows
from recommender.contracts.impressions import ImpressionLog
from recommender.domain import Banner, Catalog, FrequencyCap, StaffDirectory
from recommender.eligibility import matches_target
from training.metrics import observed_positions


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
    outside_catalog_rows: int = 0  # evaluated impressions that name banners outside the catalog (cold start)
    cache: dict = field(default_factory=dict, repr=False)  # derived arrays shared by policies and click models
    logs: list = field(default_factory=list, repr=False)  # the logs the history was built from
    # (N,) candidate rows a rule leaves out of the target policies: the banner's frequency
    # cap was reached then, or the person had its outcome and the catalog hides it (None: none)
    capped: np.ndarray | None = None
    boost: np.ndarray | None = None  # (N,) added to the target's scores for its greedy order (down-weighted completions)
    rewards: np.ndarray | None = None  # (n, K) the objective's reward at each position (None: the click)
    objective: str = "clicks"  # what the value counts (training.objective)

    @property
    def reward(self) -> np.ndarray:
        """(n, K) what the estimators value: the objective's reward, else the click."""
        return self.click if self.rewards is None else self.rewards

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

    @property
    def observed(self) -> np.ndarray:
        """(n, K) where a request's term at a position is known: logged, or impossible (fewer
        candidates) with the request's last position logged (training.metrics.observed_positions)."""
        return observed_positions(self.filled, self.n_candidates)

    @property
    def n_partial(self) -> int:
        """Requests that logged only some of their first min(K, candidates) positions."""
        return int((self.filled.sum(axis=1) < np.minimum(self.slots, self.n_candidates)).sum())

    def shown_banner(self) -> np.ndarray:
        """(n, K) catalog index of the banner shown at each position, -1 if none."""
        return np.where(self.filled, self.cand_banner[np.maximum(self.shown, 0)], -1)

    def rows_by_time(self) -> np.ndarray:
        """Every candidate row, request by request in time order (each request's rows in
        catalog order): history queries in chunks of this order replay the history once
        in all (features.history.History.query_codes)."""
        by_time = np.argsort(self.ts, kind="stable")
        return _ranges(self.offsets[by_time], self.n_candidates[by_time])

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
            n_logged_requests=self.n_logged_requests, unknown_staff=self.unknown_staff,
            outside_catalog_rows=self.outside_catalog_rows, logs=self.logs,
            capped=None if self.capped is None else self.capped[rows],
            boost=None if self.boost is None else self.boost[rows],
            rewards=None if self.rewards is None else self.rewards[idx], objective=self.objective)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    rep_start = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return rep_start + np.arange(total)


def _profiles(log: ImpressionLog, staff: StaffDirectory) -> tuple[list[Mapping[str, str]], np.ndarray]:
    """Each staff id's attributes ({} for staff missing from the directory), and which are missing."""
    profiles = [staff.get(sid).attributes if sid in staff else {} for sid in log.staff_ids]
    return profiles, np.array([sid not in staff for sid in log.staff_ids], dtype=bool)


def _eligible(banners: Sequence[Banner], profiles: Sequence[Mapping[str, str]], person: np.ndarray,
              ts: np.ndarray) -> np.ndarray:
    """(n, len(banners)): the eligibility rules (recommender.eligibility) for requests of
    person[i] at ts[i], targeting evaluated once per distinct profile."""
    prof_key: dict[tuple, int] = {}
    prof_of = np.empty(len(profiles), dtype=np.int64)
    uniq: list[Mapping[str, str]] = []
    for i, p in enumerate(profiles):
        key = tuple(sorted(p.items()))
        if key not in prof_key:
            prof_key[key] = len(uniq)
            uniq.append(p)
        prof_of[i] = prof_key[key]
    target_ok = np.array([[matches_target(b, p) for b in banners] for p in uniq], dtype=bool).reshape(len(uniq), len(banners))
    starts = np.array([-np.inf if b.start is None else b.start for b in banners])
    ends = np.array([np.inf if b.end is None else b.end for b in banners])
    return target_ok[prof_of[person]] & (starts[None, :] <= ts[:, None]) & (ts[:, None] < ends[None, :])


def _candidate_matrix(log: ImpressionLog, catalog: Catalog, profiles: Sequence[Mapping[str, str]],
                      row_banner: np.ndarray) -> np.ndarray:
    """(requests, catalog) bool: each request's candidates. Its explicit list, else the
    catalog's own eligible banners; a cold-start banner only where the request names it
    (in its list, or as the banner it showed)."""
    n_known = catalog.n_known
    M = np.zeros((log.n_requests, len(catalog)), dtype=bool)
    M[:, :n_known] = _eligible(catalog.known, profiles, log.request_staff(), log.request_ts())
    implicit = np.ones(log.n_requests, dtype=bool)
    for r, cands in log.candidates.items():
        M[r] = False
        M[r, [catalog.index[b] for b in cands]] = True
        implicit[r] = False
    shows_cold = (row_banner >= n_known) & implicit[log.request]
    M[log.request[shows_cold], row_banner[shows_cold]] = True
    return M


def _refuse_unlogged_positions(shown: np.ndarray, n_cand: np.ndarray) -> None:
    """A position that some request has but no request logged cannot be estimated (the
    logs hold fewer positions than --slots): refuse it rather than count it as no click."""
    exists = np.arange(shown.shape[1])[None, :] < n_cand[:, None]
    never = [k + 1 for k in np.flatnonzero(exists.any(axis=0) & ~(exists & (shown >= 0)).any(axis=0))]
    if not never:
        return
    what = f"position(s) {', '.join(map(str, never))} of the first {shown.shape[1]} were logged in no request"
    if never[0] == 1:
        raise EvaluationInputError(f"{what}: the logs cannot be evaluated")
    raise EvaluationInputError(f"{what}, so their clicks cannot be estimated: evaluate the positions the logs hold "
                               f"(--slots {never[0] - 1})")


def build_bandit(log: ImpressionLog, catalog: Catalog, staff: StaffDirectory, slots: int = 3,
                 history_logs: Sequence[ImpressionLog] = (), history: History | None = None,
                 default_cap: FrequencyCap | None = None, objective=None) -> LoggedBandit:
    """Turn an impression log into logged bandit feedback over the first ``slots`` positions.

    ``history_logs`` are earlier logs (``--history``); the click history used by the
    policies and the click model is built from them and ``log`` (strictly before each
    request's ts), unless ``history`` is given. Banners outside ``catalog`` are ranked
    as cold-start banners (recommender.candidates.cold_start_catalog). Candidate rows whose
    banner had reached its frequency cap (its own, else ``default_cap``) from the same logs
    are marked ``capped``: target policies leave them out (recommender.caps), and so are
    those whose outcome the person had before, when the banner's rule hides it; a rule
    that down-weights it gives the row a ``boost`` (recommender.completion). With an
    ``objective`` (training.objective.Objective) other than clicks, the estimators value its
    reward (``rewards``) instead of the clicks.
    """
    if slots < 1:
        raise EvaluationInputError("slots must be at least 1")
    K = int(slots)
    n0 = log.n_requests
    if n0 == 0:
        raise EvaluationInputError(f"{log.source or 'impressions'}: no impressions to evaluate: the file holds no rows")
    logs = [*history_logs, log]
    catalog = cold_start_catalog(catalog, logs)
    ban_map = np.array([catalog.index.get(b, -1) for b in log.banner_ids], dtype=np.int64)
    row_banner = ban_map[log.banner]
    exclusions: dict[str, int] = {}
    profiles, unknown = _profiles(log, staff)
    M = _candidate_matrix(log, catalog, profiles, row_banner)

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
    rewards = None
    if objective is not None and not objective.is_clicks:
        rewards = np.zeros((n, K))
        rewards[r_new, pos[sel]] = objective.rewards(log, catalog)[in_slots][sel]
    _refuse_unlogged_positions(shown, counts)

    if history is None:
        history = history_from_logs(logs, catalog, FeatureConfig().half_life_days)
    r_staff = log.request_staff()
    kept_staff = r_staff[keep]
    req_ts = log.request_ts()[keep]
    row_staff = [log.staff_ids[p] for p in kept_staff[cand_request].tolist()]
    capped = capped_rows(logs, catalog, row_staff, cand_banner, req_ts[cand_request], default_cap)
    boost = None
    completed = completion_rows(logs, catalog, row_staff, cand_banner, req_ts[cand_request])
    if completed is not None:
        hidden, boost = completed
        capped = hidden if capped is None else capped | hidden
        boost = boost if boost.any() else None
    return LoggedBandit(
        slots=K, catalog=catalog, request_ids=[log.request_ids[i] for i in np.flatnonzero(keep)],
        staff_ids=list(log.staff_ids), profiles=profiles, staff=kept_staff, ts=req_ts, offsets=offsets,
        cand_request=cand_request.astype(np.int64), cand_banner=cand_banner.astype(np.int64), shown=shown,
        propensity=prop, click=click, history=history, exclusions=exclusions, n_logged_requests=n0,
        unknown_staff=int(unknown[kept_staff].sum()),
        outside_catalog_rows=log.outside_catalog(catalog)[1], logs=logs, capped=capped, boost=boost, rewards=rewards,
        objective="clicks" if objective is None else objective.name)
