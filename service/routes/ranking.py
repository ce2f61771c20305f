"""POST /v1/rank: the route, and the functions that answer it.

The route is a LeanRoute (service.lean_route): a FastAPI route with its request and answer
models in the OpenAPI document, answered without FastAPI's general dependency solving,
which costs more per request than the ranking's own work."""
from __future__ import annotations

import logging
import time

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from recommender.explain import ExplainError

from ..deps import Client
from ..engine import RankingEngine, RankOutcome, staff_ref
from ..lean_route import LeanRoute
from ..metrics import ServiceMetrics
from ..schemas import CLIENT_ERRORS, EXPLAIN_ERRORS, RankRequest, RankResponse

log = logging.getLogger("service.rank")


class JSONBody(Response):
    """A 200 answer of JSON bytes already serialised, with its two headers built directly
    (Starlette's Response works them out from its arguments, a few microseconds a request)."""

    media_type = "application/json"

    def __init__(self, body: bytes):
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]


def to_response(outcome: RankOutcome) -> Response:
    """The RankResponse body, serialised directly (orjson): this is the hot path, and the
    engine's output already has the response's types, so pydantic's second pass is skipped."""
    r = outcome.result
    body = {"request_id": outcome.request_id, "model_version": r.model_version, "arm": outcome.arm,
            "explored": r.explored,
            "ranking": [{"banner_id": b, "position": p, "score": s, "propensity": q}
                        for p, (b, s, q) in enumerate(zip(r.banner_ids, r.scores, r.propensities), 1)]}
    if outcome.explanations is not None:
        for item, e in zip(body["ranking"], outcome.explanations):
            item["explanation"] = e.to_dict()
        body["left_out"] = [{"banner_id": b, "reason": reason, "text": text}
                            for b, (reason, text) in (outcome.left_out or {}).items()]
    return JSONBody(orjson.dumps(body))


# async: the work is a fraction of a millisecond of CPU, cheaper inline than in a thread.
# The engine and the metrics are read from the app's state: a dependency per lookup would
# cost more than the lookups themselves.
async def rank(body: RankRequest, request: Request, key: Client) -> Response:
    return answer(body, request.app.state.engine, request.app.state.metrics, key)


def install(app: FastAPI) -> None:
    """Add POST /v1/rank to the app's own routes, ahead of the included routers'. Not as
    a router of its own: FastAPI matches an included router's routes twice per request
    (once to choose the router, once within it), which costs a rank request about 20 us."""
    app.router.add_api_route("/v1/rank", rank, methods=["POST"], response_model=RankResponse,
                             responses={**CLIENT_ERRORS, **EXPLAIN_ERRORS}, tags=["ranking"],
                             summary="rank the candidate banners for one staff member", route_class_override=LeanRoute)


def answer(body: RankRequest, engine: RankingEngine, metrics: ServiceMetrics, key: str) -> Response:
    """The answer to a rank request whose key is ``key`` ("client" or "admin")."""
    if body.explain:  # inline: the model's caches are the arm's, used under its lock (see docs)
        return explain(body, engine, key)
    return ranked(body, engine, metrics)


def ranked(body: RankRequest, engine: RankingEngine, metrics: ServiceMetrics) -> Response:
    """A ranking (not explained): served, counted, logged at debug level, answered."""
    t = time.perf_counter()
    outcome = engine.rank(body.staff_id, body.profile, body.candidates, body.slots)
    metrics.observe_rank(outcome, time.perf_counter() - t)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("rank %s staff=%s arm=%s model=%s n=%d", outcome.request_id,
                  staff_ref(engine.config.log_salt, body.staff_id), outcome.arm, outcome.result.model_version,
                  len(outcome.result))
    return to_response(outcome)


def explain(body: RankRequest, engine: RankingEngine, key: str) -> Response:
    """``"explain": true``: an admin's question, answered with the ranking explained; not
    logged, not counted in the ranking metrics (nobody is shown it)."""
    if key != "admin":
        raise HTTPException(403, "the field 'explain' needs an admin API key")
    try:
        outcome = engine.explain(body.staff_id, body.profile, body.candidates, body.slots)
    except ExplainError as e:
        raise HTTPException(409, str(e)) from None
    return to_response(outcome)
