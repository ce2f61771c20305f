"""Click history: who saw and clicked which banner when, queried point-in-time.

A ``History`` is built from logged impressions (training, batch ranking) or from the
service's online events; both go through the same class, so the click-history features
are computed by one code path. Every query at time t sees only events strictly before t.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .lru import LRU
from .pointintime import EventIndex, TimeRanks


@dataclass
class Events:
    """Impression events: one row per banner shown, with its click outcome."""

    staff: "list[str] | np.ndarray | Coded"  # staff id per event
    banner: "list[str] | np.ndarray | Coded"  # banner id per event
    category: "list[str] | np.ndarray | Coded"  # the banner's category per event
    ts: np.ndarray  # epoch seconds UTC
    clicked: np.ndarray  # 0/1

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class Coded:
    """Ids given as a vocabulary and an index per event (how logs hold them): building a
    History from millions of events then needs no per-event dictionary lookup."""

    vocab: list[str]
    codes: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)


def _codes(values, vocab: dict[str, int]) -> np.ndarray:
    if isinstance(values, Coded):
        if vocab:
            raise ValueError("a Coded column needs an empty vocabulary")
        vocab.update((v, i) for i, v in enumerate(values.vocab))
        if len(vocab) != len(values.vocab):
            raise ValueError("a Coded vocabulary lists an id twice")
        return np.asarray(values.codes, dtype=np.int64)
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
        self.ranks = TimeRanks(ts)
        r = self.ranks
        # one index per key kind, each answering for views and (through ``clicked``) clicks
        self.by_sb = EventIndex(sb, ts, w, r, clicked)
        self.by_sc = EventIndex(sc, ts, w, r, clicked)
        self.by_s = EventIndex(s, ts, w, r, clicked)
        self.by_b = EventIndex(b, ts, None, r, clicked)

    @classmethod
    def empty(cls, half_life_days: float = 7.0) -> "History":
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


# Running totals of one key: [impressions, their growth-weighted sum, clicked impressions,
# their weighted sum] (see History). A plain list: a query copies whole totals with one
# list.extend per key instead of reading four attributes.
VIEWS, VIEWS_W, CLICKS, CLICKS_W = range(4)


def _sums() -> list:
    return [0, 0.0, 0, 0.0]


class _Person:
    __slots__ = ("total", "banners", "categories", "last_click")

    def __init__(self) -> None:
        self.total = _sums()
        self.banners: dict[str, list] = {}
        self.categories: dict[str, list] = {}
        self.last_click = float("nan")


class _ListCodes:
    """A candidate list as RunningHistory reads it: each banner's code (0 when the
    history has not seen it yet), its distinct categories and each row's category slot."""

    __slots__ = ("category", "codes", "complete", "n_codes", "distinct_categories", "category_slot")

    def __init__(self, banner: list[str], category: list[str], banner_code: dict[str, int]):
        self.category = category
        self.codes = np.fromiter((banner_code.get(b, 0) for b in banner), dtype=np.intp, count=len(banner))
        self.complete = bool(np.all(self.codes > 0))  # else: looked up again once the history grows
        self.n_codes = len(banner_code)
        slot = {c: j for j, c in enumerate(dict.fromkeys(category))}
        self.distinct_categories = list(slot)
        self.category_slot = np.fromiter((slot[c] for c in category), dtype=np.intp, count=len(category))


class RunningHistory:
    """The counters of ``History`` kept up to date event by event, for the service: an
    impression or a click costs a few dictionary updates instead of rebuilding an index,
    and memory grows with the people and banners seen, not with the events.

    It answers ``query`` exactly as a History built over the same events would, for query
    times after every event it holds (the service's case: it learns of an event after it
    happened); a property test checks the equality. Impressions carry their own time: a
    click added later updates the click counters of that impression, as History counts a
    clicked impression."""

    MAX_CANDIDATE_LISTS = 1024  # a province's profiles each have their eligible list

    def __init__(self, half_life_days: float = 7.0, t_ref: float | None = None):
        """``t_ref``: the origin of the growth weights (default: the time of the first
        impression added, or the latest of a first bulk load); any origin gives the same
        answers (it moves forward by itself when weights would grow too large)."""
        self.half_life_days = float(half_life_days)
        self.tau = self.half_life_days * 86400.0 / np.log(2.0)
        self.t_ref = t_ref
        self._people: dict[str, _Person] = {}
        # everyone's impressions and clicks per banner, in arrays by banner code (code 0:
        # no banner, always zero), so a request reads its candidates' totals in one step
        self._banner_code: dict[str, int] = {}
        self._global = np.zeros((2, 64))
        self._views_at, self._clicks_at = memoryview(self._global[0]), memoryview(self._global[1])
        self._lists: LRU[tuple[str, ...], _ListCodes] = LRU(self.MAX_CANDIDATE_LISTS)
        self.n_events = 0

    def __len__(self) -> int:
        return self.n_events

    @property
    def n_people(self) -> int:
        return len(self._people)

    # growth weights stay below exp(REBASE): past that the origin moves up to the new event
    # (a history file spanning decades, or a service running for years, cannot overflow)
    REBASE = 50.0

    def _weight(self, ts: float) -> float:
        if self.t_ref is None:
            self.t_ref = float(ts)
        elif ts - self.t_ref > self.REBASE * self.tau:
            self._rebase(float(ts))
        return math.exp((ts - self.t_ref) / self.tau)  # far before t_ref: 0.0 (fully decayed)

    def _code(self, banner: str) -> int:
        code = self._banner_code.get(banner)
        if code is None:
            code = self._banner_code[banner] = len(self._banner_code) + 1
            if code >= self._global.shape[1]:
                grown = np.zeros((2, 2 * code))
                grown[:, :self._global.shape[1]] = self._global
                self._global = grown
                # item updates through memoryviews: a numpy scalar update costs ~20x more
                self._views_at, self._clicks_at = memoryview(grown[0]), memoryview(grown[1])
        return code

    def _list_codes(self, banner: Sequence[str], category: Sequence[str]) -> "_ListCodes":
        """Banner codes and distinct categories of a candidate list, kept for the next
        request with the same banners (looked up again once the history has grown, if it
        had not seen them all)."""
        key = tuple(banner)
        hit = self._lists.get(key)
        if hit is not None and hit.category == category and (hit.complete or hit.n_codes == len(self._banner_code)):
            return hit
        return self._lists.put(key, _ListCodes(list(banner), list(category), self._banner_code))

    def _rebase(self, t_ref: float) -> None:
        """Move the weights' origin forward: every weighted sum scales by
        exp(-(new - old) / tau) (what the decay at query time would have applied)."""
        f = math.exp(-(t_ref - self.t_ref) / self.tau)
        for p in self._people.values():
            for sums in (p.total, *p.banners.values(), *p.categories.values()):
                sums[VIEWS_W] *= f
                sums[CLICKS_W] *= f
        self.t_ref = t_ref

    def add_impression(self, staff: str, banner: str, category: str, ts: float) -> None:
        p = self._people.get(staff)
        if p is None:
            p = self._people[staff] = _Person()
        w = self._weight(ts)
        for sums in (p.total, p.banners.get(banner) or p.banners.setdefault(banner, _sums()),
                     p.categories.get(category) or p.categories.setdefault(category, _sums())):
            sums[VIEWS] += 1
            sums[VIEWS_W] += w
        self._views_at[self._code(banner)] += 1
        self.n_events += 1

    def add_click(self, staff: str, banner: str, category: str, ts: float) -> None:
        """Mark one impression (added before, at ``ts``) clicked. The caller makes sure an
        impression is marked once."""
        p = self._people[staff]
        w = self._weight(ts)
        for sums in (p.total, p.banners[banner], p.categories[category]):
            sums[CLICKS] += 1
            sums[CLICKS_W] += w
        self._clicks_at[self._code(banner)] += 1
        p.last_click = ts if np.isnan(p.last_click) else max(p.last_click, ts)

    def people(self) -> list[str]:
        """The staff ids it holds counters of."""
        return list(self._people)

    def forget(self, staff: str) -> int:
        """Remove one person: their own counters, and their impressions and clicks from
        every banner's global counts (as if they had never been added); the number of
        impressions removed."""
        p = self._people.pop(staff, None)
        if p is None:
            return 0
        for banner, sums in p.banners.items():
            code = self._code(banner)
            self._global[0, code] -= sums[VIEWS]
            self._global[1, code] -= sums[CLICKS]
        self.n_events -= p.total[VIEWS]
        return p.total[VIEWS]

    def add_events(self, events: Events) -> None:
        """Many impressions with their clicks at once (the history loaded at start): the
        same totals as add_impression and add_click one event at a time, summed by key
        with numpy first."""
        if not len(events):
            return
        sv: dict[str, int] = {}
        bv: dict[str, int] = {}
        cv: dict[str, int] = {}
        s, b, c = _codes(events.staff, sv), _codes(events.banner, bv), _codes(events.category, cv)
        staff_ids, banner_ids, cat_ids = list(sv), list(bv), list(cv)
        ts = np.asarray(events.ts, dtype=np.float64)
        clicked = (np.asarray(events.clicked) > 0).astype(np.float64)
        if self.t_ref is None:
            self.t_ref = float(ts.max())  # weights <= 1; events decades older underflow to 0
        elif float(ts.max()) - self.t_ref > self.REBASE * self.tau:
            self._rebase(float(ts.max()))
        w = np.exp((ts - self.t_ref) / self.tau)

        def totals(key: np.ndarray):
            uniq, inv = np.unique(key, return_inverse=True)
            inv = inv.reshape(-1)
            m = len(uniq)
            return uniq, zip(np.bincount(inv, minlength=m).tolist(), np.bincount(inv, weights=w, minlength=m).tolist(),
                             np.bincount(inv, weights=clicked, minlength=m).astype(np.int64).tolist(),
                             np.bincount(inv, weights=w * clicked, minlength=m).tolist())

        def add(sums: list, v: int, vw: float, k: int, kw: float) -> None:
            sums[VIEWS] += v
            sums[VIEWS_W] += vw
            sums[CLICKS] += k
            sums[CLICKS_W] += kw

        people: list[_Person | None] = [None] * len(staff_ids)
        for i in np.unique(s).tolist():  # only the people with events (a vocabulary may hold more)
            p = self._people.get(staff_ids[i])
            people[i] = p if p is not None else self._people.setdefault(staff_ids[i], _Person())
        uniq, rows = totals(s)
        for key, t in zip(uniq.tolist(), rows):
            add(people[key].total, *t)
        nb, nc = max(len(banner_ids), 1), max(len(cat_ids), 1)
        uniq, rows = totals(s * nb + b)
        for key, t in zip(uniq.tolist(), rows):
            d = people[key // nb].banners
            bid = banner_ids[key % nb]
            add(d.get(bid) or d.setdefault(bid, _sums()), *t)
        uniq, rows = totals(s * nc + c)
        for key, t in zip(uniq.tolist(), rows):
            d = people[key // nc].categories
            cid = cat_ids[key % nc]
            add(d.get(cid) or d.setdefault(cid, _sums()), *t)
        uniq, rows = totals(b)
        for key, (v, _vw, k, _kw) in zip(uniq.tolist(), rows):
            code = self._code(banner_ids[key])
            self._global[0, code] += v
            self._global[1, code] += k
        last = np.full(len(staff_ids), -np.inf)
        hit = clicked > 0
        np.maximum.at(last, s[hit], ts[hit])
        for key in np.flatnonzero(np.isfinite(last)).tolist():
            p = people[key]
            p.last_click = float(last[key]) if np.isnan(p.last_click) else max(p.last_click, float(last[key]))
        self.n_events += len(ts)

    def query_person(self, staff: str, banner: Sequence[str], category: Sequence[str],
                     ts: float) -> dict[str, np.ndarray]:
        """``query`` of one person's rows at one time (a ranking request): the same
        counters, with the person's totals looked up once, each distinct category once,
        and per-banner totals copied only for the banners the person has seen."""
        n = len(banner)
        p = self._people.get(staff) or _Person()
        empty = _sums()
        codes = self._list_codes(banner, category)
        g = self._global[:, codes.codes]
        pb = p.banners
        seen_rows, seen = [], []
        for i, b in enumerate(banner):
            sums = pb.get(b)
            if sums is not None:
                seen_rows.append(i)
                seen.extend(sums)
        own = np.zeros((n, 4))
        if seen_rows:
            own[seen_rows] = np.array(seen, dtype=np.float64).reshape(len(seen_rows), 4)
        pc = p.categories
        flat: list = []
        for c in codes.distinct_categories:
            flat.extend(pc.get(c, empty))
        cat = np.array(flat, dtype=np.float64).reshape(-1, 4)[codes.category_slot]
        decay = math.exp(-(ts - (self.t_ref or 0.0)) / self.tau)
        total = p.total
        # >= 0: a ranking synced from a host whose clock runs ahead is not "in the future"
        hours = max(ts - p.last_click, 0.0) / 3600.0 if not math.isnan(p.last_click) else math.nan
        person = np.empty((3, n))  # the same for every row
        person[:] = [[total[VIEWS_W] * decay], [total[CLICKS_W] * decay], [hours]]
        decayed = [1.0, decay, 1.0, decay]  # the weighted sums decay; the counts do not
        own *= decayed
        cat *= decayed
        return {
            "views_banner": own[:, VIEWS_W], "clicks_banner": own[:, CLICKS_W],
            "views_category": cat[:, VIEWS_W], "clicks_category": cat[:, CLICKS_W],
            "views_person": person[0], "clicks_person": person[1],
            "ever_clicked_banner": (own[:, CLICKS] > 0).astype(np.float64), "ever_views_banner": own[:, VIEWS],
            "ever_views_category": cat[:, VIEWS], "ever_clicks_category": cat[:, CLICKS],
            "global_views": g[0], "global_clicks": g[1],
            "hours_since_click": person[2],
        }

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        """History.query's counters; every event held counts as before ``ts``. Rows come
        in runs of one person at one time (a request's candidates), each read by
        ``query_person``."""
        t = np.asarray(ts, dtype=np.float64).tolist()
        staff, banner, category = list(staff), list(banner), list(category)
        starts = [i for i in range(len(t)) if i == 0 or staff[i] != staff[i - 1] or t[i] != t[i - 1]]
        parts = [self.query_person(staff[i], banner[i:j], category[i:j], t[i])
                 for i, j in zip(starts, [*starts[1:], len(t)])]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return self.query_person("", [], [], 0.0)
        return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
