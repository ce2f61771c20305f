"""Request and response bodies (pydantic). They are the API's contract and appear in the
OpenAPI document at /openapi.json."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CANDIDATES = 500
MAX_EVENTS = 1000
MAX_SLOTS = 50
Id = Field(min_length=1, max_length=256)


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    staff_id: str = Field(min_length=1, max_length=256, description="the staff member the banner space is loaded for")
    profile: dict[str, str] | None = Field(
        None, description="role, school_level, region and any extra attributes; else the staff directory's profile")
    candidates: list[str] | None = Field(
        None, max_length=MAX_CANDIDATES,
        description=f"banner ids to rank (at most {MAX_CANDIDATES}); default: every eligible banner of the catalog")
    slots: int | None = Field(None, ge=1, le=MAX_SLOTS, description="positions the client shows (default from config)")
    context: dict | None = Field(None, description="free client context; accepted, not used for ranking yet")

    @field_validator("candidates")
    @classmethod
    def _ids(cls, v):
        if v is not None and any(not x or len(x) > 256 for x in v):
            raise ValueError("every candidate must be a banner id of 1 to 256 characters")
        return v


class RankedItemOut(BaseModel):
    banner_id: str
    position: int
    score: float
    propensity: float


class RankResponse(BaseModel):
    request_id: str
    model_version: str
    arm: str
    explored: bool
    ranking: list[RankedItemOut]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, description="unique per event: a retry with the same id is a duplicate")
    type: Literal["click"] = "click"
    request_id: str = Field(min_length=1, max_length=128)
    banner_id: str = Field(min_length=1, max_length=256)
    ts: datetime | None = Field(None, description="when it happened, ISO 8601 with an offset; default: receipt time")

    @field_validator("ts")
    @classmethod
    def _aware(cls, v):
        if v is not None and (v.tzinfo is None or v.utcoffset() is None):
            raise ValueError("ts needs a UTC offset (e.g. +09:00 or Z)")
        return v


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS, description=f"at most {MAX_EVENTS} per call")


class FlaggedEvent(BaseModel):
    event_id: str
    status: str


class EventsResponse(BaseModel):
    stored: int
    duplicates: int
    duplicate_ids: list[str]
    flagged: list[FlaggedEvent] = Field(description="stored events whose request (or shown banner) is unknown")


class BannersResponse(BaseModel):
    version: int
    banners: list[dict]


class PutResponse(BaseModel):
    version: int
    count: int


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    staff_id: str = Field(min_length=1, max_length=256)

    def attributes(self) -> dict[str, str]:
        return {k: ("" if v is None else str(v)) for k, v in (self.model_extra or {}).items()}


class StaffBatch(BaseModel):
    staff: list[StaffIn] = Field(max_length=200_000)


class ReloadResponse(BaseModel):
    ok: bool
    arms: dict[str, dict]


class ReadyResponse(BaseModel):
    ready: bool
    status: Literal["ok", "degraded", "unavailable"]
    problems: list[str]
    arms: dict[str, dict]
    catalog_banners: int
    staff: int
    history: dict[str, int] = Field(default_factory=dict,
                                    description="the click history held: impressions, people, open_rankings")
    worker: int = Field(0, description="the process id of the worker that answered (one of several with --workers)")
