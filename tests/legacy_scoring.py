"""The click-history features as they were computed before the array counters and the
compiled feature kernel: an index per key answering "strictly before t" with binary
searches (LegacyHistory) and the numeric features on whole numpy columns
(legacy_numeric). Kept as the oracle the kernel is checked against (test_kernel.py)."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from features.definition import DAY, NUMERIC_FEATURES, smoothed_rate
from features.history import Events, _codes
from features.pointintime import EventIndex, TimeRanks


def _logit(p):
    p = np.minimum(np.maximum(p, 1e-6), 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _scalar_logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p) - math.log1p(-p)


class LegacyHistory:
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
        self.ranks = TimeRanks(ts)
        r = self.ranks
        # one index per key kind, each answering for views and (through ``clicked``) clicks
        self.by_sb = EventIndex(sb, ts, w, r, clicked)
        self.by_sc = EventIndex(sc, ts, w, r, clicked)
        self.by_s = EventIndex(s, ts, w, r, clicked)
        self.by_b = EventIndex(b, ts, None, r, clicked)

    @classmethod
    def empty(cls, half_life_days: float = 7.0) -> "LegacyHistory":
        return cls(Events([], [], [], np.zeros(0), np.zeros(0)), half_life_days)

    def codes(self, staff, banner, category) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This history's integer codes of ids (-1 for an id it never saw: matches nothing).
        Callers with many rows look up their distinct ids once and index the result."""
        def look(values, vocab):
            return np.fromiter((vocab.get(v, -1) for v in values), dtype=np.int64, count=len(values))
        return look(staff, self.staff_vocab), look(banner, self.banner_vocab), look(category, self.cat_vocab)

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        """History counters for each (staff, banner, category, ts) query, strictly before ts."""
        return self.query_codes(*self.codes(staff, banner, category), ts)

    def query_person(self, staff: str, banner, category, ts: float) -> dict[str, np.ndarray]:
        """``query`` of one person's rows at one time."""
        return self.query([staff] * len(banner), banner, category, np.full(len(banner), float(ts)))

    def query_codes(self, s: np.ndarray, b: np.ndarray, c: np.ndarray, ts) -> dict[str, np.ndarray]:
        ts = np.asarray(ts, dtype=np.float64)
        known_s = s >= 0
        sb = np.where(known_s & (b >= 0), s * self._nb + b, -1)
        sc = np.where(known_s & (c >= 0), s * self._nc + c, -1)
        qr = self.ranks.of_queries(ts)
        decay = np.exp(-(ts - self.t_ref) / self.tau)
        sb_ = self.by_sb.bounds(sb, qrank=qr)
        sc_ = self.by_sc.bounds(sc, qrank=qr)
        s_ = self.by_s.bounds(s, qrank=qr)
        b_ = self.by_b.bounds(b, qrank=qr)
        last_click = self.by_s.last_click(s_)
        return {
            "views_banner": self.by_sb.total(sb_) * decay,
            "clicks_banner": self.by_sb.click_total(sb_) * decay,
            "ever_clicked_banner": (self.by_sb.click_count(sb_) > 0).astype(np.float64),
            "ever_views_banner": self.by_sb.count(sb_).astype(np.float64),
            "views_category": self.by_sc.total(sc_) * decay,
            "ever_views_category": self.by_sc.count(sc_).astype(np.float64),
            "ever_clicks_category": self.by_sc.click_count(sc_).astype(np.float64),
            "clicks_category": self.by_sc.click_total(sc_) * decay,
            "views_person": self.by_s.total(s_) * decay,
            "clicks_person": self.by_s.click_total(s_) * decay,
            "hours_since_click": np.where(np.isnan(last_click), np.nan, (ts - last_click) / 3600.0),
            "global_views": self.by_b.count(b_).astype(np.float64),
            "global_clicks": self.by_b.click_count(b_).astype(np.float64),
        }


class _Numeric:
    _LOG1P_COLS = np.array([0, 3, 5, 6, 10, 12, 13, 14, 17], dtype=np.intp)
    _RATE_COLS = np.array([7, 8, 16], dtype=np.intp)
    # history counters in one block: rows 0-7 are log1p inputs (after age and hours), rows
    # 8-11 clicks and 12-15 views of the category, person, banner-global and all-time
    # category rates, then the completion flag
    _HIST_BLOCK = ("views_banner", "clicks_category", "views_category", "hours_since_click", "ever_views_banner",
                   "ever_clicks_category", "ever_views_category", "global_views",
                   "clicks_category", "clicks_person", "global_clicks", "ever_clicks_category",
                   "views_category", "views_person", "global_views", "ever_views_category",
                   "ever_clicked_banner")

    def numeric(self, encoder, banner_rows, banner_idx: np.ndarray, ts: np.ndarray, hist: Mapping[str, np.ndarray]) -> np.ndarray:
        a, m = encoder.config.prior_strength, encoder.base_rate_
        n = len(ts)
        start = banner_rows.start[banner_idx]
        open_ended = np.isnan(start)
        h = np.empty((1 + len(self._HIST_BLOCK), n))
        # days since the banner's start (0 when open-ended: fmax ignores the nan)
        np.fmax(np.subtract(ts, start, out=h[0]), 0.0, out=h[0])
        h[0] /= DAY
        h[1:] = [hist[k] for k in self._HIST_BLOCK]
        never = np.isnan(h[4])
        h[4][never] = 0.0
        out = np.empty((len(NUMERIC_FEATURES), n))
        out[self._LOG1P_COLS] = np.log1p(h[:9])
        # category, person, banner-global (popularity) and all-time category click rates
        rates = _logit(smoothed_rate(h[9:13], h[13:17], m, a))
        out[self._RATE_COLS] = rates[:3]
        out[1] = open_ended
        out[2] = banner_rows.targeted[banner_idx]
        out[4] = h[17]
        np.subtract(rates[0], rates[1], out=out[9])
        out[11] = never
        np.subtract(rates[3], _scalar_logit(m), out=out[15])
        if len(NUMERIC_FEATURES) > 18:
            _interest(encoder, banner_rows, banner_idx, hist, out)
        return out[:encoder.n_numeric].T


def _interest(encoder, banner_rows, banner_idx, hist, out) -> None:
    """The features added after the kernel (rows 18-21), from their formulas: the log of
    the posterior mean (clicks + k) / (expected + k) of the category, the person and the
    all-time category."""
    k = encoder.interest_prior_
    rate = encoder.category_rate_[banner_rows.category_code[banner_idx]]
    out[18] = np.log((hist["clicks_category"] + k) / (rate * hist["views_category"] + k))
    out[19] = np.log((hist["clicks_person"] + k) / (encoder.base_rate_ * hist["views_person"] + k))
    out[20] = out[18] - out[19]
    out[21] = np.log((hist["ever_clicks_category"] + k) / (rate * hist["ever_views_category"] + k))



def legacy_numeric(encoder, banner_rows, banner_idx, ts, hist: Mapping[str, np.ndarray]) -> np.ndarray:
    """The NUMERIC_FEATURES as the encoder computed them before the compiled kernel."""
    return _Numeric().numeric(encoder, banner_rows, banner_idx, np.asarray(ts, dtype=np.float64), hist)
