"""Delivery goals and their pacing.

A banner may carry a goal (``Banner.goal``): ``reach`` (distinct staff who had it in the
shown slots at least once), ``clicks`` (clicks on it) or ``outcomes`` (distinct staff who
had its outcome, recommender.completion: "500 survey responses by Friday"), ``target`` of
them ``by`` a time. Delivery counts from the banner's start (a banner with a goal must have one) to
``by``, so that every worker and ``recommender goals`` count the same.

The plan is even: ``target`` times the share of the time elapsed, reaching the target
when ``PLAN_SHARE`` (90%) of the time to the deadline has passed, so that a little
shortfall at the end still meets the goal. The pacing boost is a proportional controller,
with no state of its own: 0 on or ahead of the plan, rising linearly to ``MAX_BOOST``
(logit units, enough to put the banner above every unpinned banner) when delivery is
``FULL_BOOST_DEFICIT`` (5%) of the target behind the plan, and at ``MAX_BOOST`` for any
shortfall once the plan is at the target (the last 10% of the time: a proportional
controller alone settles just under its plan). It is added to the banner's
score before the greedy order, so a banner behind schedule moves up just as far as its
deficit asks, and personal scores decide again once it has caught up. For a reach goal
the boost applies only to people who have not had the banner yet: showing it again to
them would not add reach; for an outcome goal, only to people who have not had its
outcome yet.

The boost is part of the policy the service logs: it is decided before the ranking, and
exploration and the logged propensities are computed on the boosted order exactly as on
any other, so offline evaluation of any model stays valid on paced traffic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .domain import Banner, DeliveryGoal

PLAN_SHARE = 0.9
FULL_BOOST_DEFICIT = 0.05
MAX_BOOST = 8.0

__all__ = ["DeliveryGoal", "DeliveryTracker", "GoalProgress", "MAX_BOOST", "pacing_boost", "planned"]


def planned(goal: DeliveryGoal, start: float, t: float) -> float:
    """What the even plan has delivered by ``t``."""
    span = PLAN_SHARE * (goal.by - start)
    if span <= 0:
        return float(goal.target)
    return goal.target * min(max((t - start) / span, 0.0), 1.0)


def pacing_boost(goal: DeliveryGoal, start: float, delivered: float, t: float) -> float:
    """The score boost of a banner behind its plan (0 once the goal is met or its time is up)."""
    if t >= goal.by or t < start or delivered >= goal.target:
        return 0.0
    if t >= start + PLAN_SHARE * (goal.by - start):  # the plan is at the target: any shortfall is urgent
        return MAX_BOOST
    deficit = (planned(goal, start, t) - delivered) / goal.target
    return MAX_BOOST * min(max(deficit / FULL_BOOST_DEFICIT, 0.0), 1.0)


@dataclass(frozen=True)
class GoalProgress:
    banner_id: str
    metric: str
    target: int
    by: float
    start: float
    delivered: int
    planned: float
    boost: float  # the boost a person who has not had it yet gets now

    @property
    def met(self) -> bool:
        return self.delivered >= self.target

    def to_dict(self) -> dict:
        from .timeutil import format_ts

        return {"banner_id": self.banner_id, "metric": self.metric, "target": self.target, "by": format_ts(self.by),
                "start": format_ts(self.start), "delivered": self.delivered, "planned": round(self.planned, 1),
                "share_of_target": round(self.delivered / self.target, 4), "met": self.met,
                "behind_plan": self.delivered < self.planned and not self.met, "boost": round(self.boost, 3)}


def delivery_from_rankings(tracker: "DeliveryTracker", rankings: Iterable, clicks: Iterable[tuple[str, str]],
                           outcomes: Iterable[tuple[str, str]] = ()) -> None:
    """Feed ``tracker`` with stored rankings (recommender.store.RankingRecord: their shown
    slots are impressions), clicks ((request id, banner id), each impression's once) and
    outcomes that count for their banner ((request id, banner id))."""
    shown: dict[str, tuple[str, float, set[str]]] = {}
    for r in rankings:
        banners = {b for b, *_ in r.shown()}
        for b in banners:
            tracker.add_impression(r.staff_id, b, r.ts)
        shown[r.request_id] = (r.staff_id, r.ts, banners)
    for add, pairs in ((tracker.add_click, clicks), (tracker.add_outcome, outcomes)):
        for request_id, banner_id in set(pairs):
            seen = shown.get(request_id)
            if seen is not None and banner_id in seen[2]:
                add(seen[0], banner_id, seen[1])


def delivery_from_logs(tracker: "DeliveryTracker", logs: Iterable, until: float) -> None:
    """Feed ``tracker`` with the impressions and clicks of impression logs
    (recommender.contracts.ImpressionLog) shown before ``until``."""
    for log in logs:
        for i in np.flatnonzero(np.asarray(log.ts) < until).tolist():
            staff, banner, t = log.staff_ids[log.staff[i]], log.banner_ids[log.banner[i]], float(log.ts[i])
            tracker.add_impression(staff, banner, t)
            if log.clicked[i]:
                tracker.add_click(staff, banner, t)
            if log.outcome[i] > 0:
                tracker.add_outcome(staff, banner, t)


class DeliveryTracker:
    """What each banner with a goal has delivered: the distinct staff who had it in the
    shown slots, the clicks on it and the distinct staff who had its outcome, counted from
    its goal's start. Events may arrive in any order; each counts once (a person's reach
    and outcome once, a click once per impression)."""

    def __init__(self) -> None:
        self._goals: dict[str, tuple[DeliveryGoal, float]] = {}  # banner id -> (goal, start)
        self._reached: dict[str, set[str]] = {}
        self._clicks: dict[str, int] = {}
        self._completed: dict[str, set[str]] = {}

    def set_goals(self, banners: Iterable[Banner]) -> None:
        """Follow the goals of these banners (the current catalog). Delivery so far is kept
        for a banner whose goal stays, and a changed goal keeps it. A goal added to a banner
        that is already running counts what this tracker sees from then on (a service counts
        the earlier impressions at its next start, from its history)."""
        goals = {}
        for b in banners:
            if b.goal is None or b.start is None:
                continue
            goals[b.banner_id] = (b.goal, b.start)
            self._reached.setdefault(b.banner_id, set())
            self._clicks.setdefault(b.banner_id, 0)
            self._completed.setdefault(b.banner_id, set())
        self._goals = goals

    def __bool__(self) -> bool:
        return bool(self._goals)

    def _window(self, banner_id: str, ts: float) -> bool:
        g = self._goals.get(banner_id)
        return g is not None and g[1] <= ts < g[0].by

    def add_impression(self, staff_id: str, banner_id: str, ts: float) -> None:
        if self._window(banner_id, ts):
            self._reached[banner_id].add(staff_id)

    def add_click(self, staff_id: str, banner_id: str, ts: float) -> None:
        """A click on the impression of ``banner_id`` shown at ``ts`` (called once per impression)."""
        if self._window(banner_id, ts):
            self._clicks[banner_id] += 1

    def add_outcome(self, staff_id: str, banner_id: str, ts: float) -> None:
        """The banner's outcome on its impression shown at ``ts`` (a person counts once)."""
        if self._window(banner_id, ts):
            self._completed[banner_id].add(staff_id)

    def forget(self, staff_id: str) -> None:
        for people in (*self._reached.values(), *self._completed.values()):
            people.discard(staff_id)

    def delivered(self, banner_id: str) -> int:
        goal, _ = self._goals[banner_id]
        if goal.metric == "reach":
            return len(self._reached[banner_id])
        if goal.metric == "outcomes":
            return len(self._completed[banner_id])
        return self._clicks[banner_id]

    def boosts(self, staff_id: str, banners: Sequence[Banner], ts: float) -> np.ndarray | None:
        """The pacing boost of each of ``banners`` for this person now (None: no goal among them)."""
        out = None
        for i, b in enumerate(banners):
            g = self._goals.get(b.banner_id)
            if g is None:
                continue
            goal, start = g
            if goal.metric == "reach" and staff_id in self._reached[b.banner_id]:
                continue
            if goal.metric == "outcomes" and staff_id in self._completed[b.banner_id]:
                continue
            boost = pacing_boost(goal, start, self.delivered(b.banner_id), ts)
            if boost > 0:
                if out is None:
                    out = np.zeros(len(banners))
                out[i] = boost
        return out

    def progress(self, now: float) -> list[GoalProgress]:
        out = []
        for banner_id, (goal, start) in self._goals.items():
            delivered = self.delivered(banner_id)
            out.append(GoalProgress(banner_id, goal.metric, goal.target, goal.by, start, delivered,
                                    planned(goal, start, min(now, goal.by)), pacing_boost(goal, start, delivered, now)))
        return out
