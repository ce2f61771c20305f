"""The click history file's counters, built once and kept on disk for every worker.

Reading a province's history file (millions of logged impressions, each validated) takes
far longer than a start may; the counters built from it are a few flat arrays
(features.counters). The first worker to start builds them into the cache folder; every
worker then maps the same files read-only, so the operating system holds one copy
however many workers there are, and a restart with the same file maps them again
without reading it. What happened since (the store's rankings and clicks, the live
traffic) goes on top, in each worker's own delta.

A saved base is keyed by the file (path, size, modification time), the half-life, the
catalog's banner categories and the erasures in force: any change builds a new one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from features.history import RunningHistory
from features.pipeline import events_from_log
from recommender.contracts import load_impressions
from recommender.domain import UNKNOWN
from recommender.store import Erasures
from recommender.store.export import without_erased

from .online import OnlineHistory

log = logging.getLogger("service.history")


def load_history_file(online: OnlineHistory, path: Path, erased: Erasures, erasure_seq: int, catalog,
                      cache_dir: Path | None) -> int:
    """Give ``online`` the counters of the history file (from the cache, or built and
    cached); the file's events are also read when caps, delivery goals or completions
    need them. The number of impressions it holds."""
    events = None

    def read():
        nonlocal events
        if events is None:
            log = without_erased(load_impressions(path), erased)
            events = events_from_log(log, catalog, UNKNOWN)
            if log.has_outcomes:
                _load_outcomes(online, log)
        return events

    if online.needs_events:
        read()
    if cache_dir is None:
        online.load(read())
        return len(online)
    bases = []
    try:
        with _locked(cache_dir):
            for half_life in online.half_lives:
                folder = cache_dir / _name(path, half_life, erasure_seq, catalog)
                if not folder.is_dir():
                    _build(folder, read(), half_life)
                bases.append(RunningHistory.from_base(folder))
    except OSError as e:  # a cache folder it may not write: every worker reads the file itself
        log.warning("click history cache %s not usable (%s); reading %s without it", cache_dir, e, path)
        online.load(read())
        return len(online)
    for base in bases:  # only once every one is mapped: a failure above leaves ``online`` as it was
        online.set_base(base)
    if events is not None:
        online.load_controls(events)
    return len(online)


def _load_outcomes(online: OnlineHistory, log) -> None:
    """The completions of the history file's rows that had their banner's outcome."""
    rows = np.flatnonzero(log.outcome > 0)
    online.load_outcomes([log.staff_ids[s] for s in log.staff[rows]], [log.banner_ids[b] for b in log.banner[rows]],
                         log.ts[rows], log.outcome[rows])


def _build(folder: Path, events, half_life: float) -> None:
    running = RunningHistory(half_life)
    running.add_events(events)
    for stale in folder.parent.glob(f"{folder.name.rsplit('-', 2)[0]}-*-h{half_life:g}"):
        shutil.rmtree(stale, ignore_errors=True)  # an older version of the same file (a mapping survives)
    running.save_base(folder)
    log.info("click history: %d impressions of %d people saved to %s", len(running), running.n_people, folder)


def _name(path: Path, half_life: float, erasure_seq: int, catalog) -> str:
    st = path.stat()
    categories = sorted((b.banner_id, b.category) for b in catalog)
    key = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, half_life, erasure_seq, categories])
    return f"{path.stem}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}-h{half_life:g}"


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """One worker builds at a time; the others wait, then map what it built."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
