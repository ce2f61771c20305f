"""Click history: who saw and clicked which banner when, as the features read it.

Both classes keep their counters in the arrays of ``features.counters`` and read them
with its compiled functions, so there is one definition of every counter:

- ``History`` (training, batch ranking, offline evaluation) answers point-in-time: a
  query at t sees only the events strictly before t. It replays the events in time order
  and reads each query just before the events of its own time.
- ``RunningHistory`` (the service) keeps the counters up to date event by event: a
  read-only ``base`` built once from the history at start (which the service's workers
  map from one file) plus a growing ``delta`` of what happened since.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pathlib import Path

from .counters import (REBASE, CounterArrays, HistoryRows, N_HIST, add_events, add_online, build_fixed,
                       gather_person, load_counters, rescale, save_counters, sweep)
from .kernel import score_person
from .lru import LRU

_NO_CLICKS = np.zeros(64, dtype=np.int8)  # the clicks of a ranking's impressions when added (read, never written)


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
    """Point-in-time counters over events: person, person x banner, person x category and
    banner. Decayed sums use a half-life (days)."""

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
        order = np.argsort(ts, kind="stable")
        self.n_events = len(ts)
        self._ts = ts[order]
        self._p = s[order].astype(np.int32)
        self._b = b[order].astype(np.int32)
        self._clicked = (np.asarray(events.clicked) > 0)[order]
        # growth weights: decayed sum at t = exp(-(t - t_ref)/tau) * sum exp((t_j - t_ref)/tau)
        self._w = np.exp((self._ts - self.t_ref) / self.tau)
        self._layout, jb, jc = build_fixed(self._p, self._b, c[order].astype(np.int32), len(self.staff_vocab),
                                           len(self.banner_vocab), len(self.cat_vocab))
        self._jb, self._jc = jb.astype(np.int32), jc.astype(np.int32)
        self._resume: tuple[CounterArrays, int, float] | None = None  # the last replay's counters and position
        self._lock = threading.Lock()

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

    def query_codes(self, s: np.ndarray, b: np.ndarray, c: np.ndarray, ts) -> HistoryRows:
        """``query`` of codes (``codes``). The replay resumes where the last query left
        off when every time asked is at or after the last one's latest (callers that go
        through many rows in chunks of increasing time pay for one replay in all)."""
        ts = np.ascontiguousarray(np.broadcast_to(np.asarray(ts, dtype=np.float64), np.shape(s)))
        out = np.empty((len(ts), N_HIST))
        if not len(ts):
            return HistoryRows(out)
        first = float(ts.min())
        with self._lock:  # one replay at a time: they share the resumed counters
            if self._resume is None or first < self._resume[2]:
                self._resume = (self._fresh_counters(), 0, -np.inf)
            counters, start, _ = self._resume
            done = sweep(counters.as_tuple(), self.t_ref, self.tau, self._p, self._jb, self._jc, self._b, self._w,
                         self._clicked, self._ts, start, np.asarray(s, dtype=np.int64), np.asarray(b, dtype=np.int64),
                         np.asarray(c, dtype=np.int64), ts, np.argsort(ts, kind="stable"), CounterArrays().as_tuple(),
                         out)
            self._resume = (counters, done, float(ts.max()))
        return HistoryRows(out)

    def _fresh_counters(self) -> CounterArrays:
        """The events' row layout with every counter at zero (a replay counts into it)."""
        layout = self._layout
        out = CounterArrays(len(layout.person), len(layout.glob))
        for name in ("pb_start", "pb_len", "pb_cap", "pb_key", "pc_start", "pc_len", "pc_cap", "pc_key", "used"):
            setattr(out, name, getattr(layout, name))
        out.pb_val = np.zeros_like(layout.pb_val)
        out.pc_val = np.zeros_like(layout.pc_val)
        return out


class _ListCodes:
    """A candidate list as RunningHistory reads it: each banner's and category's code (-1
    while the history has not seen it)."""

    __slots__ = ("category", "banners", "categories", "complete", "n_codes")

    def __init__(self, banner: list[str], category: list[str], banner_code: dict[str, int], cat_code: dict[str, int]):
        self.category = category
        self.banners = np.fromiter((banner_code.get(b, -1) for b in banner), dtype=np.int64, count=len(banner))
        self.categories = np.fromiter((cat_code.get(c, -1) for c in category), dtype=np.int64, count=len(category))
        self.complete = bool(np.all(self.banners >= 0) and np.all(self.categories >= 0))
        self.n_codes = len(banner_code) + len(cat_code)  # else: looked up again once the history grows


class RunningHistory:
    """The counters of ``History`` kept up to date event by event, for the service: an
    impression or a click costs one compiled update, a request one compiled read, and
    memory grows with the person x banner pairs seen, not with the events.

    It answers ``query`` exactly as a History built over the same events would, for query
    times after every event it holds (the service's case: it learns of an event after it
    happened); a property test checks the equality. Impressions carry their own time: a
    click added later updates the click counters of that impression, as History counts a
    clicked impression."""

    MAX_CANDIDATE_LISTS = 1024  # a province's profiles each have their eligible list

    def __init__(self, half_life_days: float = 7.0, t_ref: float | None = None):
        """``t_ref``: the origin of the growth weights of what is added one event at a time
        (default: the first such event's time); any origin gives the same answers (it moves
        forward by itself when weights would grow too large)."""
        self.half_life_days = float(half_life_days)
        self.tau = self.half_life_days * 86400.0 / np.log(2.0)
        self.t_ref = t_ref
        self.base = CounterArrays()
        self.base_tref = 0.0
        self.delta = CounterArrays()
        self._staff: dict[str, int] = {}
        self._staff_ids: list[str] = []
        self._banner: dict[str, int] = {}
        self._category: dict[str, int] = {}
        self._lists: LRU[tuple[str, ...], _ListCodes] = LRU(self.MAX_CANDIDATE_LISTS)
        self.n_events = 0

    def __len__(self) -> int:
        return self.n_events

    # -- the base: built once from many events, or mapped from a saved one ----------------
    def add_events(self, events: Events) -> None:
        """Many impressions with their clicks at once (the history loaded at start): into
        the base when nothing is held yet, else one at a time into the delta."""
        if not len(events):
            return
        if self.n_events or len(self.base.person):
            self._add_one_by_one(events)
            return
        sv: dict[str, int] = {}
        bv: dict[str, int] = {}
        cv: dict[str, int] = {}
        s, b, c = _codes(events.staff, sv), _codes(events.banner, bv), _codes(events.category, cv)
        # only the people, banners and categories with events (a vocabulary may hold more)
        s_used, s = np.unique(s, return_inverse=True)
        b_used, b = np.unique(b, return_inverse=True)
        c_used, c = np.unique(c, return_inverse=True)
        staff_ids, banner_ids, cat_ids = list(sv), list(bv), list(cv)
        ts = np.asarray(events.ts, dtype=np.float64)
        self.base_tref = float(ts.max())  # weights <= 1; events decades older underflow to 0
        p, b, c = s.reshape(-1).astype(np.int32), b.reshape(-1).astype(np.int32), c.reshape(-1).astype(np.int32)
        base, jb, jc = build_fixed(p, b, c, len(s_used), len(b_used), len(c_used))
        add_events(base.as_tuple(), p, jb, jc, b, np.exp((ts - self.base_tref) / self.tau),
                   np.asarray(events.clicked) > 0, ts)
        self._set_base(base, [staff_ids[i] for i in s_used.tolist()], [banner_ids[i] for i in b_used.tolist()],
                       [cat_ids[i] for i in c_used.tolist()], len(ts))

    def _add_one_by_one(self, events: Events) -> None:
        staff, banner, category = ids_of(events.staff), ids_of(events.banner), ids_of(events.category)
        for i in range(len(events)):
            self.add_impression(staff[i], banner[i], category[i], float(events.ts[i]))
            if events.clicked[i]:
                self.add_click(staff[i], banner[i], category[i], float(events.ts[i]))

    def _set_base(self, base: CounterArrays, staff_ids: list[str], banner_ids: list[str], cat_ids: list[str],
                  n_events: int) -> None:
        self.base = base
        self._staff_ids = list(staff_ids)
        self._staff = {s: i for i, s in enumerate(self._staff_ids)}
        self._banner = {b: i for i, b in enumerate(banner_ids)}
        self._category = {c: i for i, c in enumerate(cat_ids)}
        self.n_events = n_events
        self.delta = CounterArrays()
        self.delta.reserve(len(self._staff_ids), len(self._banner), 0, 0)

    def reserve(self, people: int, pairs: int) -> None:
        """Room in the counters of what is added one event at a time for ``people`` more
        people and ``pairs`` more person x banner entries (and a quarter as many person x
        category ones), taken now: memory does not grow until the traffic outgrows it."""
        self.delta.reserve(len(self._staff_ids) + people, len(self._banner), pairs, pairs // 4)

    def save_base(self, folder: str | Path) -> None:
        """Write the base (built by add_events, nothing added since) for ``from_base``."""
        if self.delta.used.any():
            raise ValueError("save_base saves a base alone: events were added since it was built")
        save_counters(Path(folder), self.base, {
            "half_life_days": self.half_life_days, "t_ref": self.base_tref, "n_events": self.n_events,
            "staff": self._staff_ids, "banners": list(self._banner), "categories": list(self._category)})

    @classmethod
    def from_base(cls, folder: str | Path, t_ref: float | None = None) -> "RunningHistory":
        """A RunningHistory over a saved base, mapped read-only from its files (one copy
        in memory however many processes map it)."""
        base, meta = load_counters(Path(folder))
        base.dropped = np.array(base.dropped)  # forgetting someone marks their base row: a private copy
        out = cls(meta["half_life_days"], t_ref)
        out.base_tref = float(meta["t_ref"])
        out._set_base(base, meta["staff"], meta["banners"], meta["categories"], int(meta["n_events"]))
        return out

    # -- one event at a time: the delta -----------------------------------------------------
    def _weight(self, ts: float) -> float:
        if self.t_ref is None:
            self.t_ref = float(ts)
        elif ts - self.t_ref > REBASE * self.tau:
            rescale(self.delta.as_tuple(), math.exp(-(ts - self.t_ref) / self.tau))
            self.t_ref = float(ts)
        return math.exp((ts - self.t_ref) / self.tau)  # far before t_ref: 0.0 (fully decayed)

    def _row(self, staff: str) -> int:
        p = self._staff.get(staff)
        if p is None:
            p = self._staff[staff] = len(self._staff_ids)
            self._staff_ids.append(staff)
        return p

    def _code(self, vocab: dict[str, int], value: str) -> int:
        code = vocab.get(value)
        if code is None:
            code = vocab[value] = len(vocab)
        return code

    def add_impressions(self, staff: str, banners: Sequence[str], categories: Sequence[str], ts: float,
                        clicked: Sequence[bool] | None = None) -> None:
        """One person's impressions at ``ts`` (a ranking's shown banners), with their clicks."""
        if not len(banners):
            return
        p = self._row(staff)
        b = np.array([self._code(self._banner, x) for x in banners], dtype=np.int64)
        c = np.array([self._code(self._category, x) for x in categories], dtype=np.int64)
        if clicked is not None:
            k = np.asarray(clicked, dtype=np.int8)
        elif len(b) <= len(_NO_CLICKS):
            k = _NO_CLICKS[:len(b)]
        else:
            k = np.zeros(len(b), dtype=np.int8)
        self._update(p, b, c, ts, k, False)
        self.n_events += len(b)

    def add_impression(self, staff: str, banner: str, category: str, ts: float) -> None:
        self.add_impressions(staff, [banner], [category], ts)

    def add_click(self, staff: str, banner: str, category: str, ts: float) -> None:
        """Mark one impression (added before, at ``ts``) clicked. The caller makes sure an
        impression is marked once."""
        p = self._row(staff)
        b = np.array([self._code(self._banner, banner)], dtype=np.int64)
        c = np.array([self._code(self._category, category)], dtype=np.int64)
        self._update(p, b, c, ts, np.ones(1, dtype=np.int8), True)

    def _update(self, p: int, b: np.ndarray, c: np.ndarray, ts: float, clicked: np.ndarray, click_only: bool) -> None:
        w, t = self._weight(ts), float(ts)
        d = self.delta
        if len(self._staff_ids) > len(d.person) or len(self._banner) > len(d.glob):
            d.reserve(len(self._staff_ids), len(self._banner), 0, 0)
        while not add_online(d.as_tuple(), p, b, c, w, clicked, t, click_only):
            d.reserve(len(self._staff_ids), len(self._banner), 2 * (int(d.pb_len[p]) + len(b)) + 4,
                      2 * (int(d.pc_len[p]) + len(c)) + 4)

    # -- people ---------------------------------------------------------------------------
    def _held(self) -> np.ndarray:
        """Which rows hold someone's counters."""
        n = len(self._staff_ids)
        held = np.zeros(n, dtype=bool)
        held[:min(n, len(self.delta.person))] = self.delta.person[:n, 0] > 0
        nb = len(self.base.person)
        held[:nb] |= ~self.base.dropped
        return held

    @property
    def n_people(self) -> int:
        return int(self._held().sum())

    @property
    def n_pairs(self) -> int:
        """Person x banner entries held (a pair both in the base and the delta counts twice)."""
        return int(self.base.pb_len.sum() + self.delta.pb_len.sum())

    def people(self) -> list[str]:
        """The staff ids it holds counters of."""
        return [self._staff_ids[i] for i in np.flatnonzero(self._held()).tolist()]

    def forget(self, staff: str) -> int:
        """Remove one person: their own counters, and their impressions and clicks from
        every banner's global counts (as if they had never been added); the number of
        impressions removed."""
        p = self._staff.get(staff)
        if p is None or not self._held()[p]:
            return 0
        removed = 0
        d = self.delta
        for s in (self.base, d):
            if p < len(s.person) and not s.dropped[p]:
                start, n = int(s.pb_start[p]), int(s.pb_len[p])
                keys, vals = s.pb_key[start:start + n], s.pb_val[start:start + n]
                np.subtract.at(d.glob[:, 0], keys, vals[:, 0])
                np.subtract.at(d.glob[:, 1], keys, vals[:, 2])
                removed += int(round(s.person[p, 0]))
        if p < len(self.base.person):
            self.base.dropped[p] = True
        d.person[p] = 0.0
        d.last_click[p] = np.nan
        d.pb_len[p] = 0
        d.pc_len[p] = 0
        self.n_events -= removed
        return removed

    # -- reading --------------------------------------------------------------------------
    def _list_codes(self, banner: Sequence[str], category: Sequence[str]) -> _ListCodes:
        """Banner and category codes of a candidate list, kept for the next request with
        the same banners (looked up again once the history has grown, if it had not seen
        them all)."""
        key = tuple(banner)
        hit = self._lists.get(key)
        if hit is not None and hit.category == category and (
                hit.complete or hit.n_codes == len(self._banner) + len(self._category)):
            return hit
        return self._lists.put(key, _ListCodes(list(banner), list(category), self._banner, self._category))

    def _person(self, staff: str) -> int:
        return self._staff.get(staff, -1)

    def query_person(self, staff: str, banner: Sequence[str], category: Sequence[str], ts: float) -> HistoryRows:
        """``query`` of one person's rows at one time (a ranking request)."""
        codes = self._list_codes(banner, category)
        out = np.empty((len(banner), N_HIST))
        gather_person(self.base.as_tuple(), self.base_tref, self.delta.as_tuple(), self._delta_tref, self.tau,
                      self._person(staff), codes.banners, codes.categories, float(ts), out)
        return HistoryRows(out)

    @property
    def _delta_tref(self) -> float:
        return self.t_ref if self.t_ref is not None else 0.0

    def score_person(self, staff: str, banner: Sequence[str], category: Sequence[str], ts: float,
                     banner_inputs: np.ndarray, params: np.ndarray, weight: np.ndarray,
                     completion_weight: np.ndarray, static: np.ndarray) -> np.ndarray:
        """A linear model's logits of one person's candidates (features.kernel.score_person:
        ``banner_inputs`` per candidate and ``params`` as it reads them)."""
        codes = self._list_codes(banner, category)
        out = np.empty(len(banner))
        score_person(self.base.as_tuple(), self.base_tref, self.delta.as_tuple(), self._delta_tref, self.tau,
                     self._person(staff), codes.banners, codes.categories, float(ts), banner_inputs, params,
                     weight, completion_weight, static, out)
        return out

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        """History.query's counters; every event held counts as before ``ts``. Rows come
        in runs of one person at one time (a request's candidates), each read by
        ``query_person``."""
        t = np.asarray(ts, dtype=np.float64).tolist()
        staff, banner, category = list(staff), list(banner), list(category)
        if t and staff.count(staff[0]) == len(t) and t.count(t[0]) == len(t):  # one request's rows (the service)
            return self.query_person(staff[0], banner, category, t[0])
        starts = [i for i in range(len(t)) if i == 0 or staff[i] != staff[i - 1] or t[i] != t[i - 1]]
        parts = [self.query_person(staff[i], banner[i:j], category[i:j], t[i])
                 for i, j in zip(starts, [*starts[1:], len(t)])]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return self.query_person("", [], [], 0.0)
        return HistoryRows(np.concatenate([q.matrix for q in parts]))


def ids_of(column) -> list[str]:
    """An Events column (a list, an array, or a vocabulary with codes) as ids per event."""
    vocab = getattr(column, "vocab", None)
    if vocab is not None:
        return [vocab[c] for c in column.codes.tolist()]
    return [str(x) for x in column]


def compile_kernels() -> None:
    """Run every compiled function once on a tiny history, the way each caller uses it
    (a base mapped read-only from files included): the first run on a machine
    compiles them into numba's on-disk cache, later processes load them from there."""
    import tempfile

    from .kernel import BANNER_INPUTS, N_NUMERIC, PARAMS, numeric_rows

    inputs = np.array([[np.nan, 0.0, 0.05], [0.0, 1.0, 0.05]])
    params = np.array([0.05, 10.0, 1.0])
    assert inputs.shape[1] == len(BANNER_INPUTS) and len(params) == len(PARAMS)
    events = Events(["a", "b"], ["x", "y"], ["c", "c"], np.array([1.0, 2.0]), np.array([1, 0]))
    History(events).query(["a"], ["x"], ["c"], np.array([5.0]))
    numeric_rows(np.zeros((1, N_HIST)), np.zeros(1), inputs[:1], params, np.zeros((1, N_NUMERIC)))
    with tempfile.TemporaryDirectory() as tmp:
        built = RunningHistory()
        built.add_events(events)
        built.save_base(Path(tmp) / "base")
        for running in (built, RunningHistory.from_base(Path(tmp) / "base")):
            running.add_impression("a", "x", "c", 3.0)
            running.add_click("a", "x", "c", 3.0)
            running.query_person("a", ["x", "y"], ["c", "c"], 4.0)
            running.score_person("a", ["x", "y"], ["c", "c"], 4.0, inputs, params, np.zeros(N_NUMERIC), np.zeros(2),
                                 np.zeros(2))
            running.forget("a")
