"""Azure AI Personalizer's Rank and Reward, over the ranking engine: for systems that move
off Personalizer (retired in 2026) without changing their calls.

How its concepts map onto the engine's (docs/personalizer.md):

- **context features** (a list of objects) are the staff member: the feature ``staff_id``
  (or ``staffId``) names them, every other scalar feature is a profile attribute (role,
  school_level, region, ...). A feature namespace (an object inside a feature object) is
  read the same way. Without a staff id, the ranking is for an anonymous person with
  that profile (no click history).
- **actions** are the candidate banners, by ``id``; their ``features`` are not used (the
  catalog describes the banners). ``excludedActions`` are left out.
- **eventId** is the ranking's request id (one is made when the call gives none), so a
  reward and the engine's events find the same ranking. An event id must be new.
- **rewardActionId** is the first place of the ranking; with multi-slot, slot k gets the
  k-th place, so the ranking's first ``len(slots)`` places are its impressions.
- **reward**: a value above 0 is a click on the rewarded action (an impression's
  outcome, such as an answered survey, is reported with ``POST /v1/events``, type
  ``complete`` or ``convert``); 0 or less leaves it unclicked. The first reward of an
  event (of a slot) counts, as Personalizer's "earliest" reward aggregation does.
- **activate**: rankings are logged as shown when answered, so activation only checks
  the event exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from recommender.domain import control_characters_in
from recommender.store import ClickEvent

from .engine import RankingEngine, RankOutcome

STAFF_KEYS = ("staff_id", "staffId")
ANONYMOUS = "anonymous:"  # the staff id of a ranking whose context names nobody, before its event id


class PersonalizerError(ValueError):
    """A call the adapter cannot answer: ``status`` and Personalizer's error ``code``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def context_person(features: Sequence[Mapping]) -> tuple[str | None, dict[str, str]]:
    """The staff id and profile that context features give (see the module's docstring)."""
    staff_id, profile = None, {}

    def read(obj: Mapping, where: str) -> None:
        nonlocal staff_id
        for name, value in obj.items():
            if isinstance(value, Mapping):
                read(value, f"{where}.{name}")
                continue
            if isinstance(value, (list, tuple)):
                raise PersonalizerError(400, "BadRequest", f"contextFeatures{where}.{name}: a list is not a feature "
                                                           "the engine reads (give a string or a number)")
            text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            if control_characters_in(text) or control_characters_in(name):
                raise PersonalizerError(400, "BadRequest", f"contextFeatures{where}.{name}: control characters")
            if name in STAFF_KEYS:
                staff_id = text or None
            else:
                profile[name] = text

    for i, obj in enumerate(features):
        read(obj, f"[{i}]")
    return staff_id, profile


@dataclass
class Ranked:
    event_id: str
    outcome: RankOutcome


class PersonalizerAdapter:
    """Rank, reward and activate in Personalizer's terms, thin over ``RankingEngine``."""

    def __init__(self, engine: RankingEngine):
        self.engine = engine

    def _new_event(self, event_id: str | None) -> str:
        if event_id is None:
            return self.engine.request_ids.new()
        if self.engine.online.staff_of(event_id) is not None or self.engine.store.ranking(event_id) is not None:
            raise PersonalizerError(409, "Conflict", f"eventId {event_id!r} was already used by a rank call: "
                                                     "give each rank call an event id of its own")
        return event_id

    def rank(self, context: Sequence[Mapping], actions: Sequence[str], excluded: Iterable[str], event_id: str | None,
             slot_ids: Sequence[str] = ()) -> Ranked:
        """Rank ``actions`` less ``excluded`` for the person of ``context``: the first place
        is shown, or with ``slot_ids`` (multi-slot) the first ``len(slot_ids)``, in order."""
        staff_id, profile = context_person(context)
        left_out = set(excluded)
        candidates = [a for a in dict.fromkeys(actions) if a not in left_out]
        if not candidates:
            raise PersonalizerError(400, "BadRequest", "every action is excluded: nothing to rank")
        event_id = self._new_event(event_id)
        outcome = self.engine.rank(staff_id or f"{ANONYMOUS}{event_id}", profile or None, candidates,
                                   max(1, len(slot_ids)), request_id=event_id, slot_ids=slot_ids)
        return Ranked(event_id, outcome)

    def shown(self, event_id: str) -> tuple[list[str], list[str]]:
        """The actions an event showed, in slot order, and its slots' ids ([] for a single slot)."""
        self.engine.flush()  # a ranking of this worker may still be on its way to the store
        r = self.engine.store.ranking(event_id)
        if r is None:
            raise PersonalizerError(404, "EventNotFound", f"no rank call had the eventId {event_id!r}")
        return [b for b, *_ in r.shown()], r.slot_ids

    def reward(self, event_id: str, rewards: Mapping[str | None, float]) -> int:
        """Rewards of an event by slot id (None: the single slot's): a click on the slot's
        action for each value above 0; the number of clicks stored (a retry stores none)."""
        shown, slot_ids = self.shown(event_id)
        events = []
        for slot_id, value in rewards.items():
            if slot_id is None:
                slot = 0
            elif slot_id in slot_ids:
                slot = slot_ids.index(slot_id)
            else:
                raise PersonalizerError(400, "BadRequest", f"event {event_id!r} has no slot {slot_id!r} "
                                                           f"(its slots: {', '.join(slot_ids) or 'one, unnamed'})")
            if value > 0 and slot < len(shown):
                events.append(ClickEvent(f"personalizer:{event_id}:{slot}", event_id, shown[slot], 0.0))
        if not events:
            return 0
        return len(self.engine.record_events(events).stored)

    def activate(self, event_id: str) -> None:
        self.shown(event_id)
