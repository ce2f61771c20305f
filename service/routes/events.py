"""POST /v1/events."""
from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from recommender.store import ClickEvent

from ..deps import Client, Engine, Metrics
from ..schemas import CLIENT_ERRORS, EventBatch, EventsResponse, FlaggedEvent

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("service.events")


def to_events(body: EventBatch) -> list[ClickEvent]:
    return [ClickEvent(e.event_id, e.request_id, e.banner_id, e.ts.timestamp() if e.ts else 0.0, e.type,
                       value=None if e.type == "click" else (1.0 if e.value is None else e.value))
            for e in body.events]


# a plain def: storing waits for the disk (fsync), so it runs in the thread pool
@router.post("/events", response_model=EventsResponse, responses=CLIENT_ERRORS,
             summary="report clicks and the outcomes after them (complete, convert); answered only once they are "
                     "durably stored; idempotent by event_id")
def post_events(body: EventBatch, engine: Engine, metrics: Metrics, _: Client):
    events = to_events(body)
    try:
        outcome = engine.record_events(events)
    except Exception as e:  # the store's one transaction failed: nothing of the batch is stored
        log.exception("events not stored")
        raise HTTPException(503, f"the event store cannot take events now ({type(e).__name__}); nothing of this "
                                 "batch is stored: send it again", headers={"Retry-After": "1"}) from None
    metrics.observe_events(outcome, engine.arms_of(events), events)
    return EventsResponse(stored=len(outcome.stored), duplicates=len(outcome.duplicates),
                          duplicate_ids=outcome.duplicates,
                          flagged=[FlaggedEvent(event_id=k, status=v) for k, v in outcome.flagged.items()])
