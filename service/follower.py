"""Keeps a worker's view in step with the event store, which every worker writes to.

At start it loads the click history (a logged impressions file, then the store's own
rankings and clicks of the last ``history_days``) and sets its cursors at the store's
end; from then on, every ``interval`` seconds, it applies what other workers wrote
(rankings before the clicks that may refer to them), the people forgotten (erasure
records: each is dropped from the click history), a catalog or staff directory stored
by another worker, a changed model registry and the arms' shares, and (every
``ramp_every`` seconds) a running ramp's comparison (service.ramp).

What a forgotten person did before their erasure never comes back: neither from the
history file at start, nor from a ranking another worker wrote late.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from recommender.store import ClickEvent, Erasure, Erasures, EventStore, RankingRecord

from .directory import Directory
from .history_cache import load_history_file
from .models import ArmModels
from .online import OnlineHistory
from .ramp import RampMonitor

log = logging.getLogger("service.follower")


def _value(e: ClickEvent) -> float:
    return 1.0 if e.value is None else e.value


def _completions(r: RankingRecord, outcomes: list[tuple[str, str, float]], online: OnlineHistory):
    """The outcomes of an old ranking that count (its shown banners'), as load_outcomes takes them."""
    shown = {b for b, *_ in r.shown()}
    kept = [(b, v) for b, kind, v in outcomes if b in shown and online.counts(b, kind)]
    return ([r.staff_id] * len(kept), [b for b, _ in kept], np.full(len(kept), r.ts), np.array([v for _, v in kept]))


class StoreFollower:
    def __init__(self, store: EventStore, online: OnlineHistory, directory: Directory, models: ArmModels,
                 writer_id: str, ramp: RampMonitor | None = None, ramp_every: float = 60.0):
        self.store = store
        self.online = online
        self.directory = directory
        self.models = models
        self.writer_id = writer_id
        self.ramp = ramp
        self.ramp_every = ramp_every
        self._ramp_due = 0.0
        self.seq_rankings = 0
        self.seq_events = 0
        self.seq_erasures = 0
        self.erased: Erasures | None = None  # read from the store at start
        self.on_sync: Callable[[], None] | None = None  # told after each pass (the metrics' gauges)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_history(self, history_file: Path | None, since: float, cache_dir: Path | None = None) -> None:
        """The click history before start; everything in the store up to now counts as
        "before start", so the cursors start at its end. With ``cache_dir``, the history
        file's counters are built once there and mapped (service.history_cache)."""
        records = self.store.erasures_after(0)
        self.erased = Erasures(self.store.erasure_salt(), records)
        self.seq_erasures = records[-1].seq if records else 0
        if history_file is not None:
            load_history_file(self.online, history_file, self.erased, self.seq_erasures, self.directory.catalog,
                              cache_dir)
        clicks: dict[str, list[str]] = {}
        outcomes: dict[str, list[tuple[str, str, float]]] = {}
        for e in self.store.iter_events():
            if e.is_outcome:
                outcomes.setdefault(e.request_id, []).append((e.banner_id, e.type, _value(e)))
            else:
                clicks.setdefault(e.request_id, []).append(e.banner_id)
            self.seq_events = max(self.seq_events, e.seq)
        n = 0
        erased = self.erased.checker()
        for r in self.store.iter_rankings():
            self.seq_rankings = max(self.seq_rankings, r.seq)
            if erased(r.staff_id, r.ts):
                continue
            if r.ts < since:  # older than the click history, but a completion counts for longer
                if r.request_id in outcomes:
                    self.online.load_outcomes(*_completions(r, outcomes[r.request_id], self.online))
                continue
            self._add_ranking(r, clicks.get(r.request_id, ()), outcomes.get(r.request_id, ()))
            n += len(r.shown())
        log.info("click history at start: %d impressions from the history file, %d from the store",
                 len(self.online) - n, n)

    def apply_erasures(self, records: list[Erasure]) -> int:
        """Drop the people these erasure records name from the click history and the staff
        directory (without waiting for the directory's reload); how many."""
        self.erased.add(records)
        self.seq_erasures = max(self.seq_erasures, records[-1].seq)
        held = {*self.online.people(), *self.directory.staff.by_id}
        ids = self.erased.matching(held, {r.key for r in records})
        if ids:
            for staff_id in ids:  # what reached the store after the erasure (a worker's queue)
                at = self.erased.until_of(staff_id)
                self.online.forget([staff_id], at)
                self.store.delete_rankings_of(staff_id, at)
            self.directory.drop(ids)
            log.info("erasure: %d forgotten people dropped from the click history and staff directory", len(ids))
        return len(ids)

    def _add_ranking(self, r: RankingRecord, clicked=(), outcomes=()) -> None:
        shown = [(b, self.directory.category(b)) for b, *_ in r.shown()]
        self.online.add_ranking(r.staff_id, r.request_id, r.ts, shown, clicked=clicked, outcomes=outcomes)

    def sync(self) -> None:
        """One pass: what other processes wrote since the last one."""
        if self.erased is None:  # no history loaded (a follower driven by hand)
            self.erased = Erasures(self.store.erasure_salt())
        rankings, events, self.seq_rankings, self.seq_events = self.store.tail(
            self.seq_rankings, self.seq_events, self.writer_id)
        late: set[str] = set()
        for r in rankings:  # before the clicks, which may refer to them
            if not self.erased.covers(r.staff_id, r.ts):
                self._add_ranking(r)
            else:  # served before an erasure, written after it: it goes too
                late.add(r.staff_id)
        for staff_id in late:
            self.store.delete_rankings_of(staff_id, self.erased.until_of(staff_id))
        for e in events:
            if e.is_outcome:
                self.online.add_outcome(e.request_id, e.banner_id, e.type, _value(e))
            else:
                self.online.add_click(e.request_id, e.banner_id)
        erasures = self.store.erasures_after(self.seq_erasures)
        if erasures:
            self.apply_erasures(erasures)
        self.directory.refresh()
        now = time.time()
        if self.ramp is not None and now >= self._ramp_due:
            self._ramp_due = now + self.ramp_every
            try:
                self.ramp.check(now)
            except Exception:
                log.exception("checking the ramp failed; will try again")
        if self.models.registry_changed():
            self.models.reload()
        else:
            self.models.refresh_shares(now)  # a ramp's next step comes with the clock
        if self.on_sync is not None:
            self.on_sync()

    def start(self, interval: float) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, args=(interval,), name="store-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync()
            except Exception:
                log.exception("sync with the store failed; will retry")
