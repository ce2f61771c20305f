"""The event store: served rankings and click events, durably (see base.py)."""
from .base import (CATALOG_DOC, NOT_SHOWN, OK, STAFF_DOC, UNKNOWN_REQUEST, ClickEvent, EventsOutcome, EventStore,
                   RankingRecord)
from .connect import open_store

__all__ = ["CATALOG_DOC", "ClickEvent", "EventStore", "EventsOutcome", "NOT_SHOWN", "OK", "RankingRecord",
           "STAFF_DOC", "UNKNOWN_REQUEST", "open_store"]
