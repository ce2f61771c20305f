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
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from recommender.store import open_store

from .apidocs import add_offline_docs
from .config import ServiceConfig, load_config
from .deps import Client
from .engine import RankingEngine
from .metrics import ServiceMetrics, endpoint_label
from .routes import admin, catalog, events, ranking
from .schemas import RankRequest

log = logging.getLogger("service")
ADMIN_BODY_LIMIT = 64 * 1024 * 1024  # bulk staff and catalog uploads
ADMIN_PATHS = ("/v1/banners", "/v1/staff")


class LimitsAndMetrics:
    """Pure ASGI middleware: refuses bodies over the limit with 413 (by Content-Length, or
    while reading a chunked body) and records request counts and latency per endpoint."""

    def __init__(self, app, max_body: int, metrics: ServiceMetrics):
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = endpoint_label(path)
        limit = ADMIN_BODY_LIMIT if path in ADMIN_PATHS else self.max_body
        t = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            if length is not None and int(length) > limit:
                await self._too_large(send_wrapper, limit)
                return
            seen = 0
            refused = False

            async def limited_receive():
                # a body without Content-Length (chunked) is counted as it arrives: past the
                # limit, answer 413 now and tell the app the client is gone
                nonlocal seen, refused
                if refused:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        refused = True
                        await self._too_large(send_wrapper, limit)
                        return {"type": "http.disconnect"}
                return message

            async def guarded_send(message):
                if not refused:
                    await send_wrapper(message)

            try:
                await self.app(scope, limited_receive, guarded_send)
            except Exception:
                if not refused:
                    raise
        finally:
            self.metrics.observe_request(endpoint, scope["method"], status["code"], time.perf_counter() - t)

    @staticmethod
    async def _too_large(send, limit: int):
        resp = JSONResponse({"detail": f"request body too large: the limit is {limit} bytes ({limit // 1024} KiB)"},
                            status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": resp.raw_headers})
        await send({"type": "http.response.body", "body": resp.body})


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

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        if owns_engine:
            # the history loaded at start is millions of long-lived objects: keep them out of
            # the collector's full passes, which would otherwise pause requests for ~100 ms
            gc.collect()
            gc.freeze()
        metrics.set_model_versions(engine.models.arms)
        yield
        if owns_engine:
            engine.close()

    app = FastAPI(title="Banner ranking service", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Ranks the banners of the messenger's banner space per staff member and logs "
                              "rankings and clicks for training and offline evaluation.")
    app.state.engine = engine
    app.state.metrics = metrics
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(ranking.router)
    app.include_router(events.router)
    app.include_router(catalog.router)
    app.include_router(admin.router)
    add_offline_docs(app)
    if noop_endpoint:
        # the benchmark's baseline: same body parsing and auth, no ranking
        @app.post("/v1/noop", tags=["benchmark"], include_in_schema=False)
        async def noop(body: RankRequest, _: Client):
            return {"ok": True}

    app.add_middleware(LimitsAndMetrics, max_body=config.max_body_bytes, metrics=metrics)
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
    config = load_config(path).with_env_keys()
    return create_app(config, noop_endpoint=os.environ.get("RECOMMENDER_NOOP_ENDPOINT") == "1")
