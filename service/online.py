"""The service's click history: the history loaded at start (a logged impressions file,
the store's recent rankings and clicks) and the impressions and clicks of its own
traffic since, kept as running counters (features.history.RunningHistory), so a click
changes that person's very next ranking through the same feature code as training, and
a ranking costs one lookup per candidate whatever the history's size.

Decayed counters depend on the half-life the model was trained with: it holds one set of
counters per half-life its models use (usually one), fixed when it starts; a model reads
its own through ``view``.

Events are impressions (what a person was shown, at the ranking's time) whose click
arrives later, naming the request and banner: exactly the rows ``recommender export``
writes for the same traffic, so online features equal the features a model trained on
the export sees. Memory: the counters grow with the people and banners seen; the index
from request to impressions (to attribute clicks) keeps the last ``click_window_days``.

It also keeps, for the banners under a frequency cap (recommender.caps), each person's
latest impression times: only those banners', so that a catalog without caps costs
nothing. A cap set on a banner later counts from then. And who had which banner's
outcome (recommender.completion), for the banners the catalog hides or down-weights
after it, and for outcome goals.
"""
from __future__ import annotations

import collections
import threading
from typing import Iterable

import numpy as np

from recommender.caps import ExposureLedger
from recommender.completion import CompletionLedger, any_after_completion, counts_outcome
from recommender.goals import DeliveryTracker, GoalProgress
from recommender.domain import Banner, FrequencyCap

from features.history import Events, RunningHistory, ids_of

from .open_rankings import OpenRankings

DEFAULT_HALF_LIFE_DAYS = 7.0  # the features' default (features.definition.FeatureConfig)


CLICK_WINDOW_DAYS = 2.0  # how long after a ranking a click on it is still attributed (default)


class OnlineHistory:
    """``max_open_rankings`` bounds the rankings kept open to clicks (the oldest are let go
    first when a busy service reaches it, before their click window ends); with
    ``reserve_open_rankings`` their memory for that many is taken at start
    (service.open_rankings)."""

    def __init__(self, half_life_days: float | Iterable[float] = DEFAULT_HALF_LIFE_DAYS,
                 click_window_days: float = CLICK_WINDOW_DAYS, max_open_rankings: int = 500_000,
                 reserve_open_rankings: bool = False):
        self.click_window = click_window_days * 86400.0
        self.max_open_rankings = max_open_rankings
        self._lock = threading.Lock()
        self._running: dict[float, RunningHistory] = {}
        self.set_half_lives(half_life_days)
        self._open = OpenRankings(max_open_rankings, reserve=reserve_open_rankings)
        # clicks that arrived before their ranking (another worker's ranking not yet
        # synced): applied when the ranking arrives; bounded, oldest dropped first
        self._early: collections.OrderedDict[str, set[str]] = collections.OrderedDict()
        self._early_outcomes: collections.OrderedDict[str, list[tuple[str, str, float]]] = collections.OrderedDict()
        self.max_early = 100_000
        self.exposure = ExposureLedger()
        self.delivery = DeliveryTracker()  # what the banners with a delivery goal delivered
        self._forgotten: dict[str, float] = {}  # staff id -> erasure time, for a few minutes (see forget)
        self._capped_ids: frozenset[str] = frozenset()  # banners whose impressions the ledger keeps
        self._cap_all = False  # a default cap: every banner's
        self.completions = CompletionLedger()  # who had which banner's outcome, and when
        self._banners: dict[str, Banner] = {}  # the catalog's banners: which outcome counts for each
        self._after_completion = False  # some banner hides or down-weights itself after its outcome

    def set_half_lives(self, half_lives: float | Iterable[float]) -> None:
        """The half-lives to keep counters for (before anything is loaded)."""
        hs = sorted({float(half_lives)} if isinstance(half_lives, (int, float)) else {float(h) for h in half_lives})
        with self._lock:
            if any(len(r) for r in self._running.values()):
                raise RuntimeError("set_half_lives comes before the click history is loaded")
            self._running = {h: RunningHistory(h) for h in hs or [DEFAULT_HALF_LIFE_DAYS]}

    @property
    def evicted(self) -> int:
        """Open rankings let go before their click window ended (the bound was reached)."""
        return self._open.evicted

    @property
    def half_lives(self) -> tuple[float, ...]:
        return tuple(self._running)

    @property
    def _first(self) -> RunningHistory:
        return next(iter(self._running.values()))

    def view(self, half_life_days: float) -> "HistoryView":
        """The counters decayed with this half-life, read under this history's lock."""
        running = self._running.get(float(half_life_days))
        if running is None:
            raise KeyError(f"no click history with a half-life of {float(half_life_days):g} days "
                           f"(it holds {', '.join(f'{h:g}' for h in self._running)})")
        return HistoryView(self._lock, running)

    def set_base(self, running: RunningHistory) -> None:
        """Start from a RunningHistory built elsewhere (a saved base mapped from its files)."""
        with self._lock:
            if running.half_life_days not in self._running or len(self._running[running.half_life_days]):
                raise RuntimeError("set_base replaces an empty click history of a half-life it keeps")
            self._running[running.half_life_days] = running

    def set_caps(self, banners: Iterable[Banner], default: FrequencyCap | None) -> None:
        """Which banners' impressions to keep for their caps (the catalog's, now)."""
        banners = list(banners)
        with self._lock:
            self._cap_all = default is not None
            self._capped_ids = frozenset(b.banner_id for b in banners if b.cap is not None)
            self.exposure.fit_to([c for c in [default, *(b.cap for b in banners)] if c is not None])

    def set_goals(self, banners: Iterable[Banner]) -> None:
        with self._lock:
            self.delivery.set_goals(banners)

    def set_outcomes(self, banners: Iterable[Banner]) -> None:
        """Which outcome counts for each banner, and what follows it (the catalog's, now)."""
        banners = list(banners)
        with self._lock:
            self._banners = {b.banner_id: b for b in banners}
            self._after_completion = any_after_completion(banners)

    def counts(self, banner_id: str, kind: str) -> bool:
        """Whether an outcome event of ``kind`` is this banner's outcome (the catalog's rule)."""
        return counts_outcome(self._banners.get(banner_id), kind)

    def completed(self, staff_id: str, banners: list[Banner], ts: float) -> tuple[set[str], np.ndarray | None]:
        """The ids of ``banners`` this person completed and the catalog hides after that,
        and each banner's score boost for the ones it down-weights (None: none)."""
        if not self._after_completion:
            return set(), None
        with self._lock:
            return (self.completions.hidden(staff_id, banners, ts),
                    self.completions.penalties(staff_id, banners, ts))

    def goal_boosts(self, staff_id: str, banners: list[Banner], ts: float) -> np.ndarray | None:
        """The pacing boost of each candidate for this person (None: no goal to pace)."""
        if not self.delivery:
            return None
        with self._lock:
            return self.delivery.boosts(staff_id, banners, ts)

    def goal_progress(self, now: float) -> list[GoalProgress]:
        with self._lock:
            return self.delivery.progress(now)

    def _exposure_counts(self, banner_id: str) -> bool:
        return self._cap_all or banner_id in self._capped_ids

    def cap_reasons(self, staff_id: str, banners: list[Banner], ts: float,
                    default: FrequencyCap | None) -> dict[str, str]:
        """For each of ``banners`` this person reached the cap of: why, in words."""
        with self._lock:
            return self.exposure.reasons(staff_id, banners, ts, default)

    def capped(self, staff_id: str, banners: list[Banner], ts: float, default: FrequencyCap | None) -> set[str]:
        """The ids of ``banners`` that ``staff_id`` may not see at ``ts`` (their caps)."""
        if not (self._cap_all or self._capped_ids):  # the catalog has no cap: nothing to look up
            return set()
        with self._lock:
            return self.exposure.capped(staff_id, banners, ts, default)

    @property
    def needs_events(self) -> bool:
        """Whether caps, delivery goals or completions need the history's events (not only its counters)."""
        return bool(self._cap_all or self._capped_ids or self.delivery or self._after_completion)

    def reserve(self, pairs: int) -> None:
        """Take the memory of the counters' next ``pairs`` person x banner entries now
        (RunningHistory.reserve; room for one person per 8 of them)."""
        with self._lock:
            for running in self._running.values():
                running.reserve(pairs // 8, pairs)

    def load(self, events: Events) -> None:
        """Impressions with their clicks, all at once (a logged history file at start)."""
        with self._lock:
            for running in self._running.values():
                running.add_events(events)
        self.load_controls(events)

    def load_outcomes(self, staff: list[str], banner: list[str], ts: np.ndarray, value: np.ndarray) -> None:
        """Outcomes that count (a logged history's impressions with an outcome above 0, an
        old stored ranking's): who completed which banner when, for completions and goals."""
        with self._lock:
            for s, b, t, v in zip(staff, banner, ts.tolist(), value.tolist()):
                if v > 0:
                    self.completions.add(s, b, t)
                    self.delivery.add_outcome(s, b, t)

    def load_controls(self, events: Events) -> None:
        """What caps and delivery goals need of the history's events."""
        with self._lock:
            if self._cap_all or self._capped_ids or self.delivery:
                staff, banner = ids_of(events.staff), ids_of(events.banner)
                for i in range(len(events)):
                    s, b, t, clicked = staff[i], banner[i], float(events.ts[i]), events.clicked[i]
                    self.delivery.add_impression(s, b, t)
                    if clicked:
                        self.delivery.add_click(s, b, t)
                    if self._exposure_counts(b):
                        self.exposure.add_impression(s, b, t)
                        if clicked:
                            self.exposure.add_click(s, b, t)

    def add_ranking(self, staff_id: str, request_id: str, ts: float, shown: list[tuple[str, str]],
                    clicked: Iterable[str] = (), outcomes: Iterable[tuple[str, str, float]] = ()) -> None:
        """``shown``: (banner_id, category) of the impressions, in position order;
        ``clicked``: banners already known clicked, ``outcomes``: (banner_id, type, value)
        of outcome events already known (a stored ranking read at start)."""
        key = self._open.key(request_id)
        with self._lock:
            if self._open.row(request_id, key) >= 0:
                return
            ts = float(ts)
            if self._forgotten and self._erased_before(staff_id, ts):
                return
            first: dict[str, str] = {}
            for banner_id, category in shown:  # each banner once, at its first place
                first.setdefault(banner_id, category)
            pairs = list(first.items())
            capped = self._cap_all or self._capped_ids
            if self.delivery or capped:
                for banner_id, _ in pairs:
                    self.delivery.add_impression(staff_id, banner_id, ts)
                    if self._exposure_counts(banner_id):
                        self.exposure.add_impression(staff_id, banner_id, ts)
            banners = [b for b, _ in pairs]
            categories = [c for _, c in pairs]
            for running in self._running.values():
                running.add_impressions(staff_id, banners, categories, ts)
            if capped:
                self.exposure.sweep(ts)
            self._forget_old(ts)
            row = self._open.add(request_id, staff_id, ts, pairs, key)
            for banner_id in [*clicked, *self._early.pop(request_id, ())]:
                self._click(row, banner_id)
            for banner_id, kind, value in [*outcomes, *self._early_outcomes.pop(request_id, ())]:
                self._outcome(staff_id, ts, banners, banner_id, kind, value)

    def _erased_before(self, staff_id: str, ts: float) -> bool:
        """Whether ``staff_id`` was forgotten after ``ts`` (a late ranking of theirs);
        erasure times older than FORGOTTEN_MEMORY are let go."""
        at = self._forgotten.get(staff_id)
        if len(self._forgotten) > 1000 or (at is not None and ts > at + self.FORGOTTEN_MEMORY):
            horizon = max(ts, max(self._forgotten.values())) - self.FORGOTTEN_MEMORY
            self._forgotten = {s: t for s, t in self._forgotten.items() if t >= horizon}
            at = self._forgotten.get(staff_id)
        return at is not None and ts <= at

    def _forget_old(self, now: float) -> None:
        cutoff = now - self.click_window
        while (oldest := self._open.oldest_ts()) is not None and oldest < cutoff:
            self._open.drop_oldest()

    def _click(self, row: int, banner_id: str) -> bool:
        if row < 0:
            return False
        shown = self._open.shown(row)
        j = next((j for j, (b, _) in enumerate(shown) if b == banner_id), -1)
        if j < 0:
            return False
        if self._open.click(row, j):
            staff, ts = self._open.staff(row), self._open.ts(row)
            for running in self._running.values():
                running.add_click(staff, banner_id, shown[j][1], ts)
            self.delivery.add_click(staff, banner_id, ts)
            if self._exposure_counts(banner_id):
                self.exposure.add_click(staff, banner_id, ts)
        return True

    def _outcome(self, staff_id: str, ts: float, shown: list[str], banner_id: str, kind: str, value: float) -> bool:
        if banner_id not in shown:
            return False
        if value > 0 and counts_outcome(self._banners.get(banner_id), kind):
            self.completions.add(staff_id, banner_id, ts)
            self.delivery.add_outcome(staff_id, banner_id, ts)
        return True

    def add_outcome(self, request_id: str, banner_id: str, kind: str, value: float) -> bool:
        """An outcome event (``kind`` complete or convert, ``value`` in [0, 1]) on a shown
        banner: the person completed it, at the ranking's time, when the outcome counts
        for the banner; False when the request or banner is not known here (an outcome
        on another worker's ranking not yet synced waits for it, like a click)."""
        with self._lock:
            row = self._open.row(request_id)
            if row < 0:
                if len(self._early_outcomes) >= self.max_early:
                    self._early_outcomes.popitem(last=False)
                self._early_outcomes.setdefault(request_id, []).append((banner_id, kind, float(value)))
                return False
            return self._outcome(self._open.staff(row), self._open.ts(row), [b for b, _ in self._open.shown(row)],
                                 banner_id, kind, float(value))

    def add_click(self, request_id: str, banner_id: str) -> bool:
        """Mark a shown banner clicked; False when the request or banner is not known here."""
        with self._lock:
            row = self._open.row(request_id)
            if row < 0:
                if len(self._early) >= self.max_early:
                    self._early.popitem(last=False)
                self._early.setdefault(request_id, set()).add(banner_id)
                return False
            return self._click(row, banner_id)

    def people(self) -> list[str]:
        """Everyone it holds a click history or an open ranking of."""
        with self._lock:
            return list({*self._first.people(), *self._open.people()})

    FORGOTTEN_MEMORY = 300.0  # seconds a forgotten person's erasure time is kept (see forget)

    def forget(self, staff_ids: Iterable[str], at: float | None = None) -> int:
        """Drop people: their counters, their share of the banners' global counts, and
        their rankings open to clicks; the number of impressions removed. With ``at`` (the
        erasure's time), a ranking of theirs served before it that arrives in the next
        minutes (a ranking in progress when the erasure came) is not added back."""
        gone = set(staff_ids)
        if not gone:
            return 0
        with self._lock:
            if at is not None:
                for s in gone:
                    self._forgotten[s] = max(at, self._forgotten.get(s, at))
            removed = [sum(running.forget(s) for s in gone) for running in self._running.values()][0]
            for s in gone:
                self.exposure.forget(s)
                self.delivery.forget(s)
                self.completions.forget(s)
            self._open.forget(gone)
            return removed

    def clicked_of(self, request_id: str) -> set[str] | None:
        """The clicked banners of an open ranking (None when it is not open)."""
        with self._lock:
            row = self._open.row(request_id)
            return None if row < 0 else self._open.clicked(row)

    def staff_of(self, request_id: str) -> str | None:
        with self._lock:
            row = self._open.row(request_id)
            return None if row < 0 else self._open.staff(row)

    def __len__(self) -> int:
        return len(self._first)

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        """The counters of the first half-life it keeps (``view`` chooses one)."""
        return self.view(self.half_lives[0]).query(staff, banner, category, ts)

    def query_person(self, staff: str, banner, category, ts: float) -> dict[str, np.ndarray]:
        return self.view(self.half_lives[0]).query_person(staff, banner, category, ts)

    def counts(self) -> dict[str, int]:
        """What it holds, for /readyz: impressions, people, and the rankings whose clicks
        can still be attributed."""
        with self._lock:
            return {"impressions": len(self._first), "people": self._first.n_people,
                    "open_rankings": len(self._open)}


class HistoryView:
    """One half-life's counters of an OnlineHistory, read under its lock: what a model's
    features read (training.artifact resolves it from the model's own half-life)."""

    __slots__ = ("_lock", "_running", "half_life_days")

    def __init__(self, lock: threading.Lock, running: RunningHistory):
        self._lock = lock
        self._running = running
        self.half_life_days = running.half_life_days

    def query(self, staff, banner, category, ts) -> dict[str, np.ndarray]:
        with self._lock:
            return self._running.query(staff, banner, category, ts)

    def query_person(self, staff: str, banner, category, ts: float) -> dict[str, np.ndarray]:
        with self._lock:
            return self._running.query_person(staff, banner, category, ts)

    def score_person(self, *args, **kwargs) -> np.ndarray:
        with self._lock:
            return self._running.score_person(*args, **kwargs)

