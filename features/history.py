"""Click history: who saw and clicked which banner when, queried point-in-time.

A ``History`` is built from logged impressions (training, batch ranking) or from the
service's online events; both go through the same class, so the click-history features
are computed by one code path. Every query at time t sees only events strictly before t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pointintime import EventIndex


@dataclass
class Events:
    """Impression events: one row per banner shown, with its click outcome."""

    staff: list[str] | np.ndarray  # staff id per event
    banner: list[str] | np.ndarray  # banner id per event
    category: list[str] | np.ndarray  # the banner's category per event
    ts: np.ndarray  # epoch seconds UTC
    clicked: np.ndarray  # 0/1

    def __len__(self) -> int:
        return len(self.ts)


def _codes(values, vocab: dict[str, int]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        c = vocab.get(v)
        if c is None:
            c = vocab[v] = len(vocab)
        out[i] = c
    return out


class History:
    """Point-in-time counters over events, keyed by person, person x banner, person x
    category and banner. Decayed sums use a half-life (days)."""

    def __init__(self, events: Events, half_life_days: float = 7.0):
        self.half_life_days = float(half_life_days)
        self.tau = self.half_life_days * 86400.0 / np.log(2.0)
        self.staff_vocab: dict[str, int] = {}
        self.banner_vocab: dict[str, int] = {}
        self.cat_vocab: dict[str, int] = {}
        ts = np.asarray(events.ts, dtype=np.float64)
        self.t_ref = float(ts.min()) if len(ts) else 0.0
        s = _codes(events.staff, self.staff_vocab)
        b = _codes(events.banner, self.banner_vocab)
        c = _codes(events.category, self.cat_vocab)
        clicked = np.asarray(events.clicked) > 0
        # growth weights: decayed sum at t = exp(-(t - t_ref)/tau) * sum exp((t_j - t_ref)/tau)
        w = np.exp((ts - self.t_ref) / self.tau)
        self._nb = max(len(self.banner_vocab), 1)
        self._nc = max(len(self.cat_vocab), 1)
        self.n_events = len(ts)
        sb = s * self._nb + b
        sc = s * self._nc + c
        self.view_sb = EventIndex(sb, ts, w)
        self.click_sb = EventIndex(sb[clicked], ts[clicked], w[clicked])
        self.view_sc = EventIndex(sc, ts, w)
        self.click_sc = EventIndex(sc[clicked], ts[clicked], w[clicked])
        self.view_s = EventIndex(s, ts, w)
        self.click_s = EventIndex(s[clicked], ts[clicked], w[clicked])
        self.view_b = EventIndex(b, ts)
        self.click_b = EventIndex(b[clicked], ts[clicked])

    @classmethod
    def empty(cls, half_life_days: float = 7.0) -> "History":
        return cls(Events([], [], [], np.zeros(0), np.zeros(0)), half_life_days)

    def _lookup(self, values, vocab) -> np.ndarray:
        # ids never seen get a code past every key: they match no event
        unseen = 10**9
        return np.fromiter((vocab.get(v, unseen) for v in values), dtype=np.int64, count=len(values))

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        """History counters for each (staff, banner, category, ts) query, strictly before ts."""
        return self.query_codes(*self.codes(staff, banner, category), ts)

    def codes(self, staff, banner, category) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integer codes of ids for ``query_codes`` (ids never seen get a code that matches
        no event). Encoding a vocabulary once and gathering is much faster than encoding
        millions of repeated ids."""
        return (self._lookup(staff, self.staff_vocab), self._lookup(banner, self.banner_vocab),
                self._lookup(category, self.cat_vocab))

    def query_codes(self, s, b, c, ts, fields=None) -> dict[str, np.ndarray]:
        """``query`` on codes from ``codes``; ``fields`` limits the counters computed."""
        ts = np.asarray(ts, dtype=np.float64)
        s, b, c = (np.asarray(x, dtype=np.int64) for x in (s, b, c))
        want = (lambda name: True) if fields is None else (lambda name: name in fields)
        known_s = s < 10**9
        sb = np.where(known_s & (b < 10**9), s * self._nb + b, -1)
        sc = np.where(known_s & (c < 10**9), s * self._nc + c, -1)
        s = np.where(known_s, s, -1)
        bq = np.where(b < 10**9, b, -1)
        decay = np.exp(-(ts - self.t_ref) / self.tau)
        out: dict[str, np.ndarray] = {}
        if want("views_banner"):
            out["views_banner"] = self.view_sb.sum_before(sb, ts) * decay
        if want("clicks_banner"):
            out["clicks_banner"] = self.click_sb.sum_before(sb, ts) * decay
        if want("ever_clicked_banner"):
            out["ever_clicked_banner"] = (self.click_sb.count_before(sb, ts) > 0).astype(np.float64)
        if want("ever_views_banner"):
            out["ever_views_banner"] = self.view_sb.count_before(sb, ts).astype(np.float64)
        if want("views_category"):
            out["views_category"] = self.view_sc.sum_before(sc, ts) * decay
        if want("ever_views_category"):
            out["ever_views_category"] = self.view_sc.count_before(sc, ts).astype(np.float64)
        if want("ever_clicks_category"):
            out["ever_clicks_category"] = self.click_sc.count_before(sc, ts).astype(np.float64)
        if want("clicks_category"):
            out["clicks_category"] = self.click_sc.sum_before(sc, ts) * decay
        if want("views_person"):
            out["views_person"] = self.view_s.sum_before(s, ts) * decay
        if want("clicks_person"):
            out["clicks_person"] = self.click_s.sum_before(s, ts) * decay
        if want("hours_since_click"):
            last_click = self.click_s.last_before(s, ts)
            out["hours_since_click"] = np.where(np.isnan(last_click), np.nan, (ts - last_click) / 3600.0)
        if want("global_views"):
            out["global_views"] = self.view_b.count_before(bq, ts).astype(np.float64)
        if want("global_clicks"):
            out["global_clicks"] = self.click_b.count_before(bq, ts).astype(np.float64)
        return out


_SUMMED = ("views_banner", "clicks_banner", "ever_views_banner", "views_category", "clicks_category",
           "ever_views_category", "ever_clicks_category",
           "views_person", "clicks_person", "global_views", "global_clicks")


class LayeredHistory:
    """Several histories over disjoint events answered as one: counts and decayed sums add,
    'ever clicked' is an or, hours since the last click is the smallest. The service layers
    the history it loaded at start (large, immutable) with each person's recent events."""

    def __init__(self, layers: list):
        self.layers = [h for h in layers if h is not None]

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        if not self.layers:
            return History.empty().query(staff, banner, category, ts)
        parts = [h.query(staff, banner, category, ts) for h in self.layers]
        out = dict(parts[0])
        for p in parts[1:]:
            for k in _SUMMED:
                out[k] = out[k] + p[k]
            out["ever_clicked_banner"] = np.maximum(out["ever_clicked_banner"], p["ever_clicked_banner"])
            out["hours_since_click"] = np.fmin(out["hours_since_click"], p["hours_since_click"])
        return out
