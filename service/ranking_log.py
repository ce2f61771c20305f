"""The ranking log: every served ranking written to the event store by a background
thread, in batches, and the ids the rankings are logged under.

The writer wakes every ``interval`` seconds (or when flushed, as before storing clicks)
and writes whatever is queued, in one statement per ``batch`` rankings. Each wake-up and
each driver call makes the thread take the GIL back from the one serving requests, which
stalls it for far longer than the rows cost: waking per ranking cost more than the
ranking; at 0.05 s with BEGIN, INSERT, COMMIT the log still cost ~10 points of rank /
no-op throughput on 2 cores, at 0.1 s with one statement per batch ~1 point
(benchmarks/bench_ranking_log.py). A crash loses the rankings still queued: the last
interval's, or more while the store is slow or locked (writes wait and retry); a click
for one of them is still stored and exported, flagged unknown_request (as is, for up to
an interval, a click that reaches another worker before the ranking is written).
"""
from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
from typing import Callable

from recommender.store import EventStore, RankingRecord

log = logging.getLogger("service.ranking_log")


class RequestIds:
    """128-bit request ids (32 hex digits): the time in milliseconds (48 bits), then 80
    random bits, as in a UUIDv7. Ids that grow with time land at the end of the store's
    request_id index instead of on a random page of it: the ranking log's inserts then
    rewrite a few index pages per batch instead of one per ranking, which cut SQLite's CPU
    per logged ranking by about half (benchmarks/bench_ranking_log.py). The random part
    comes from a generator seeded by the OS (a system call per ranking, as uuid4 makes,
    costs more than the id); ``getrandbits`` is one call into C, so threads cannot
    interleave inside it."""

    def __init__(self):
        self._random = random.Random(os.urandom(32))

    def new(self) -> str:
        return f"{time.time_ns() // 1_000_000:012x}{self._random.getrandbits(80):020x}"


class RankingLog:
    def __init__(self, store: EventStore, interval: float = 0.1, batch: int = 500, retries: int = 4):
        self.store = store
        self.interval = interval
        self.batch = batch
        self.retries = retries
        self.on_dropped: Callable[[int], None] | None = None  # told how many rankings could not be logged
        self.error: str | None = None  # the last write failure, until a write succeeds
        self._queue: collections.deque[RankingRecord] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending = 0
        self._pending_cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def append(self, record: RankingRecord) -> None:
        with self._pending_cv:
            self._pending += 1
        self._queue.append(record)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ranking-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Write what is queued and stop; False if the writer is still retrying a write."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
            self._thread = None
        self._drain()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every ranking appended so far is in the store."""
        if self._thread is None:
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

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._stop.is_set()
            self._drain()
            if stopping:
                return

    def _drain(self) -> None:
        while self._queue:
            batch = []
            while self._queue and len(batch) < self.batch:
                batch.append(self._queue.popleft())
            self._write(batch)

    def _write(self, batch: list[RankingRecord]) -> None:
        """Write a batch; when the store refuses it, write its records one by one, so that a
        record the store cannot take (a bad row) is dropped at once without holding up the
        others. Only when the store takes none of them (it is down or locked) are they
        retried, with backoff, ``retries`` times before being dropped."""
        try:
            self.store.log_rankings(batch)
            self.error = None
        except Exception as e:
            self._write_each(batch, e)
        with self._pending_cv:
            self._pending -= len(batch)
            self._pending_cv.notify_all()

    def _write_each(self, batch: list[RankingRecord], first_error: Exception) -> None:
        failed = batch
        for attempt in range(self.retries + 1):
            refused: list[tuple[RankingRecord, Exception]] = []
            for record in failed:
                try:
                    self.store.log_rankings([record])
                except Exception as e:
                    refused.append((record, e))
            if len(refused) < len(failed):  # the store works: what it refused, it will always refuse
                for record, e in refused:
                    log.error("ranking %s dropped from the log, the store refused it: %s", record.request_id, e)
                self._dropped(len(refused))
                self.error = None
                return
            failed = [record for record, _ in refused]
            self.error = f"ranking log write failed: {refused[0][1] if refused else first_error}"
            log.error("%s (attempt %d of %d)", self.error, attempt + 1, self.retries + 1)
            if attempt < self.retries and not self._stop.is_set():
                time.sleep(0.05 * 2**attempt)
        log.error("%d rankings dropped from the log: the store took none of them", len(failed))
        self._dropped(len(failed))

    def _dropped(self, n: int) -> None:
        if n and self.on_dropped is not None:
            self.on_dropped(n)
