"""Azure AI Personalizer's Rank, Reward and Activate calls (single and multi-slot), as the
official client library (azure-ai-personalizer) and the v1.0 REST API send them, over the
ranking engine (service.personalizer). Mounted at /personalizer (the client library's
paths, with its api-version query parameter) and at /personalizer/v1.0 and
/personalizer/v1.1-preview.3 (the REST API's versioned paths)."""
from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..deps import get_engine, key_kind
from ..engine import RankingEngine
from ..personalizer import PersonalizerAdapter, PersonalizerError
from ..schemas import CLIENT_ERRORS, MAX_CANDIDATES, ShortIdentifier

PREFIXES = ("/personalizer", "/personalizer/v1.0", "/personalizer/v1.1-preview.3")
SUBSCRIPTION_KEY = "Ocp-Apim-Subscription-Key"

ActionId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
EventId = Annotated[str, Path(min_length=1, max_length=128, pattern="^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: ActionId = Field(description="a banner id of the catalog (a cold-start banner otherwise)")
    features: list[dict[str, Any]] = Field(default_factory=list, description="accepted, not used: the catalog "
                                                                             "describes the banners")


class RankIn(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "contextFeatures": [{"staff_id": "s-000017"}, {"role": "teacher", "school_level": "elementary"}],
        "actions": [{"id": "b-survey-02", "features": [{"category": "survey"}]}, {"id": "b-policy-01", "features": []}],
        "excludedActions": [], "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10", "deferActivation": False}]})

    contextFeatures: list[dict[str, Any]] = Field(default_factory=list, description=(
        "the staff member: staff_id (or staffId), and profile attributes (role, school_level, region, ...)"))
    actions: list[ActionIn] = Field(min_length=1, max_length=MAX_CANDIDATES)
    excludedActions: list[ActionId] = Field(default_factory=list)
    eventId: ShortIdentifier | None = Field(None, description="the ranking's request id; one is made when missing")
    deferActivation: bool = Field(False, description="accepted: the ranking is logged as shown when answered")


class RankedAction(BaseModel):
    id: str
    probability: float = Field(description="the chance that this policy puts the action at its place in the ranking "
                                           "(for rewardActionId, the first place)")


class RankOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10", "rewardActionId": "b-survey-02",
        "ranking": [{"id": "b-survey-02", "probability": 0.93}, {"id": "b-policy-01", "probability": 0.93}]}]})

    eventId: str
    ranking: list[RankedAction]
    rewardActionId: str | None


class SlotIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: ShortIdentifier
    baselineAction: ActionId | None = None
    excludedActions: list[ActionId] = Field(default_factory=list, description="left out of the whole ranking")
    features: list[dict[str, Any]] = Field(default_factory=list)


class MultiSlotRankIn(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "contextFeatures": [{"staff_id": "s-000017"}],
        "actions": [{"id": "b-survey-02", "features": []}, {"id": "b-policy-01", "features": []},
                    {"id": "b-event-03", "features": []}],
        "slots": [{"id": "Main", "baselineAction": "b-policy-01"}, {"id": "Side", "baselineAction": "b-event-03"}],
        "eventId": "multi-0001"}]})

    contextFeatures: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[ActionIn] = Field(min_length=1, max_length=MAX_CANDIDATES)
    slots: list[SlotIn] = Field(min_length=1, max_length=50)
    eventId: ShortIdentifier | None = None
    deferActivation: bool = False


class SlotOut(BaseModel):
    id: str
    rewardActionId: str | None


class MultiSlotRankOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "eventId": "multi-0001", "slots": [{"id": "Main", "rewardActionId": "b-survey-02"},
                                           {"id": "Side", "rewardActionId": "b-policy-01"}]}]})

    eventId: str
    slots: list[SlotOut]


Reward = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]


class RewardIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"value": 1.0}]})

    value: Reward = Field(description="above 0: a click on the rewarded action; 0 or less: none")


class SlotReward(BaseModel):
    slotId: ShortIdentifier
    value: Reward


class MultiSlotRewardIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reward": [{"slotId": "Side", "value": 1.0}]}]})

    reward: list[SlotReward] = Field(min_length=1, max_length=50)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """Personalizer's error form, with the service's ``detail`` too (a body that cannot be
    read has only ``detail``)."""

    error: ErrorDetail | None = None
    detail: str


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, "detail": message}, status_code=status)


def _errors(*statuses: int) -> dict:
    return {status: {"model": ErrorOut, "description": WHY[status]} for status in statuses}


WHY = {400: "the body cannot be read, a slot the event does not have, or every action excluded",
       401: "no Ocp-Apim-Subscription-Key (or X-API-Key) header, or an unknown key",
       404: "no rank call had this eventId", 409: "the eventId was already used by a rank call"}
RANK_ERRORS = {**CLIENT_ERRORS, **_errors(400, 401, 409)}
EVENT_ERRORS = {**CLIENT_ERRORS, **_errors(400, 401, 404)}


class _Denied(Exception):
    pass


async def subscription_key(request: Request) -> str:
    """Personalizer's key header (or the service's X-API-Key), matched against the client keys."""
    kind = key_kind(request.headers.get(SUBSCRIPTION_KEY) or request.headers.get("x-api-key"),
                    request.app.state.engine.config)
    if kind is None:
        raise _Denied()
    return kind


Key = Annotated[str, Depends(subscription_key)]
Engine = Annotated[RankingEngine, Depends(get_engine)]


def _adapter(engine: RankingEngine) -> PersonalizerAdapter:
    return PersonalizerAdapter(engine)


def _answer(fn, status: int):
    """``fn``'s answer (a 201's body; a 204 has none), or its PersonalizerError in Personalizer's form."""
    try:
        out = fn()
    except PersonalizerError as e:
        return _error(e.status, e.code, str(e))
    return Response(status_code=204) if status == 204 else JSONResponse(out, status_code=status)


router = APIRouter(tags=["personalizer"])


@router.post("/rank", status_code=201, response_model=RankOut, responses=RANK_ERRORS, summary="Personalizer Rank: the action to show")
def rank(body: RankIn, engine: Engine, request: Request, _: Key):
    def work():
        t = time.perf_counter()
        ranked = _adapter(engine).rank(body.contextFeatures, [a.id for a in body.actions], body.excludedActions,
                                       body.eventId)
        request.app.state.metrics.observe_rank(ranked.outcome, time.perf_counter() - t)
        r = ranked.outcome.result
        return RankOut(eventId=ranked.event_id, rewardActionId=r.banner_ids[0] if r.banner_ids else None,
                       ranking=[RankedAction(id=b, probability=p) for b, p in zip(r.banner_ids, r.propensities)]
                       ).model_dump()

    return _answer(work, 201)


@router.post("/events/{eventId}/reward", status_code=204, responses=EVENT_ERRORS, summary="Personalizer Reward: the value of an event")
def reward(eventId: EventId, body: RewardIn, engine: Engine, _: Key):
    return _answer(lambda: _adapter(engine).reward(eventId, {None: body.value}), 204)


@router.post("/events/{eventId}/activate", status_code=204, responses=EVENT_ERRORS, summary="Personalizer Activate (accepted)")
def activate(eventId: EventId, engine: Engine, _: Key):
    return _answer(lambda: _adapter(engine).activate(eventId), 204)


@router.post("/multislot/rank", status_code=201, response_model=MultiSlotRankOut, responses=RANK_ERRORS,
             summary="Personalizer multi-slot Rank: the action of each slot")
def rank_multi_slot(body: MultiSlotRankIn, engine: Engine, request: Request, _: Key):
    def work():
        t = time.perf_counter()
        excluded = [a for s in body.slots for a in s.excludedActions]
        slot_ids = [s.id for s in body.slots]
        if len(set(slot_ids)) != len(slot_ids):
            raise PersonalizerError(400, "BadRequest", "slots: each slot needs an id of its own")
        ranked = _adapter(engine).rank(body.contextFeatures, [a.id for a in body.actions], excluded, body.eventId,
                                       slot_ids)
        request.app.state.metrics.observe_rank(ranked.outcome, time.perf_counter() - t)
        ids = ranked.outcome.result.banner_ids
        return MultiSlotRankOut(eventId=ranked.event_id, slots=[
            SlotOut(id=s, rewardActionId=ids[k] if k < len(ids) else None) for k, s in enumerate(slot_ids)]).model_dump()

    return _answer(work, 201)


@router.post("/multislot/events/{eventId}/reward", status_code=204, responses=EVENT_ERRORS, summary="Personalizer multi-slot Reward")
def reward_multi_slot(eventId: EventId, body: MultiSlotRewardIn, engine: Engine, _: Key):
    return _answer(lambda: _adapter(engine).reward(eventId, {r.slotId: r.value for r in body.reward}), 204)


@router.post("/multislot/events/{eventId}/activate", status_code=204, responses=EVENT_ERRORS, summary="Personalizer multi-slot Activate")
def activate_multi_slot(eventId: EventId, engine: Engine, _: Key):
    return _answer(lambda: _adapter(engine).activate(eventId), 204)


def install(app) -> None:
    """Mount the routes at every prefix (the first in the OpenAPI document), and answer a
    missing or unknown key as Personalizer does."""
    for i, prefix in enumerate(PREFIXES):
        app.include_router(router, prefix=prefix, include_in_schema=i == 0)

    @app.exception_handler(_Denied)
    async def _denied(request: Request, exc: _Denied):
        return _error(401, "Unauthorized", f"missing or unknown key: send it in the {SUBSCRIPTION_KEY} header")
