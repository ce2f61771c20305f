"""POST /v1/admin/reload, GET/PUT /v1/admin/arms, POST /v1/admin/forget, GET /v1/goals, and the
health and metrics endpoints."""
from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ..deps import Admin, Engine, Metrics
from ..schemas import (ADMIN_ERRORS, FORBIDDEN, UNAUTHORIZED, ArmsResponse, ForgetRequest, ForgetResponse,
                       GoalsResponse, Health, ReadyResponse, ReloadResponse, SharesRequest)

router = APIRouter(tags=["admin"])
log = logging.getLogger("service.admin")


@router.post("/v1/admin/reload", response_model=ReloadResponse,
             responses={409: {"model": ReloadResponse, "description": "an arm could not load its model: it keeps the "
                                                                      "model it was running (or the operators' order)"},
                        **UNAUTHORIZED, **FORBIDDEN},
             summary="load the models the registry names for each arm (admin)")
def reload(engine: Engine, metrics: Metrics, _: Admin):
    report = engine.reload()
    metrics.set_model_versions(engine.models.arms)
    body = ReloadResponse(ok=report.ok, arms=report.arms)
    return JSONResponse(body.model_dump(), status_code=200 if report.ok else 409)


@router.get("/v1/goals", response_model=GoalsResponse, responses={**UNAUTHORIZED, **FORBIDDEN},
            summary="each banner's delivery goal: what it delivered, the plan, the pacing boost (admin)")
def get_goals(engine: Engine, _: Admin):
    return GoalsResponse(goals=[g.to_dict() for g in engine.goal_progress()])


@router.get("/v1/admin/arms", response_model=ArmsResponse, responses={**UNAUTHORIZED, **FORBIDDEN},
            summary="the arms' shares and models, and the last ramp's comparison (admin)")
def get_arms(engine: Engine, _: Admin):
    return ArmsResponse(**engine.arms_status())


@router.put("/v1/admin/arms", response_model=ArmsResponse, responses={**ADMIN_ERRORS},
            summary="change the arms' shares live, on every worker (admin)")
def put_arms(body: SharesRequest, engine: Engine, _: Admin):
    problem = engine.set_shares(body.shares)
    if problem:
        raise RequestValidationError([{"loc": ("body", "shares"), "msg": problem, "type": "value_error"}])
    return ArmsResponse(**engine.arms_status())


@router.post("/v1/admin/forget", response_model=ForgetResponse, responses={**ADMIN_ERRORS},
             summary="delete one person's rankings, clicks and directory row, on every worker (admin)")
def forget(body: ForgetRequest, engine: Engine, _: Admin):
    try:
        result = engine.forget(body.staff_id)
    except Exception as e:  # the store failed part-way: what was deleted stays deleted, the rest is still there
        log.exception("forget failed")
        raise HTTPException(503, f"the event store cannot take the erasure now ({type(e).__name__}): send it again",
                            headers={"Retry-After": "1"}) from None
    return ForgetResponse(rankings=result.rankings, events=result.events, staff=result.staff)


@router.get("/healthz", response_model=Health, summary="the process is alive")
async def healthz():
    return Health(status="alive")


@router.get("/readyz", response_model=ReadyResponse,
            responses={503: {"model": ReadyResponse, "description": "the event store cannot take writes"}},
            summary="ready to serve: store writable; status 'degraded' when an arm has no model")
def readyz(engine: Engine):
    r = engine.readiness.report()
    if not r["ready"]:
        r["status"] = "unavailable"
    return JSONResponse(ReadyResponse(**r).model_dump(), status_code=200 if r["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"example": 'recommender_rankings_total{arm="A",'
                                                                   'explored="false",model_version="v1"} 1234.0\n'}},
                             "description": "the Prometheus text format"}})
def prometheus_metrics(engine: Engine, metrics: Metrics):
    metrics.set_model_versions(engine.models.arms)
    metrics.observe_online(engine.online)
    metrics.observe_goals(engine.goal_progress())
    data, ctype = metrics.render()
    return Response(data, media_type=ctype)
