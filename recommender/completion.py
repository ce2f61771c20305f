"""Outcomes after a click, and what the catalog says follows them.

A banner's outcome (``Banner.outcome``, recommender.domain.OutcomeRule) is an outcome
event of its ``type`` (a survey answered: "complete"; a sign-up: "convert"); a banner
without a rule counts an outcome event of any type. Once a person has had a banner's
outcome, its rule's ``after_completion`` says what happens to it for them:

- ``keep`` (the default): nothing;
- ``hide``: it is left out of their candidates, as a frequency cap leaves a banner out;
- ``downweight``: its odds are multiplied by ``downweight`` before the greedy order (a
  score boost of log(downweight), added like a delivery goal's pacing boost).

"Completed" is history, point in time: a person completed a banner at time t when an
impression of it shown at a time before t had its outcome (the impression's time, as a
click is counted at its impression's time). The service (from its events), the
simulator's logging policy and offline evaluation's target policies (from the logs'
``outcome`` field) apply the rule through ``CompletionLedger`` the same way.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .contracts.impressions import ImpressionLog
from .domain import Banner, Catalog, OutcomeRule

__all__ = ["CompletionLedger", "counts_outcome", "any_after_completion", "ledger_from_logs", "completion_rows"]


def counts_outcome(banner: Banner | None, event_type: str) -> bool:
    """Whether an outcome event of ``event_type`` is the banner's outcome (its rule's
    type; any outcome type for a banner without a rule, or one the catalog does not hold)."""
    if event_type == "click":
        return False
    rule = None if banner is None else banner.outcome
    return rule is None or rule.type == event_type


def _acts(rule: OutcomeRule | None) -> bool:
    return rule is not None and rule.after_completion != "keep"


def any_after_completion(banners: Iterable[Banner]) -> bool:
    """Whether some banner hides or down-weights itself after its outcome."""
    return any(_acts(b.outcome) for b in banners)


class CompletionLedger:
    """Per person, the banners they had the outcome of, and the earliest impression time
    of that outcome. Events may arrive in any order; the earliest time is kept."""

    def __init__(self) -> None:
        self._people: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._people)

    def add(self, staff_id: str, banner_id: str, ts: float) -> None:
        person = self._people.setdefault(staff_id, {})
        prev = person.get(banner_id)
        if prev is None or ts < prev:
            person[banner_id] = float(ts)

    def forget(self, staff_id: str) -> None:
        self._people.pop(staff_id, None)

    def completed(self, staff_id: str, banner_id: str, ts: float) -> bool:
        """Whether the person had the banner's outcome on an impression shown before ``ts``."""
        person = self._people.get(staff_id)
        at = None if person is None else person.get(banner_id)
        return at is not None and at < ts

    def hidden(self, staff_id: str, banners: Sequence[Banner], ts: float) -> set[str]:
        """The ids of ``banners`` that the person completed and whose rule hides them."""
        person = self._people.get(staff_id)
        if not person:
            return set()
        return {b.banner_id for b in banners if b.outcome is not None and b.outcome.after_completion == "hide"
                and self.completed(staff_id, b.banner_id, ts)}

    def penalties(self, staff_id: str, banners: Sequence[Banner], ts: float) -> np.ndarray | None:
        """Each of ``banners``' score boost for this person (log of its ``downweight`` where
        they completed a down-weighted one, else 0); None when there is none."""
        person = self._people.get(staff_id)
        if not person:
            return None
        out = None
        for i, b in enumerate(banners):
            rule = b.outcome
            if rule is not None and rule.after_completion == "downweight" and self.completed(staff_id, b.banner_id, ts):
                if out is None:
                    out = np.zeros(len(banners))
                out[i] = math.log(rule.downweight)
        return out


def ledger_from_logs(logs: Sequence[ImpressionLog], catalog: Catalog) -> CompletionLedger | None:
    """The completions of impression logs (rows with an outcome above 0), for the banners
    whose rule hides or down-weights them; None when no banner's rule does."""
    acting = {b.banner_id for b in catalog.banners if _acts(b.outcome)}
    if not acting:
        return None
    ledger = CompletionLedger()
    for log in logs:
        banner_ok = np.array([b in acting for b in log.banner_ids], dtype=bool)
        for i in np.flatnonzero(banner_ok[log.banner] & (log.outcome > 0)).tolist():
            ledger.add(log.staff_ids[log.staff[i]], log.banner_ids[log.banner[i]], float(log.ts[i]))
    return ledger


def completion_rows(logs: Sequence[ImpressionLog], catalog: Catalog, staff: Sequence[str], banner: np.ndarray,
                    ts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For candidate rows (a person, a catalog index, a time): whether the rule hides the
    row (the person completed the banner before its time), and its score boost (log of
    the rule's downweight, else 0), from the outcomes of ``logs``. None when no banner's
    rule hides or down-weights."""
    ledger = ledger_from_logs(logs, catalog)
    if ledger is None:
        return None
    hidden = np.zeros(len(banner), dtype=bool)
    boost = np.zeros(len(banner))
    banners, ids = catalog.banners, catalog.ids
    for j in range(len(banner)):
        b = banners[banner[j]]
        if _acts(b.outcome) and ledger.completed(staff[j], ids[banner[j]], float(ts[j])):
            if b.outcome.after_completion == "hide":
                hidden[j] = True
            else:
                boost[j] = math.log(b.outcome.downweight)
    return hidden, boost
