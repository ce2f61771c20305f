"""Dependencies of the routes: the engine, the settings, the metrics, and API-key auth
(the X-API-Key header: a client key for ranking and events, an admin key for all)."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from .config import ServiceConfig
from .engine import RankingEngine
from .metrics import ServiceMetrics

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="a client key (rank, events) or an admin key (everything)")


async def get_engine(request: Request) -> RankingEngine:
    return request.app.state.engine


async def get_settings(request: Request) -> ServiceConfig:
    return request.app.state.engine.config


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def _matches(key: str, keys: frozenset[str]) -> bool:
    # compare against every key in constant time (do not stop at the first match)
    found = False
    for k in keys:
        found |= hmac.compare_digest(key.encode("utf-8"), k.encode("utf-8"))
    return found


def key_kind(key: str | None, settings: ServiceConfig) -> str | None:
    if not key:
        return None
    if _matches(key, settings.admin_keys):
        return "admin"
    if _matches(key, settings.client_keys):
        return "client"
    return None


_UNAUTHORIZED = HTTPException(401, "missing or unknown API key: send it in the X-API-Key header",
                              headers={"WWW-Authenticate": "X-API-Key"})


class _KeyOf(APIKeyHeader):
    """The X-API-Key check as a single dependency: it reads the header and the keys itself,
    where a dependency on ``api_key_header`` and ``get_settings`` would make FastAPI solve
    three per request (a good part of a no-op request's time). Being an APIKeyHeader named
    like ``api_key_header``, it documents the same security scheme in the OpenAPI document."""

    def __init__(self, admin: bool):
        super().__init__(name=api_key_header.model.name, auto_error=False, scheme_name=api_key_header.scheme_name,
                         description=api_key_header.model.description)
        self.admin = admin

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        kind = key_kind(request.headers.get("x-api-key"), request.app.state.engine.config)
        if kind is None:
            raise _UNAUTHORIZED
        if self.admin and kind != "admin":
            raise HTTPException(403, "this endpoint needs an admin API key")
        return kind


require_client = _KeyOf(admin=False)
require_admin = _KeyOf(admin=True)


Engine = Annotated[RankingEngine, Depends(get_engine)]
Metrics = Annotated[ServiceMetrics, Depends(get_metrics)]
Client = Annotated[str, Depends(require_client)]
Admin = Annotated[str, Depends(require_admin)]
