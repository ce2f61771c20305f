"""The event store: served rankings and click events, durably (see base.py)."""
from .base import NOT_SHOWN, OK, UNKNOWN_REQUEST, ClickEvent, EventsOutcome, EventStore, RankingRecord, open_store

__all__ = ["ClickEvent", "EventStore", "EventsOutcome", "NOT_SHOWN", "OK", "RankingRecord", "UNKNOWN_REQUEST",
           "open_store"]
