"""The event store: served rankings and click events, durably (see base.py)."""
from .base import (CATALOG_DOC, NOT_SHOWN, OK, STAFF_DOC, UNKNOWN_REQUEST, ClickEvent, Erasure, Erasures,
                   EventsOutcome, EventStore, ForgetResult, PruneResult, RankingRecord)
from .connect import open_store

__all__ = ["CATALOG_DOC", "ClickEvent", "Erasure", "Erasures", "EventStore", "EventsOutcome", "ForgetResult",
           "NOT_SHOWN", "OK", "PruneResult", "RankingRecord", "STAFF_DOC", "UNKNOWN_REQUEST", "open_store"]
