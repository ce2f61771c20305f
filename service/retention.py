"""Retention: the service deletes the rankings and clicks older than ``retention_days``
from the event store, at start and then every hour, in a thread of its own.

The thread opens a store connection of its own, so a prune never holds the lock of the
connection that requests and the ranking log use, and it deletes in small transactions
with a pause between two (``EventStore.prune``), so other writers get the store between
batches. Only one worker of a host prunes at a time (a lock file in the model registry
folder); another that finds it taken skips that round.
"""
from __future__ import annotations

import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from recommender.store import PruneResult, open_store
from recommender.timeutil import format_ts

log = logging.getLogger("service.retention")
PRUNE_EVERY = 3600.0  # seconds between two prunes
LOCK_FILE = "prune.lock"


def prune_store(url: str, days: float, now: float, batch: int = 2000, pause: float = 0.0,
                stop: Callable[[], bool] | None = None) -> PruneResult:
    """Delete what is older than ``days`` before ``now`` from the store at ``url``."""
    with open_store(url) as store:
        return store.prune(now - days * 86400.0, batch, pause, stop)


class Retention:
    def __init__(self, db_url: str, days: float, lock_dir: Path, every: float = PRUNE_EVERY,
                 batch: int = 2000, pause: float = 0.05, clock: Callable[[], float] = time.time):
        self.db_url = db_url
        self.days = days
        self.lock_dir = Path(lock_dir)
        self.every = every
        self.batch = batch
        self.pause = pause
        self.clock = clock
        self.last: PruneResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> PruneResult | None:
        """One prune, unless another worker of this host is pruning (None then)."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / LOCK_FILE, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return None
            now = self.clock()
            t = time.perf_counter()
            out = prune_store(self.db_url, self.days, now, self.batch, self.pause, self._stop.is_set)
            if out.rankings or out.events:
                log.info("retention: deleted %d rankings and %d click events from before %s (%.1f s)",
                         out.rankings, out.events, format_ts(now - self.days * 86400.0), time.perf_counter() - t)
            self.last = out
            return out

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("pruning the store failed; will try again")
            if self._stop.wait(self.every):
                return
