"""Point-in-time counting: what happened to a key strictly before a time.

For each query (key, t) it counts, or sums a weight over, the events of that key with
ts < t, by binary searches over the events sorted once. The simulator's ground truth
counts with it; the click-history features use features.counters, whose time-ordered
replay gives the same point-in-time answers (the former features, built on this index,
are the oracle of tests/legacy_scoring.py).
"""
from __future__ import annotations

import numpy as np


class TimeRanks:
    """The distinct event times, so that a time becomes an exact integer rank: an event's
    rank is its position among them, a query's rank the number of times strictly before it.
    Several indexes over the same events share one TimeRanks, so a query is ranked once."""

    def __init__(self, ts: np.ndarray):
        self.times = np.unique(np.asarray(ts, dtype=np.float64))
        self.width = np.int64(len(self.times) + 1)

    def of_events(self, ts: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.times, np.asarray(ts, dtype=np.float64))

    def of_queries(self, qts: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.times, np.asarray(qts, dtype=np.float64), side="left")


class EventIndex:
    """Events (key, ts, weight) sorted once by (key, time rank) packed into one int64;
    answers many 'strictly before t' queries with two binary searches each.

    With ``clicked`` (0/1 per event) the same index also answers for the clicked events
    alone (their count, weighted sum and last time), so views and clicks of one key cost
    one lookup."""

    def __init__(self, keys: np.ndarray, ts: np.ndarray, weights: np.ndarray | None = None, ranks: TimeRanks | None = None,
                 clicked: np.ndarray | None = None):
        keys = np.asarray(keys, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.float64)
        self.ranks = ranks if ranks is not None else TimeRanks(ts)
        packed = keys * self.ranks.width + self.ranks.of_events(ts)
        order = np.argsort(packed, kind="stable")
        self.packed = packed[order]
        self.ts = ts[order]
        w = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)[order]
        self.cum = np.concatenate([[0.0], np.cumsum(w)])
        if clicked is not None:
            c = np.asarray(clicked)[order] > 0
            self.cum_clicks = np.concatenate([[0], np.cumsum(c)])
            self.cum_click_weight = np.concatenate([[0.0], np.cumsum(np.where(c, w, 0.0))])
            # position of the last clicked event at or before each position (-1: none yet)
            self.last_click_at = np.maximum.accumulate(np.where(c, np.arange(len(c)), -1)) if len(c) else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.packed)

    def bounds(self, qkeys, qts=None, qrank: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """[lo, pos) = the events of each query's key strictly before its time. Negative keys
        match nothing. Pass ``qrank`` (TimeRanks.of_queries) to skip ranking the times again."""
        qkeys = np.asarray(qkeys, dtype=np.int64)
        if qrank is None:
            qrank = self.ranks.of_queries(qts)
        base = qkeys * self.ranks.width
        lo = np.searchsorted(self.packed, base, side="left")
        pos = np.searchsorted(self.packed, base + qrank, side="left")
        return lo, pos

    def count(self, b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return (b[1] - b[0]).astype(np.int64)

    def total(self, b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return self.cum[b[1]] - self.cum[b[0]]

    def last(self, b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        lo, pos = b
        out = np.full(len(lo), np.nan)
        has = pos > lo
        out[has] = self.ts[pos[has] - 1]
        return out

    def click_count(self, b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return self.cum_clicks[b[1]] - self.cum_clicks[b[0]]

    def click_total(self, b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return self.cum_click_weight[b[1]] - self.cum_click_weight[b[0]]

    def last_click(self, b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """ts of the key's last clicked event in [lo, pos) (nan if none)."""
        lo, pos = b
        if not len(self.packed):
            return np.full(len(lo), np.nan)
        at = self.last_click_at[np.maximum(pos - 1, 0)]
        return np.where((pos > lo) & (at >= lo), self.ts[np.maximum(at, 0)], np.nan)

    def count_before(self, qkeys, qts) -> np.ndarray:
        """Number of events with the query's key and ts strictly before the query's ts."""
        return self.count(self.bounds(qkeys, qts))

    def sum_before(self, qkeys, qts) -> np.ndarray:
        """Sum of the weights of the events with the query's key strictly before its ts."""
        return self.total(self.bounds(qkeys, qts))

    def last_before(self, qkeys, qts) -> np.ndarray:
        """ts of the last event with the query's key strictly before its ts (nan if none)."""
        return self.last(self.bounds(qkeys, qts))
