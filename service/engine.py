"""The ranking engine behind the HTTP service: one object that puts the serving parts
together and answers the route functions.

Parts, each with one job: ``Directory`` (catalog and staff), ``ArmModels`` (each arm's
model), ``OnlineHistory`` (the click history the features read), ``CandidateCache``
(eligibility per profile and list), ``RankingLog`` (writes rankings in the background),
``StoreFollower`` (what other workers wrote), ``Retention`` (prunes the store) and
``Readiness``; a model must pass ``probe_model`` before an arm serves it. Building the
engine loads nothing and starts no thread: ``start()`` does, called by the app's
lifespan (or a test).

A rank request is: the profile, the candidates, the arm, the ranker (model, rules,
exploration), the online history's update, the ranking log. State that changes (catalog,
staff, arms) is replaced as a whole object and read once per request, so every request
sees one consistent version; each arm's random source has its own lock.
"""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recommender.candidates import Candidates
from recommender.domain import UNKNOWN, Banner, Catalog
from recommender.explain import BannerExplanation, check_explainable, explain_ranked
from recommender.ranker import RankResult
from recommender.store import ClickEvent, EventsOutcome, EventStore, ForgetResult, RankingRecord
from training.registry import ModelRegistry, RegistryError

from .candidates import CandidateCache
from .config import ServiceConfig, resolve_loader
from .directory import Directory
from .follower import StoreFollower
from .models import ArmModels, ReloadReport
from .online import OnlineHistory
from .probe import probe_model
from .ramp import RampMonitor
from .ranking_log import RankingLog, RequestIds
from .readiness import Readiness
from .retention import Retention

log = logging.getLogger("service.engine")
COMPLETED = "you already had its outcome (a survey answered, a sign-up), and the catalog hides it after that"


def staff_ref(salt: str, staff_id: str) -> str:
    """What the logs say instead of a staff id: a salted hash prefix."""
    return "s#" + hashlib.sha256(f"{salt}:{staff_id}".encode("utf-8")).hexdigest()[:12]


@dataclass
class RankOutcome:
    request_id: str
    arm: str
    result: RankResult
    slots: int
    n_unknown: int = 0
    explanations: list[BannerExplanation] | None = None
    left_out: dict[str, tuple[str, str]] | None = None  # explained: banner id -> (rule, why) it was left out


class RankingEngine:
    def __init__(self, config: ServiceConfig, store: EventStore, registry: ModelRegistry | None = None,
                 clock=time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self.writer_id = uuid.uuid4().hex[:12]
        registry = registry or ModelRegistry(config.models, resolve_loader(config.model_loader))
        self.directory = Directory(store, config.banners, config.staff)
        self.models = ArmModels(config.arms, registry, config.seed,
                                probe=lambda scorer: probe_model(scorer, self.directory, self.online, self.clock()),
                                salt=config.arm_salt)
        self.online = OnlineHistory(max_open_rankings=config.max_open_rankings, reserve_open_rankings=True)
        self.candidates = CandidateCache()
        self.ranking_log = RankingLog(store)
        self.ramp = RampMonitor(store, registry, config.arms, config.ramp_alpha, config.ramp_min_requests)
        self.follower = StoreFollower(store, self.online, self.directory, self.models, self.writer_id,
                                      self.ramp, config.ramp_check_interval)
        self.retention = None if config.retention_days is None else Retention(
            config.db, config.retention_days, config.models, clock=clock)
        self.readiness = Readiness(store, self.ranking_log, self.models, self.directory, self.online)
        self.request_ids = RequestIds()
        self.started = False
        self._caps_catalog = None  # the catalog whose caps the online history follows

    # -- life cycle -------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        """Load the catalog, the staff directory, the click history and each arm's model;
        with ``background``, start the ranking-log writer and the store follower."""
        if self.started:
            return
        self.directory.load()
        self._follow_caps()
        # the click history's counters decay at the half-lives of the models to serve
        self.online.set_half_lives(self.models.half_lives())
        self.follower.load_history(self.config.history, self.clock() - self.config.history_days * 86400.0,
                                   self.config.history_cache_dir)
        self.online.reserve(self.config.online_history_pairs)
        self.models.reload()
        if background:
            self.ranking_log.start()
            self.follower.start(self.config.sync_interval)
            if self.retention is not None:
                self.retention.start()
        self.started = True

    def close(self) -> None:
        if self.retention is not None:
            self.retention.stop()
        self.follower.stop()
        if not self.ranking_log.stop():
            # the writer is still retrying a write: closing the store under it would lose that batch
            log.error("the ranking-log writer did not stop within 10 s; leaving the store open")
            return
        self.store.close()

    # -- ranking ----------------------------------------------------------------------
    def _prepare(self, staff_id: str, profile: dict | None, candidates: Sequence[str] | None, slots: int | None):
        """A request's time, slots, profile, candidates, arm and the arm's state."""
        ts = self.clock()
        attrs = self.directory.profile_for(staff_id, profile)
        cands = self.candidates.get(self.directory.catalog, attrs, ts, candidates)
        cands = self._without_capped(staff_id, cands, ts)
        arm = self.models.assign(staff_id)
        return ts, int(slots or self.config.slots), attrs, cands, arm, self.models[arm]

    def rank(self, staff_id: str, profile: dict | None = None, candidates: Sequence[str] | None = None,
             slots: int | None = None, request_id: str | None = None, slot_ids: Sequence[str] = ()) -> RankOutcome:
        """``request_id``: the id to log the ranking under (an adapter's own event id, which
        its caller must keep unique); default: a new one. ``slot_ids``: the shown slots'
        names, logged with the ranking (a multi-slot adapter's)."""
        ts, slots, attrs, cands, arm, state = self._prepare(staff_id, profile, candidates, slots)
        boost = self._boosts(staff_id, cands, ts)
        with state.lock:
            result = state.ranker.rank(staff_id, attrs, ts, cands, self.online, boost)
        request_id = request_id or self.request_ids.new()
        ids = result.banner_ids
        self.online.add_ranking(staff_id, request_id, ts, [(b, cands.category.get(b, UNKNOWN)) for b in ids[:slots]])
        items = list(zip(ids, range(1, len(ids) + 1), result.scores, result.propensities))
        self.ranking_log.append(RankingRecord(request_id, ts, staff_id, arm, result.model_version, result.explored,
                                              slots, items, cands.ids, self.writer_id, slot_ids=list(slot_ids)))
        return RankOutcome(request_id, arm, result, slots, cands.n_unknown)

    def _boosts(self, staff_id: str, cands: Candidates, ts: float) -> np.ndarray | None:
        """What is added to the candidates' scores for the greedy order: the delivery goals'
        pacing boosts and the down-weighting of banners this person completed."""
        boost = self.online.goal_boosts(staff_id, cands.banners, ts)
        _, penalty = self.online.completed(staff_id, cands.banners, ts)
        if penalty is None:
            return boost
        return penalty if boost is None else boost + penalty

    def explain(self, staff_id: str, profile: dict | None = None, candidates: Sequence[str] | None = None,
                slots: int | None = None) -> RankOutcome:
        """Rank as ``rank`` does (the same arm, model, rules and exploration) and explain
        each banner's place. Nobody is shown this ranking, so it is neither logged nor
        counted as impressions: logged, it would add impressions that no click can follow
        and bias the click rates that training and offline evaluation read. Raises
        ExplainError when the arm's model cannot split its scores."""
        ts, slots, attrs, cands, arm, state = self._prepare(staff_id, profile, candidates, slots)
        boost = self._boosts(staff_id, cands, ts)
        check_explainable(state.ranker)
        with state.lock:  # the ranker's random state and the model's caches
            result = state.ranker.rank(staff_id, attrs, ts, cands, self.online, boost)
            explanations = explain_ranked(state.ranker, result, staff_id, attrs, ts, cands, self.online, boost)
        kept = set(cands.ids)
        before_caps = self.candidates.get(self.directory.catalog, attrs, ts, candidates)
        dropped = [b for b in before_caps.banners if b.banner_id not in kept]
        left_out = {b: ("cap", text) for b, text in
                    self.online.cap_reasons(staff_id, dropped, ts, self.config.default_cap).items()}
        hidden, _ = self.online.completed(staff_id, dropped, ts)
        left_out.update({b: ("completed", COMPLETED) for b in hidden if b not in left_out})
        return RankOutcome(self.request_ids.new(), arm, result, slots, cands.n_unknown, explanations, left_out)

    def _follow_caps(self) -> None:
        """Caps, goals and what follows an outcome follow the current catalog."""
        catalog = self.directory.catalog
        if catalog is not self._caps_catalog:
            self.online.set_caps(catalog, self.config.default_cap)
            self.online.set_goals(catalog)
            self.online.set_outcomes(catalog)
            self._caps_catalog = catalog

    def goal_progress(self) -> list:
        """Each delivery goal's progress now (recommender.goals.GoalProgress)."""
        self._follow_caps()
        return self.online.goal_progress(self.clock())

    def _without_capped(self, staff_id: str, cands: Candidates, ts: float) -> Candidates:
        """The request's candidates less the banners this person reached their cap of, and
        those they completed that the catalog hides after their outcome."""
        self._follow_caps()
        capped = self.online.capped(staff_id, cands.banners, ts, self.config.default_cap)
        hidden, _ = self.online.completed(staff_id, cands.banners, ts)
        capped = capped | hidden
        if not capped:
            return cands
        return Candidates([b for b in cands.banners if b.banner_id not in capped], cands.n_unknown)

    # -- events -----------------------------------------------------------------------
    def record_events(self, events: list[ClickEvent]) -> EventsOutcome:
        """Store click and outcome events durably (after the rankings they refer to), then
        let them change the online history."""
        now = self.clock()
        for e in events:
            e.received = now
            e.writer = self.writer_id
            if not e.ts:
                e.ts = now
        self.ranking_log.flush()
        out = self.store.add_events(events)
        stored = set(out.stored)
        for e in events:
            if e.event_id not in stored:
                continue
            if e.is_outcome:
                self.online.add_outcome(e.request_id, e.banner_id, e.type, 1.0 if e.value is None else e.value)
            else:
                self.online.add_click(e.request_id, e.banner_id)
        return out

    def arms_of(self, events: list[ClickEvent]) -> dict[str, str]:
        """The arm of each event's request, when this process knows the request."""
        out = {}
        for e in events:
            staff = self.online.staff_of(e.request_id)
            if staff is not None:
                out[e.event_id] = self.models.assign(staff)
        return out

    # -- admin ------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        return self.directory.catalog

    def put_catalog(self, banners: list[Banner]) -> int:
        return self.directory.put_catalog(banners)

    def put_staff(self, rows: list[tuple[str, dict]]) -> int:
        return self.directory.put_staff(rows)

    def forget(self, staff_id: str) -> ForgetResult:
        """Delete one person's rankings, clicks and directory row from the store and drop
        them from this worker's click history and directory; the other workers drop them
        when their follower sees the erasure record (within ``sync_interval``)."""
        self.ranking_log.flush()  # their rankings served so far are in the store, to be deleted
        now = self.clock()
        result = self.store.forget(staff_id, now)
        self.online.forget([staff_id], now)
        self.directory.drop([staff_id])
        log.info("forgot %s: %d rankings, %d click events, %d directory row(s) deleted",
                 staff_ref(self.config.log_salt, staff_id), result.rankings, result.events, result.staff)
        return result

    def reload(self) -> ReloadReport:
        return self.models.reload()

    def arms_status(self) -> dict:
        """The arms' shares and models now, and the last ramp's comparison."""
        ramp = self.ramp.last
        return {"shares": dict(self.models.shares), "models": {k: v.version for k, v in self.models.arms.items()},
                "ramp": None if ramp is None else ramp.to_dict()}

    def set_shares(self, shares: dict[str, float]) -> str | None:
        """Change the arms' shares for every worker (kept in the model registry); why not,
        or None when done."""
        names = {a.name for a in self.config.arms}
        if set(shares) != names:
            return f"give a share for each configured arm: {', '.join(sorted(names))}"
        try:
            self.models.registry.set_shares(shares)
        except RegistryError as e:
            return str(e)
        self.models.refresh_shares(self.clock())
        return None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every ranking served so far is in the store."""
        return self.ranking_log.flush(timeout)

    def sync(self) -> None:
        """Pick up what other workers wrote (what the background follower does)."""
        self.follower.sync()
