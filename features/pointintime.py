"""Point-in-time counting: what happened to a key strictly before a time.

The primitive behind every click-history feature (and the simulator's ground truth):
for each query (key, t) it counts, or sums a weight over, the events of that key with
ts < t. Events at t or later are never seen, which is what makes training features
equal to the features serving would have computed at that moment.
"""
from __future__ import annotations

import numpy as np


class EventIndex:
    """Events (key, ts, weight) sorted once; answers many 'strictly before t' queries.

    Keys are non-negative integers. Times are ranked among the distinct event times so
    that (key, time rank) packs exactly into one int64 and a single searchsorted answers
    every query.
    """

    def __init__(self, keys: np.ndarray, ts: np.ndarray, weights: np.ndarray | None = None):
        keys = np.asarray(keys, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.float64)
        self.times = np.unique(ts)
        self.width = np.int64(len(self.times) + 1)
        packed = keys * self.width + np.searchsorted(self.times, ts)
        order = np.argsort(packed, kind="stable")
        self.packed = packed[order]
        self.ts = ts[order]
        w = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)[order]
        self.cum = np.concatenate([[0.0], np.cumsum(w)])

    def __len__(self) -> int:
        return len(self.packed)

    def _bounds(self, qkeys, qts) -> tuple[np.ndarray, np.ndarray]:
        qkeys = np.asarray(qkeys, dtype=np.int64)
        qts = np.asarray(qts, dtype=np.float64)
        base = qkeys * self.width
        lo = np.searchsorted(self.packed, base, side="left")
        # first time rank >= qts: every event below it has ts < qts
        pos = np.searchsorted(self.packed, base + np.searchsorted(self.times, qts, side="left"), side="left")
        return lo, pos

    def count_before(self, qkeys, qts) -> np.ndarray:
        """Number of events with the query's key and ts strictly before the query's ts."""
        lo, pos = self._bounds(qkeys, qts)
        return (pos - lo).astype(np.int64)

    def sum_before(self, qkeys, qts) -> np.ndarray:
        """Sum of the weights of the events with the query's key strictly before its ts."""
        lo, pos = self._bounds(qkeys, qts)
        return self.cum[pos] - self.cum[lo]

    def last_before(self, qkeys, qts) -> np.ndarray:
        """ts of the last event with the query's key strictly before its ts (nan if none)."""
        lo, pos = self._bounds(qkeys, qts)
        out = np.full(len(lo), np.nan)
        has = pos > lo
        out[has] = self.ts[pos[has] - 1]
        return out
