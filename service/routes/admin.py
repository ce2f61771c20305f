"""POST /v1/admin/reload, and the health endpoints."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from service.engine import RankingEngine

from .. import metrics
from ..deps import get_engine, require_admin
from ..schemas import ReadyResponse, ReloadResponse

router = APIRouter(tags=["admin"])


@router.post("/v1/admin/reload", response_model=ReloadResponse,
             responses={409: {"model": ReloadResponse, "description": "an arm could not load its model: it keeps the "
                                                                      "model it was running (or the operators' order)"}},
             summary="load the models the registry names for each arm (admin)")
def reload(engine: RankingEngine = Depends(get_engine), _: str = Depends(require_admin)):
    report = engine.reload()
    metrics.set_model_versions(engine.arms)
    body = ReloadResponse(ok=report.ok, arms=report.arms)
    return JSONResponse(body.model_dump(), status_code=200 if report.ok else 409)


@router.get("/healthz", summary="the process is alive")
async def healthz():
    return {"status": "alive"}


@router.get("/readyz", response_model=ReadyResponse,
            responses={503: {"model": ReadyResponse, "description": "the event store cannot take writes"}},
            summary="ready to serve: store writable; status 'degraded' when an arm has no model")
def readyz(engine: RankingEngine = Depends(get_engine)):
    r = engine.readiness()
    if not r["ready"]:
        r["status"] = "unavailable"
    return JSONResponse(ReadyResponse(**r).model_dump(), status_code=200 if r["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics(engine: RankingEngine = Depends(get_engine)):
    metrics.set_model_versions(engine.arms)
    data, ctype = metrics.render()
    return Response(data, media_type=ctype)
