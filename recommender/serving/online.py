"""The online click history: each person's impressions and clicks since the service
started, kept in memory and answered through features.history.History, so a click
changes that person's very next ranking through the same feature code as training.

Rows are impressions (what a person was shown, at the ranking's time) whose ``clicked``
flag turns on when a click event names that request and banner: exactly the rows that
``recommender export`` writes for the same traffic, so online features equal the
features a model trained on the export sees.
"""
from __future__ import annotations

import threading

import numpy as np

from features.history import Events, History


class OnlineHistory:
    def __init__(self, half_life_days: float = 7.0):
        self.half_life_days = half_life_days
        self._lock = threading.Lock()
        self._rows: dict[str, list[list]] = {}  # staff -> [[banner, category, ts, clicked], ...]
        self._requests: dict[str, tuple[str, dict[str, int]]] = {}  # request -> (staff, banner -> row index)
        self._cache: dict[str, History] = {}
        # clicks that arrived before their ranking (another worker's ranking not yet
        # synced): applied when the ranking arrives; bounded, oldest dropped first
        self._early: dict[str, set[str]] = {}
        self.max_early = 100_000

    def add_ranking(self, staff_id: str, request_id: str, ts: float, shown: list[tuple[str, str]]) -> None:
        """``shown``: (banner_id, category) of the impressions, in position order."""
        with self._lock:
            if request_id in self._requests:
                return
            rows = self._rows.setdefault(staff_id, [])
            index = {}
            for banner_id, category in shown:
                index[banner_id] = len(rows)
                rows.append([banner_id, category, float(ts), 0])
            self._requests[request_id] = (staff_id, index)
            for banner_id in self._early.pop(request_id, ()):
                if banner_id in index:
                    rows[index[banner_id]][3] = 1
            self._cache.pop(staff_id, None)

    def add_click(self, request_id: str, banner_id: str) -> bool:
        """Mark a shown banner clicked; False when the request or banner is not known here."""
        with self._lock:
            hit = self._requests.get(request_id)
            if hit is None:
                if len(self._early) >= self.max_early:
                    self._early.pop(next(iter(self._early)))
                self._early.setdefault(request_id, set()).add(banner_id)
                return False
            if banner_id not in hit[1]:
                return False
            staff_id, index = hit
            row = self._rows[staff_id][index[banner_id]]
            if not row[3]:
                row[3] = 1
                self._cache.pop(staff_id, None)
            return True

    def staff_of(self, request_id: str) -> str | None:
        hit = self._requests.get(request_id)
        return None if hit is None else hit[0]

    def history_for(self, staff_id: str) -> History | None:
        with self._lock:
            h = self._cache.get(staff_id)
            if h is not None:
                return h
            rows = self._rows.get(staff_id)
            if not rows:
                return None
            ev = Events([staff_id] * len(rows), [r[0] for r in rows], [r[1] for r in rows],
                        np.array([r[2] for r in rows], dtype=np.float64), np.array([r[3] for r in rows], dtype=np.int8))
            h = History(ev, self.half_life_days)
            self._cache[staff_id] = h
            return h

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._rows), len(self._requests)
