"""The ranking engine behind the HTTP service: catalog, staff directory, arms with their
Rankers, the click history (loaded at start + online), and the event store.

The service's route functions only translate HTTP to calls of this class. It never
imports from service/. Thread-safety: ranking may run concurrently with events, admin
calls and the background sync; state that changes (catalog, staff, arms) is replaced
as a whole object and read once per request, so every request sees one consistent
version; each arm's random source has its own lock.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from recommender.contracts.banners import banner_from_dict, banner_to_dict, load_banners
from recommender.domain import UNKNOWN, Banner, Catalog, Staff, StaffDirectory
from recommender.ranker import FALLBACK_VERSION, RankResult, Ranker
from recommender.store import ClickEvent, EventsOutcome, EventStore, RankingRecord
from .arms import Arm, ArmAssigner
from .candidates import CandidateCache, Candidates
from .config import ServiceConfig
from .online import OnlineHistory
from training.registry import ModelRegistry

log = logging.getLogger("recommender.serving")
CATALOG_DOC = "catalog"
STAFF_DOC = "staff"


def staff_ref(salt: str, staff_id: str) -> str:
    """What the logs say instead of a staff id: a salted hash prefix."""
    return "s#" + hashlib.sha256(f"{salt}:{staff_id}".encode("utf-8")).hexdigest()[:12]


@dataclass
class ArmState:
    arm: Arm
    ranker: Ranker
    version: str  # the loaded model version, or "fallback"
    scorer: object | None = None
    error: str | None = None  # why the arm runs without the model it should have
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class RankOutcome:
    request_id: str
    arm: str
    result: RankResult
    slots: int
    n_unknown: int = 0


@dataclass
class ReloadReport:
    arms: dict[str, dict]
    ok: bool


class RankingEngine:
    def __init__(self, config: ServiceConfig, store: EventStore, registry: ModelRegistry | None = None,
                 clock=time.time, start_threads: bool = True):
        self.config = config
        self.store = store
        self.registry = registry or ModelRegistry(config.models, config.model_loader)
        self.clock = clock
        self.writer_id = uuid.uuid4().hex[:12]
        self._ids = random.Random(os.urandom(32))
        self.assigner = ArmAssigner(config.arms, config.arm_salt)
        self.half_life_days = 7.0
        self._seed_seq = np.random.SeedSequence(config.seed) if config.seed is not None else np.random.SeedSequence()
        self.arms: dict[str, ArmState] = {}
        self._candidates = CandidateCache()
        self._reload_lock = threading.Lock()
        self.last_reload: ReloadReport | None = None
        self._registry_stamp = None
        self._catalog_version = 0
        self._staff_version = 0
        self.catalog = Catalog([])
        self.staff = StaffDirectory([])
        self._load_catalog_and_staff()
        self.online = OnlineHistory(self.half_life_days)
        self._seq_rankings = 0
        self._seq_events = 0
        self._load_history()
        self.reload()
        self._log: collections.deque[RankingRecord] = collections.deque()
        self._wake = threading.Event()
        self._pending = 0
        self._pending_cv = threading.Condition()
        self.store_error: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if start_threads:
            self.start()

    def _request_id(self) -> str:
        """A 128-bit id (32 hex digits): the time in milliseconds (48 bits), then 80 random
        bits, as in a UUIDv7. Ids that grow with time land at the end of the store's
        request_id index instead of on a random page of it: the ranking log's inserts
        then rewrite a few index pages per batch instead of one per ranking, which cut
        SQLite's CPU per logged ranking by about half (benchmarks/bench_ranking_log.py).
        The random part comes from a generator seeded by the OS at start (a system call
        per ranking, as uuid4 makes, costs more than the id); ``getrandbits`` is one call
        into C, so threads cannot interleave inside it."""
        return f"{time.time_ns() // 1_000_000:012x}{self._ids.getrandbits(80):020x}"

    @property
    def catalog_version(self) -> int:
        return self._catalog_version

    # -- start-up ---------------------------------------------------------------------
    def _load_catalog_and_staff(self) -> None:
        doc = self.store.get_document(CATALOG_DOC)
        if doc is not None:
            self._catalog_version = doc[0]
            self.catalog = Catalog(banner_from_dict(o) for o in json.loads(doc[1]))
        elif self.config.banners is not None:
            self.catalog = load_banners(self.config.banners)
        staff = [Staff(sid, attrs) for sid, attrs in self.store.all_staff()]
        if not staff and self.config.staff is not None:
            from recommender.contracts.staff import load_staff

            self.staff = load_staff(self.config.staff)
        else:
            self.staff = StaffDirectory(staff)
        doc = self.store.get_document(STAFF_DOC)
        self._staff_version = doc[0] if doc else 0

    def _category(self, banner_id: str, catalog: Catalog | None = None) -> str:
        b = (catalog or self.catalog).get(banner_id)
        return b.category if b is not None else UNKNOWN

    def _load_history(self) -> None:
        """The click history before start, into the online history's counters: a logged
        impressions file (config ``history``) and the store's own rankings and clicks of
        the last ``history_days``."""
        if self.config.history is not None:
            from features.pipeline import events_from_log

            from recommender.contracts.impressions import load_impressions

            self.online.load(events_from_log(load_impressions(self.config.history), self.catalog, UNKNOWN))
        # everything in the store up to now is "before start"; the sync cursor starts here
        since = self.clock() - self.config.history_days * 86400.0
        clicks: dict[str, list[str]] = {}
        for e in self.store.iter_events():
            if e.type == "click":
                clicks.setdefault(e.request_id, []).append(e.banner_id)
            self._seq_events = max(self._seq_events, e.seq)
        n = 0
        for r in self.store.iter_rankings():
            self._seq_rankings = max(self._seq_rankings, r.seq)
            if r.ts < since:
                continue
            shown = [(b, self._category(b)) for b, *_ in r.shown()]
            self.online.add_ranking(r.staff_id, r.request_id, r.ts, shown, clicked=clicks.get(r.request_id, ()))
            n += len(shown)
        log.info("click history at start: %d impressions from the history file, %d from the store",
                 len(self.online) - n, n)

    # -- models -----------------------------------------------------------------------
    def reload(self) -> ReloadReport:
        """Load what the registry (or the config) says each arm serves. An arm whose new
        model fails to load keeps the model it was running and reports why; the arms
        are swapped in one assignment."""
        with self._reload_lock:
            self._registry_stamp = self.registry.state_stamp()
            report: dict[str, dict] = {}
            new_arms: dict[str, ArmState] = {}
            try:
                promoted = self.registry.state()["arms"]
                registry_error = None
            except Exception as e:
                promoted, registry_error = {}, str(e)
            for i, arm in enumerate(self.config.arms):
                old = self.arms.get(arm.name)
                want = arm.model or promoted.get(arm.name)
                rng = np.random.default_rng(self._seed_seq.spawn(1)[0]) if old is None else old.ranker.rng
                if registry_error and old is not None:
                    new_arms[arm.name] = old
                    report[arm.name] = {"version": old.version, "status": "kept", "error": registry_error}
                    continue
                if want is None:
                    err = registry_error or "no model promoted for this arm"
                    new_arms[arm.name] = ArmState(arm, Ranker(None, arm.epsilon, rng), FALLBACK_VERSION, None, err)
                    report[arm.name] = {"version": FALLBACK_VERSION, "status": "fallback", "error": err}
                    continue
                if old is not None and old.version == want and old.scorer is not None:
                    new_arms[arm.name] = old
                    report[arm.name] = {"version": want, "status": "unchanged", "error": None}
                    continue
                try:
                    scorer = self.registry.load(want)
                except Exception as e:  # checksum, format, or anything the loader raises
                    err = f"model {want!r} failed to load: {e}"
                    log.error("arm %s: %s", arm.name, err)
                    if old is not None and old.scorer is not None:
                        new_arms[arm.name] = ArmState(arm, old.ranker, old.version, old.scorer, err, old.lock)
                        report[arm.name] = {"version": old.version, "status": "kept", "error": err}
                    else:
                        new_arms[arm.name] = ArmState(arm, Ranker(None, arm.epsilon, rng), FALLBACK_VERSION, None, err)
                        report[arm.name] = {"version": FALLBACK_VERSION, "status": "fallback", "error": err}
                    continue
                new_arms[arm.name] = ArmState(arm, Ranker(scorer, arm.epsilon, rng), want, scorer, None)
                report[arm.name] = {"version": want, "status": "loaded", "error": None}
                log.info("arm %s: serving model %s", arm.name, want)
            self.arms = new_arms
            ok = all(r["error"] is None for r in report.values())
            self.last_reload = ReloadReport(report, ok)
            return self.last_reload

    # -- ranking ----------------------------------------------------------------------
    def profile_for(self, staff_id: str, profile: Mapping[str, str] | None) -> Mapping[str, str]:
        if profile:
            return profile
        return self.staff.get(staff_id).attributes

    def candidates_for(self, attributes: Mapping[str, str], ts: float, ids: Sequence[str] | None,
                       catalog: Catalog) -> Candidates:
        """The request's candidates: its own list (eligibility applied to known banners;
        unknown ids ranked with cold-start defaults), else every eligible banner."""
        return self._candidates.get(catalog, attributes, ts, ids)

    def rank(self, staff_id: str, profile: Mapping[str, str] | None = None, candidates: Sequence[str] | None = None,
             slots: int | None = None) -> RankOutcome:
        ts = self.clock()
        slots = int(slots or self.config.slots)
        catalog = self.catalog
        attrs = self.profile_for(staff_id, profile)
        cands = self.candidates_for(attrs, ts, candidates, catalog)
        arm_name = self.assigner.assign(staff_id)
        state = self.arms[arm_name]
        with state.lock:
            result = state.ranker.rank(staff_id, attrs, ts, cands, self.online)
        request_id = self._request_id()
        ids = result.banner_ids
        category = cands.category
        self.online.add_ranking(staff_id, request_id, ts, [(b, category.get(b, UNKNOWN)) for b in ids[:slots]])
        items = list(zip(ids, range(1, len(ids) + 1), result.scores, result.propensities))
        self._enqueue(RankingRecord(request_id, ts, staff_id, arm_name, result.model_version, result.explored, slots,
                                    items, cands.ids, self.writer_id))
        return RankOutcome(request_id, arm_name, result, slots, cands.n_unknown)

    # -- the ranking log (written by a background thread, in batches) -----------------
    # The writer wakes every LOG_INTERVAL seconds (or when flushed, as before storing
    # clicks) and writes whatever is queued, in one statement per LOG_BATCH rankings.
    # Each wake-up and each driver call makes the thread take the GIL back from the one
    # serving requests, which stalls it for far longer than the rows cost: waking per
    # ranking cost more than the ranking; at 0.05 s with BEGIN, INSERT, COMMIT the log
    # still cost ~10 points of rank / no-op throughput on 2 cores, at 0.1 s with one
    # statement per batch ~1 point (bench_service.py's setup, variants side by side;
    # see the README). A crash loses the rankings still queued: the last interval's, or
    # more while the store is slow or locked (writes wait and retry); a click for one of
    # them is still stored and exported, flagged unknown_request (as is, for up to an
    # interval, a click that reaches another worker before the ranking is written).
    LOG_INTERVAL = 0.1
    LOG_BATCH = 500

    def _enqueue(self, record: RankingRecord) -> None:
        with self._pending_cv:
            self._pending += 1
        self._log.append(record)

    def _writer_loop(self) -> None:
        while True:
            self._wake.wait(self.LOG_INTERVAL)
            self._wake.clear()
            stopping = self._stop.is_set()
            self._drain()
            if stopping:
                return

    def _drain(self) -> None:
        while self._log:
            batch = []
            while self._log and len(batch) < self.LOG_BATCH:
                batch.append(self._log.popleft())
            self._write_rankings(batch)

    def _write_rankings(self, batch: list[RankingRecord]) -> None:
        for attempt in range(5):
            try:
                self.store.log_rankings(batch)
                self.store_error = None
                break
            except Exception as e:
                self.store_error = f"ranking log write failed: {e}"
                log.error("%s (attempt %d)", self.store_error, attempt + 1)
                time.sleep(0.05 * 2**attempt)
        else:
            if len(batch) > 1:
                # one record the store refuses must not take the rest of the batch with it
                for record in batch:
                    try:
                        self.store.log_rankings([record])
                    except Exception as e:
                        log.error("ranking %s dropped from the log: %s", record.request_id, e)
        with self._pending_cv:
            self._pending -= len(batch)
            self._pending_cv.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every ranking served so far is in the store."""
        if not self._threads:
            self._drain()
            return True
        deadline = time.monotonic() + timeout
        with self._pending_cv:
            while self._pending:
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._pending_cv.wait(min(remaining, 0.01))
        return True

    # -- events -----------------------------------------------------------------------
    def record_events(self, events: list[ClickEvent]) -> EventsOutcome:
        """Store click events durably (after the rankings they refer to), then let them
        change the online history."""
        now = self.clock()
        for e in events:
            e.received = now
            e.writer = self.writer_id
            if not e.ts:
                e.ts = now
        self.flush()
        out = self.store.add_events(events)
        stored = set(out.stored)
        for e in events:
            if e.event_id in stored and e.type == "click":
                self.online.add_click(e.request_id, e.banner_id)
        return out

    def arms_of(self, events: list[ClickEvent]) -> dict[str, str]:
        """The arm of each event's request, when this process knows the request."""
        out = {}
        for e in events:
            staff = self.online.staff_of(e.request_id)
            if staff is not None:
                out[e.event_id] = self.assigner.assign(staff)
        return out

    # -- admin ------------------------------------------------------------------------
    def put_catalog(self, banners: list[Banner]) -> int:
        catalog = Catalog(banners)
        version = self.store.put_document(CATALOG_DOC, json.dumps([banner_to_dict(b) for b in banners],
                                                                  ensure_ascii=False))
        self.catalog, self._catalog_version = catalog, version
        return version

    def put_staff(self, rows: list[tuple[str, dict]]) -> int:
        version = self.store.upsert_staff(rows)
        merged = dict(self.staff.by_id)
        for sid, attrs in rows:
            merged[sid] = Staff(sid, attrs)
        self.staff = StaffDirectory(merged.values(), self.staff.attribute_names)
        self._staff_version = version
        return version

    # -- other workers' traffic -------------------------------------------------------
    def sync(self) -> None:
        """Pick up what other processes wrote: rankings and clicks (into the online
        history), a new catalog or staff directory, a changed registry (reload)."""
        rankings, events, self._seq_rankings, self._seq_events = self.store.tail(
            self._seq_rankings, self._seq_events, self.writer_id)
        for r in rankings:  # before the clicks, which may refer to them
            self.online.add_ranking(r.staff_id, r.request_id, r.ts, [(b, self._category(b)) for b, *_ in r.shown()])
        for e in events:
            if e.type == "click":
                self.online.add_click(e.request_id, e.banner_id)
        doc = self.store.get_document(CATALOG_DOC)
        if doc is not None and doc[0] != self._catalog_version:
            self.catalog = Catalog(banner_from_dict(o) for o in json.loads(doc[1]))
            self._catalog_version = doc[0]
        doc = self.store.get_document(STAFF_DOC)
        if doc is not None and doc[0] != self._staff_version:
            self.staff = StaffDirectory([Staff(s, a) for s, a in self.store.all_staff()], self.staff.attribute_names)
            self._staff_version = doc[0]
        if self.registry.state_stamp() != self._registry_stamp:
            self.reload()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.config.sync_interval):
            try:
                self.sync()
            except Exception:
                log.exception("sync with the store failed; will retry")

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._writer_loop, name="ranking-log", daemon=True),
                         threading.Thread(target=self._sync_loop, name="store-sync", daemon=True)]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=10)
        if any(t.is_alive() for t in self._threads):
            # the writer is still retrying a write: closing the store under it would lose that batch
            log.error("the ranking-log writer did not stop within 10 s; leaving the store open")
            return
        self._threads = []
        self.flush()
        self.store.close()

    # -- health -----------------------------------------------------------------------
    def readiness(self) -> dict:
        problems = []
        try:
            self.store.check_writable()
            store_ok = True
        except Exception as e:
            store_ok = False
            problems.append(f"store not writable: {e}")
        if self.store_error:
            problems.append(self.store_error)
        arms = {}
        for name, st in self.arms.items():
            arms[name] = {"model_version": st.version, "epsilon": st.arm.epsilon, "share": st.arm.share,
                          "error": st.error}
            if st.scorer is None:
                problems.append(f"arm {name}: no model ({st.error}); answering with the operators' order")
            elif st.error:
                problems.append(f"arm {name}: {st.error}")
        degraded = bool(problems)
        return {"ready": store_ok, "status": "degraded" if degraded else "ok", "problems": problems, "arms": arms,
                "catalog_banners": len(self.catalog), "staff": len(self.staff),
                "history": self.online.counts(), "worker": os.getpid()}
