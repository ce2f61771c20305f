"""The FastAPI application: routers over the engine, limits, metrics, offline API docs.

``create_app(config)`` builds the app (and its engine, unless one is given); the engine
loads its state and starts its threads in the app's lifespan. ``app_from_env()`` is the
factory uvicorn workers call (``RECOMMENDER_CONFIG`` names the config file), used by
``recommender serve``.
"""
from __future__ import annotations

import gc
import logging
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recommender.store import open_store

from .admission import ADMISSION_STATE, Admission
from .apidocs import add_offline_docs
from .config import ServiceConfig, load_config
from .deps import Client
from .engine import RankingEngine
from .metrics import ServiceMetrics
from .middleware import LimitsAndMetrics
from .routes import admin, catalog, events, personalizer, ranking
from .schemas import RankRequest

log = logging.getLogger("service")
GC_YOUNG_THRESHOLD = 10_000  # allocations between scans of the young generation (Python: 700)


async def _validation_error(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
    # no 'input' echoed back: it may hold a whole 500-item list
    detail = [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return JSONResponse({"detail": detail, "message": message}, status_code=422)


def create_app(config: ServiceConfig | None = None, engine: RankingEngine | None = None,
               noop_endpoint: bool = False) -> FastAPI:
    owns_engine = engine is None
    if engine is None:
        if config is None:
            raise ValueError("create_app needs a config or an engine")
        config.check_keys()
        engine = RankingEngine(config, open_store(config.db))
    config = engine.config
    config.check_keys()
    metrics = ServiceMetrics()
    admission = Admission(config.max_in_flight, config.max_queue_ms)
    admission.on_shed = metrics.observe_shed
    # what the engine counts in its background threads reaches the metrics
    engine.ranking_log.on_dropped = metrics.ranking_log_dropped.inc
    def on_sync() -> None:
        metrics.observe_online(engine.online)
        metrics.observe_arms(engine.models.shares, engine.ramp.last)
        metrics.observe_goals(engine.goal_progress())

    engine.follower.on_sync = on_sync

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        if owns_engine:
            # the history loaded at start is millions of long-lived objects: keep them out of
            # the collector's full passes, which would otherwise pause requests for ~100 ms
            gc.collect()
            gc.freeze()
            # a rank request leaves a few dozen container objects alive for a while (its log
            # record, its open ranking): at the default threshold (700) the young generation
            # is scanned every few dozen requests, about 7 us a request in all; at 10,000,
            # about 2 us, in pauses of about 2 ms (benchmarks/bench_rank_asgi.py)
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        metrics.set_model_versions(engine.models.arms)
        yield {ADMISSION_STATE: admission}  # the lifespan state: where the HTTP protocol finds it
        if owns_engine:
            engine.close()

    # FastAPI's own OpenTelemetry instrumentation is off: the service exports Prometheus
    # metrics (/metrics), and merely checking for a configured provider costs ~10 us a request
    app = FastAPI(title="Banner ranking service", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Ranks the banners of the messenger's banner space per staff member and logs "
                              "rankings and clicks for training and offline evaluation.")
    app.state.engine = engine
    app.state.metrics = metrics
    app.add_exception_handler(RequestValidationError, _validation_error)
    if noop_endpoint:
        # the benchmark's baseline: same body parsing and auth, no ranking; first, so that
        # it is matched as soon as /v1/rank is (routes are tried in order)
        @app.post("/v1/noop", tags=["benchmark"], include_in_schema=False)
        async def noop(body: RankRequest, _: Client):
            return {"ok": True}

    ranking.install(app)
    app.include_router(events.router)
    app.include_router(catalog.router)
    app.include_router(admin.router)
    personalizer.install(app)
    add_offline_docs(app)

    app.add_middleware(LimitsAndMetrics, max_body=config.max_body_bytes, admission=admission, metrics=metrics)
    return app


SERVICE_LOGGERS = ("service", "recommender", "training", "features")


def configure_logging(level: str) -> None:
    """The project's own loggers at ``level`` (uvicorn's --log-level configures only
    uvicorn's), written to stderr the way uvicorn writes its own."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    numeric = logging.DEBUG if level.lower() == "trace" else logging.getLevelName(level.upper())
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False


def app_from_env() -> FastAPI:
    """uvicorn factory: RECOMMENDER_CONFIG names the config, RECOMMENDER_LOG_LEVEL the level
    of the service's logs; RECOMMENDER_NOOP_ENDPOINT=1 adds the benchmark's no-op endpoint."""
    path = os.environ.get("RECOMMENDER_CONFIG")
    if not path:
        raise RuntimeError("RECOMMENDER_CONFIG is not set (recommender serve sets it)")
    configure_logging(os.environ.get("RECOMMENDER_LOG_LEVEL", "info"))
    config = load_config(path, env_keys=True)
    return create_app(config, noop_endpoint=os.environ.get("RECOMMENDER_NOOP_ENDPOINT") == "1")
