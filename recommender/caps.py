"""Frequency caps: how often one person may see one banner.

A banner's cap (``Banner.cap``, or a service-wide default for banners without one) has
two optional rules:

- ``per_day``: at most this many impressions of the banner to a person in any 24 hours
  (a rolling window, so that it means the same in every time zone and at midnight);
- ``unclicked_impressions`` in ``unclicked_days``: once a person has had that many
  impressions of the banner in the last ``unclicked_days`` days without clicking it
  (impressions before their last click on it do not count), the banner rests for them
  until the oldest of those impressions leaves the window.

A capped banner is left out of that person's candidates, before ranking. An impression
is a banner in the shown slots of a ranking (what the logs record). The rules read only
impressions strictly before the request's time: the service, the simulator and offline
evaluation's target policies apply them through ``ExposureLedger`` the same way.
"""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .contracts.impressions import ImpressionLog
from .domain import Banner, Catalog, FrequencyCap

DAY = 86400.0
MAX_CAP = 100  # the largest count a cap may name (and the impressions kept per person and banner)

__all__ = ["DAY", "MAX_CAP", "ExposureLedger", "FrequencyCap", "any_caps", "cap_of", "capped_rows", "ledger_from_logs"]


def cap_of(banner: Banner, default: FrequencyCap | None) -> FrequencyCap | None:
    """The cap that applies to ``banner``: its own, else the default."""
    return banner.cap if banner.cap is not None else default


def any_caps(banners: Iterable[Banner], default: FrequencyCap | None) -> bool:
    return default is not None or any(b.cap is not None for b in banners)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


class _Exposure:
    __slots__ = ("times", "clicks")

    def __init__(self) -> None:
        self.times = array("d")  # the latest impressions' times, ascending
        self.clicks = _NO_CLICKS  # the latest clicked impressions' times, ascending (shared empty until one)


_NO_CLICKS = array("d")


class ExposureLedger:
    """Per person and banner, the times of their latest impressions and of their latest
    clicked impression: what the caps read. Events may arrive out of time order (another
    worker's rankings reach a worker late); each is put in its place."""

    def __init__(self, horizon_days: float = 30.0, keep: int | None = MAX_CAP):
        """``horizon_days`` and ``keep``: impressions older than that before the latest, or
        past the latest ``keep``, are let go (they can no longer decide a cap at a later
        time). Offline, where requests of any time are asked about, pass ``float("inf")``
        and None: everything is kept."""
        self.horizon = float(horizon_days) * DAY
        self.keep = keep
        self._people: dict[str, dict[str, _Exposure]] = {}
        self._sweep_queue: list[str] = []

    def fit_to(self, caps: Iterable[FrequencyCap]) -> None:
        """Keep no more than these caps can read: a day, or the longest unclicked window,
        and as many impressions as the largest count (online; offline keeps everything)."""
        caps = list(caps)
        self.horizon = max([DAY, *(c.unclicked_days * DAY for c in caps if c.unclicked_days)])
        self.keep = max([1, *(c.per_day or 0 for c in caps), *(c.unclicked_impressions or 0 for c in caps)])

    def sweep(self, now: float, budget: int = 32) -> None:
        """Let go of ``budget`` people's entries that no cap can read any more (nothing
        within the horizon of ``now``): called as events arrive, it goes round everyone."""
        if not self._sweep_queue:
            self._sweep_queue = list(self._people)
        cutoff = now - self.horizon
        for _ in range(min(budget, len(self._sweep_queue))):
            staff_id = self._sweep_queue.pop()
            person = self._people.get(staff_id)
            if person is None:
                continue
            for banner_id in [b for b, e in person.items()
                              if (not e.times or e.times[-1] < cutoff) and (not e.clicks or e.clicks[-1] < cutoff)]:
                del person[banner_id]
            if not person:
                del self._people[staff_id]

    def __len__(self) -> int:
        return len(self._people)

    def _entry(self, staff_id: str, banner_id: str) -> _Exposure:
        person = self._people.setdefault(staff_id, {})
        entry = person.get(banner_id)
        if entry is None:
            entry = person[banner_id] = _Exposure()
        return entry

    def _insert(self, times: array, ts: float, keep: int | None) -> None:
        bisect.insort(times, ts)
        if keep is not None and len(times) > keep:
            del times[0]
        if times[0] < times[-1] - self.horizon:
            del times[:bisect.bisect_left(times, times[-1] - self.horizon)]

    def add_impression(self, staff_id: str, banner_id: str, ts: float) -> None:
        self._insert(self._entry(staff_id, banner_id).times, float(ts), self.keep)

    def add_click(self, staff_id: str, banner_id: str, ts: float) -> None:
        """A click on the impression of ``banner_id`` shown at ``ts`` (online only the latest
        counts: it ends the run of unclicked impressions)."""
        entry = self._entry(staff_id, banner_id)
        if entry.clicks is _NO_CLICKS:
            entry.clicks = array("d")
        self._insert(entry.clicks, float(ts), None if self.keep is None else 1)

    def forget(self, staff_id: str) -> None:
        self._people.pop(staff_id, None)

    def is_capped(self, staff_id: str, banner_id: str, cap: FrequencyCap, ts: float) -> bool:
        person = self._people.get(staff_id)
        entry = None if person is None else person.get(banner_id)
        if entry is None:
            return False
        times = entry.times
        end = bisect.bisect_left(times, ts)  # impressions strictly before ts
        if cap.per_day is not None and end - bisect.bisect_right(times, ts - DAY) >= cap.per_day:
            return True
        if cap.unclicked_impressions is not None:
            before = bisect.bisect_left(entry.clicks, ts)  # the last click before ts ends the streak
            since = ts - cap.unclicked_days * DAY
            if before:
                since = max(since, entry.clicks[before - 1])
            if end - bisect.bisect_right(times, since) >= cap.unclicked_impressions:
                return True
        return False

    def reason(self, staff_id: str, banner_id: str, cap: FrequencyCap, ts: float) -> str | None:
        """Why the banner is capped for this person at ``ts``, in words (None if it is not)."""
        if not self.is_capped(staff_id, banner_id, cap, ts):
            return None
        entry = self._people[staff_id][banner_id]
        times = entry.times
        end = bisect.bisect_left(times, ts)
        if cap.per_day is not None:
            n = end - bisect.bisect_right(times, ts - DAY)
            if n >= cap.per_day:
                return f"shown to you {_times(n)} in the last 24 hours (its cap: {cap.per_day} a day)"
        before = bisect.bisect_left(entry.clicks, ts)
        since = ts - cap.unclicked_days * DAY
        if before:
            since = max(since, entry.clicks[before - 1])
        n = end - bisect.bisect_right(times, since)
        return (f"shown to you {_times(n)} without a click in the last {cap.unclicked_days:g} days (its cap: "
                f"{cap.unclicked_impressions} unclicked in {cap.unclicked_days:g} days)")

    def reasons(self, staff_id: str, banners: Sequence[Banner], ts: float,
                default: FrequencyCap | None = None) -> dict[str, str]:
        """For each of ``banners`` this person reached the cap of at ``ts``: why, in words."""
        out = {}
        for b in banners:
            cap = cap_of(b, default)
            why = None if cap is None else self.reason(staff_id, b.banner_id, cap, ts)
            if why is not None:
                out[b.banner_id] = why
        return out

    def capped(self, staff_id: str, banners: Sequence[Banner], ts: float,
               default: FrequencyCap | None = None) -> set[str]:
        """The ids of ``banners`` that ``staff_id`` may not see at ``ts``."""
        person = self._people.get(staff_id)
        if not person:
            return set()
        out = set()
        for b in banners:
            cap = cap_of(b, default)
            if cap is not None and b.banner_id in person and self.is_capped(staff_id, b.banner_id, cap, ts):
                out.add(b.banner_id)
        return out


def ledger_from_logs(logs: Sequence[ImpressionLog], catalog: Catalog,
                     default: FrequencyCap | None = None) -> ExposureLedger | None:
    """An offline ledger (everything kept, any time can be asked about) of the impressions
    and clicks of ``logs`` on the banners under a cap; None when no banner has one."""
    caps = [cap_of(b, default) for b in catalog.banners]
    if not any(c is not None for c in caps):
        return None
    tracked = {b.banner_id for b, c in zip(catalog.banners, caps) if c is not None}
    ledger = ExposureLedger(float("inf"), keep=None)
    for log in logs:
        banner_ok = np.array([b in tracked for b in log.banner_ids], dtype=bool)
        for i in np.flatnonzero(banner_ok[log.banner]).tolist():
            s, b, t = log.staff_ids[log.staff[i]], log.banner_ids[log.banner[i]], float(log.ts[i])
            ledger.add_impression(s, b, t)
            if log.clicked[i]:
                ledger.add_click(s, b, t)
    return ledger


def capped_rows(logs: Sequence[ImpressionLog], catalog: Catalog, staff: Sequence[str], banner: np.ndarray,
                ts: np.ndarray, default: FrequencyCap | None = None) -> np.ndarray | None:
    """For candidate rows (a person, a catalog index, a time), whether the banner's cap
    had been reached then, from the impressions and clicks of ``logs`` strictly before
    each row's time (offline evaluation's target policies leave those rows out, as the
    service would have). None when no banner has a cap and there is no default."""
    caps = [cap_of(b, default) for b in catalog.banners]
    ledger = ledger_from_logs(logs, catalog, default)
    if ledger is None:
        return None
    out = np.zeros(len(banner), dtype=bool)
    ids = catalog.ids
    for j in range(len(banner)):
        cap = caps[banner[j]]
        if cap is not None:
            out[j] = ledger.is_capped(staff[j], ids[banner[j]], cap, float(ts[j]))
    return out
