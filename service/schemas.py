"""Request and response bodies (pydantic). They are the API's contract and appear in the
OpenAPI document at /openapi.json."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, TypeAdapter,
                      ValidationError, WrapValidator, model_validator)

from recommender.domain import control_characters_in

MAX_CANDIDATES = 500
MAX_EVENTS = 1000
MAX_SLOTS = 50
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _printable(v: str) -> str:
    # printable ASCII (almost every id) has no control character: skip the regex
    if not (v.isascii() and v.isprintable()) and control_characters_in(v):
        raise ValueError("must not contain control characters (NUL, tab, newline, ...)")
    return v


def _json_integer(v):
    """A JSON integer: 3, or 3.0 (JSON Schema counts it as one); not "3", not true."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("must be an integer")
        return int(v)
    return v


def _json_number(v):
    """A JSON number: 0.5, 1; not "0.5", not true."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be a number")
    return v


def _iso_text(v):
    if v is not None and not isinstance(v, str):
        raise ValueError("must be an ISO 8601 date-time string with an offset, e.g. 2026-03-09T08:41:07+09:00")
    return v


def _sensible_time(v: datetime | None) -> datetime | None:
    if v is None:
        return v
    if v.tzinfo is None or v.utcoffset() is None:
        raise ValueError("needs a UTC offset (e.g. +09:00 or Z)")
    if v < EARLIEST_EVENT:
        raise ValueError("must be a time from the year 2000 on")
    return v


# the rule in the OpenAPI document; _printable checks it with a message that says why
NO_CONTROL_CHARACTERS = Field(json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"})
_IDENTIFIER = StringConstraints(strict=True, min_length=1, max_length=256)
Identifier = Annotated[str, _IDENTIFIER, AfterValidator(_printable), NO_CONTROL_CHARACTERS]
ShortIdentifier = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128),
                            AfterValidator(_printable), NO_CONTROL_CHARACTERS]
Text = Annotated[str, StringConstraints(strict=True, max_length=256), AfterValidator(_printable), NO_CONTROL_CHARACTERS]
_CANDIDATE_IDS = TypeAdapter(Annotated[list[Identifier], Field(max_length=MAX_CANDIDATES)])


def _candidate_ids(v, handler):
    """A list of at most MAX_CANDIDATES Identifiers. The control-character check runs once
    over the whole list when every id is printable ASCII (almost always): per item, it is
    a Python call each, and a rank request carries dozens of ids. Otherwise each id is
    checked, so that an error names the item."""
    try:
        ids = handler(v)
    except ValidationError:
        ids = None  # every error, the control characters' too
    if ids is not None and (joined := "".join(ids)).isascii() and joined.isprintable():
        return ids
    return _CANDIDATE_IDS.validate_python(v)


CandidateIds = Annotated[list[Annotated[str, _IDENTIFIER, NO_CONTROL_CHARACTERS]], Field(max_length=MAX_CANDIDATES),
                         WrapValidator(_candidate_ids)]
EventTime = Annotated[datetime | None, BeforeValidator(_iso_text), AfterValidator(_sensible_time),
                     Field(json_schema_extra={"pattern": "^2[0-9]{3}-"})]


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"staff_id": "s-000017"},
        {"staff_id": "s-000017", "profile": {"role": "teacher", "school_level": "elementary", "region": "Suwon"},
         "candidates": ["b-policy-01", "b-survey-02", "b-event-03"], "slots": 3}]})

    staff_id: Identifier = Field(description="the staff member the banner space is loaded for")
    profile: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], Text] | None = Field(
        None, description="role, school_level, region and any extra attributes; else the staff directory's profile")
    candidates: CandidateIds | None = Field(
        None,
        description=f"banner ids to rank (at most {MAX_CANDIDATES}); default: every eligible banner of the catalog")
    slots: Annotated[int, Field(ge=1, le=MAX_SLOTS), BeforeValidator(_json_integer)] | None = Field(
        None, description="positions the client shows (default from config)")
    context: dict | None = Field(None, description="free client context; accepted, not used for ranking yet")
    explain: bool = Field(False, strict=True, description=(
        "admin key only: also explain each banner's place (its score in parts that add up to it, the rules that "
        "placed it, a sentence). The ranking is computed as usual but not logged nor counted as shown"))


class ScorePartOut(BaseModel):
    name: str = Field(description="the part: baseline, role, role x category, popularity, freshness, ...")
    text: str = Field(description="what the part stands for, in plain words")
    value: float = Field(description="its share of the score (logit units); a banner's parts add up to its score")


class PlaceReasonOut(BaseModel):
    kind: str = Field(description="pinned, operators_order, exploration or targeting")
    text: str
    decisive: bool = Field(description="true: this rule decided the place, whatever the score")


class ExplanationOut(BaseModel):
    sentence: str = Field(description="the explanation in one sentence an operator can read out")
    decided_by: str = Field(description="the first decisive reason's kind, or 'score' when the score decided")
    parts: list[ScorePartOut] = Field(description="empty when no model answered (the operators' order)")
    reasons: list[PlaceReasonOut]


EXPLANATION_EXAMPLE = {
    "sentence": "Place 1: '2026 평가 정책 안내' — mostly because of how often people with role teacher click policy "
                "banners (+1.21) and your earlier click on it (+0.80), held back by its popularity with everyone "
                "(-0.30); a candidate because it targets your group (role teacher).",
    "decided_by": "score",
    "parts": [{"name": "baseline", "text": "the model's baseline", "value": -3.1},
              {"name": "role x category", "text": "how often people with role teacher click policy banners",
               "value": 1.21},
              {"name": "your history with this banner", "text": "your earlier click on it", "value": 0.8},
              {"name": "popularity", "text": "its popularity with everyone", "value": -0.3},
              {"name": "freshness", "text": "its age (2 days since it started)", "value": 0.19}],
    "reasons": [{"kind": "targeting", "text": "a candidate because it targets your group (role teacher)",
                 "decisive": False}]}


class RankedItemOut(BaseModel):
    banner_id: str
    position: int
    score: float
    propensity: float
    explanation: ExplanationOut | None = Field(None, description="only with \"explain\": true")


class GoalOut(BaseModel):
    banner_id: str
    metric: Literal["reach", "clicks", "outcomes"]
    target: int
    by: str
    start: str = Field(description="delivery counts from here: the banner's start, or when the goal was first seen")
    delivered: int = Field(description="reach: distinct staff who had it in the shown slots; clicks: clicks on it; "
                                       "outcomes: distinct staff who had its outcome")
    planned: float = Field(description="what the even plan has delivered by now (it reaches the target at 90% of the time)")
    share_of_target: float
    met: bool
    behind_plan: bool
    boost: float = Field(description="the pacing boost (logit units) a person who has not had it yet gets now")


class GoalsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"goals": [{
        "banner_id": "b-policy-01", "metric": "reach", "target": 3000, "by": "2026-03-06T09:00:00+00:00",
        "start": "2026-03-01T15:00:00+00:00", "delivered": 1250, "planned": 1333.3, "share_of_target": 0.4167,
        "met": False, "behind_plan": True, "boost": 8.0}]}]})

    goals: list[GoalOut]


class LeftOutOut(BaseModel):
    banner_id: str
    reason: Literal["cap", "completed"] = Field(
        description="the rule that left it out: cap (its frequency cap for this person), completed (they had its "
                    "outcome and the catalog hides it after that)")
    text: str = Field(description="why, in words")


class RankResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6", "model_version": "20260309T010203-logistic", "arm": "A",
        "explored": False, "ranking": [
            {"banner_id": "b-survey-02", "position": 1, "score": -1.2, "propensity": 0.93},
            {"banner_id": "b-policy-01", "position": 2, "score": -2.1, "propensity": 0.93},
            {"banner_id": "b-event-03", "position": 3, "score": -2.8, "propensity": 0.93}]},
        {"request_id": "0192f3a4b5c6d7e8f9a0b1c2d3e4f5a7", "model_version": "20260309T010203-logistic", "arm": "A",
         "explored": False, "ranking": [
            {"banner_id": "b-policy-01", "position": 1, "score": -1.2, "propensity": 0.93,
             "explanation": EXPLANATION_EXAMPLE}],
         "left_out": [{"banner_id": "b-survey-07", "reason": "cap",
                       "text": "shown to you twice in the last 24 hours (its cap: 2 a day)"}]}]})

    request_id: str
    model_version: str
    arm: str
    explored: bool
    ranking: list[RankedItemOut]
    left_out: list[LeftOutOut] | None = Field(
        None, description="only with \"explain\": true: candidates a rule left out of this person's ranking")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: ShortIdentifier = Field(description="unique per event: a retry with the same id is a duplicate")
    type: Literal["click", "complete", "convert"] = Field(
        "click", description="click; or an outcome after the click: complete (a survey answered, a form finished) "
                             "or convert (a sign-up to an event)")
    request_id: ShortIdentifier = Field(description="the request_id of the ranking that showed the banner")
    banner_id: Identifier
    ts: EventTime = Field(None, description="when it happened, ISO 8601 with an offset; default: receipt time")
    value: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), BeforeValidator(_json_number)] | None = Field(
        None, description="an outcome's value from 0 to 1 (default 1: the outcome happened in full); not for a click")

    @model_validator(mode="after")
    def _value_only_for_outcomes(self):
        if self.type == "click" and self.value is not None:
            raise ValueError("value is for outcome events (complete, convert), not for a click")
        return self


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"events": [
        {"event_id": "e-1", "type": "click", "request_id": "0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",
         "banner_id": "b-survey-02", "ts": "2026-03-09T08:41:07+09:00"},
        {"event_id": "e-2", "type": "complete", "request_id": "0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",
         "banner_id": "b-survey-02", "ts": "2026-03-09T08:44:30+09:00", "value": 1.0}]}]})

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS, description=f"at most {MAX_EVENTS} per call")


class FlaggedEvent(BaseModel):
    event_id: str
    status: str


class EventsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"stored": 1, "duplicates": 0, "duplicate_ids": [], "flagged": []}]})

    stored: int
    duplicates: int
    duplicate_ids: list[str]
    flagged: list[FlaggedEvent] = Field(description="stored events whose request (or shown banner) is unknown")


BANNER_EXAMPLE = {"banner_id": "b-policy-01", "category": "policy", "title": "2026 평가 정책 안내",
                  "start": "2026-03-02T00:00:00+09:00", "end": None,
                  "target": {"role": ["teacher"], "school_level": [], "region": []},
                  "pinned": False, "priority": 0, "tags": ["evaluation"],
                  "cap": {"per_day": 3, "unclicked": {"impressions": 10, "days": 14}}}


class PutResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"version": 4, "count": 30}]})

    version: int
    count: int


class StaffIn(BaseModel):
    """A staff member: ``staff_id`` and the attributes (role, school_level, region, ...)
    as further fields, each a string (a number is taken as its text; null is unknown)."""

    model_config = ConfigDict(extra="allow")

    staff_id: Identifier

    @model_validator(mode="after")
    def _flat_attributes(self):
        for name, value in (self.model_extra or {}).items():
            if control_characters_in(name) or not name:
                raise ValueError(f"attribute name {name!r} must be non-empty, without control characters")
            if isinstance(value, bool) or not (value is None or isinstance(value, (str, int, float))):
                raise ValueError(f"attribute {name!r} must be a string (or null), not {type(value).__name__}")
            if isinstance(value, str) and control_characters_in(value):
                raise ValueError(f"attribute {name!r} must not contain control characters")
        return self

    def attributes(self) -> dict[str, str]:
        return {k: ("" if v is None else str(v)) for k, v in (self.model_extra or {}).items()}


class StaffBatch(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"staff": [
        {"staff_id": "s-000017", "role": "teacher", "school_level": "elementary", "region": "Suwon"}]}]})

    staff: list[StaffIn] = Field(max_length=200_000)


class ReloadResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"ok": True, "arms": {"A": {"version": "20260309T010203-logistic", "status": "loaded", "error": None}}}]})

    ok: bool
    arms: dict[str, dict]


class SharesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"shares": {"A": 0.9, "B": 0.1}}]})

    shares: dict[Identifier, Annotated[float, Field(ge=0, le=1)]] = Field(
        description="every configured arm's share of the staff, adding up to 1")


class ArmsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "shares": {"A": 0.9, "B": 0.1}, "models": {"A": "20260309T010203-logistic", "B": "20260316T010203-logistic"},
        "ramp": {"arm": "B", "control": "A", "status": "ramping", "reason": "", "share": 0.1,
                 "new_requests": 5120, "new_clicks_per_request": 0.193, "control_requests": 46080,
                 "control_clicks_per_request": 0.188, "difference": 0.005, "low": -0.021, "high": 0.031}}]})

    shares: dict[str, float]
    models: dict[str, str]
    ramp: dict | None = Field(None, description="the last ramp and how its arms compare since it began")


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"staff_id": "s-000017"}]})

    staff_id: Identifier = Field(description="the staff member whose rankings, clicks and directory row to delete")


class ForgetResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"rankings": 212, "events": 9, "staff": 1}]})

    rankings: int = Field(description="rankings served to the person, deleted")
    events: int = Field(description="click events on those rankings, deleted")
    staff: int = Field(description="staff directory rows deleted (0 or 1)")


class ReadyResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "ready": True, "status": "ok", "problems": [],
        "arms": {"A": {"model_version": "20260309T010203-logistic", "exploration": "epsilon-greedy", "epsilon": 0.1,
                       "share": 1.0, "error": None}},
        "catalog_banners": 30, "staff": 180000,
        "history": {"impressions": 4100000, "people": 120000, "open_rankings": 52000}, "worker": 4242}]})

    ready: bool
    status: Literal["ok", "degraded", "unavailable"]
    problems: list[str]
    arms: dict[str, dict]
    catalog_banners: int
    staff: int
    history: dict[str, int] = Field(default_factory=dict,
                                    description="the click history held: impressions, people, open_rankings")
    worker: int = Field(0, description="the process id of the worker that answered (one of several with --workers)")


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "alive"}]})

    status: Literal["alive"]


class ErrorResponse(BaseModel):
    """400, 401, 403, 413 and 503 answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"detail": "missing or unknown API key: send it in the X-API-Key header"}]})

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', then the field path (list items by index)")
    msg: str
    type: str | None = None


class ValidationErrorResponse(BaseModel):
    """422: the body breaks the request's contract. ``message`` names the first field."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": [{"loc": ["body", "slots"], "msg": "Input should be greater than or equal to 1",
                    "type": "greater_than_equal"}],
        "message": "slots: Input should be greater than or equal to 1"}]})

    detail: list[FieldProblem]
    message: str = ""


BAD_REQUEST = {400: {"model": ErrorResponse, "description": "the body cannot be read (not UTF-8 JSON)"}}
UNAUTHORIZED = {401: {"model": ErrorResponse, "description": "no API key, or an unknown one"}}
FORBIDDEN = {403: {"model": ErrorResponse, "description": "a client key on an admin endpoint"}}
EXPLAIN_ERRORS = {
    403: {"model": ErrorResponse, "description": "\"explain\": true with a client key (it needs an admin key)"},
    409: {"model": ErrorResponse, "description": "\"explain\": true, and the arm's model cannot split its scores"}}
TOO_LARGE = {413: {"model": ErrorResponse, "description": "the body is over the size limit"}}
INVALID = {422: {"model": ValidationErrorResponse, "description": "the body breaks its contract (the field is named)"}}
OVERLOADED = {503: {"model": ErrorResponse, "description": "the worker is full, or (events, forget) the store cannot "
                                                      "take writes: retry after the Retry-After seconds",
                    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}}}
CLIENT_ERRORS = {**BAD_REQUEST, **UNAUTHORIZED, **TOO_LARGE, **INVALID, **OVERLOADED}
ADMIN_ERRORS = {**CLIENT_ERRORS, **FORBIDDEN}
