"""POST /v1/rank's fast path: the requests that succeed, answered without FastAPI's
routing, request objects and dependency solving.

Those cost a rank request about as much CPU as a whole plain FastAPI endpoint does
(benchmarks/bench_plain_fastapi.py). The fast path takes only a request it can answer
exactly as the route would (service.routes.ranking): a JSON object body
(``Content-Type: application/json``) that RankRequest accepts, without ``explain``, with a
known API key. Anything else (another content type, a body that is not JSON or not an
object, a missing or unknown key, a body that breaks the contract, ``explain``) goes on to
the app with its body as it came, and FastAPI answers it as before: the same error
answers, in the same order of precedence. The ranking itself is the route's
(``routes.ranking.ranked``).

It runs inside the service's middleware (service.middleware), so admission control, the
body limit and the request metrics see it as they see the route.
"""
from __future__ import annotations

from typing import Awaitable, Callable

import orjson
from pydantic import ValidationError

from .deps import key_kind
from .engine import RankingEngine
from .metrics import ServiceMetrics
from .routes.ranking import ranked
from .schemas import RankRequest

PATH = "/v1/rank"
Receive = Callable[[], Awaitable[dict]]


def _replay(messages: list[dict], receive: Receive) -> Receive:
    """A receive that gives the messages already read again, then reads on."""
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()

    return replay


class FastRank:
    def __init__(self, engine: RankingEngine, metrics: ServiceMetrics):
        self.engine = engine
        self.metrics = metrics

    async def __call__(self, scope, receive: Receive, send) -> Receive | None:
        """Answer the request and return None; or, when the app must answer it, return the
        receive to hand the app (the body read so far, then the rest)."""
        content_type = key = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"x-api-key" and key is None:
                key = value
        messages = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return _replay(messages, receive)
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        replay = _replay(messages, receive)
        if content_type != b"application/json" or key is None or scope.get("root_path"):
            return replay
        if key_kind(key.decode("latin-1"), self.engine.config) is None:
            return replay
        try:  # where orjson and the json module FastAPI uses differ (NaN, 1e400, UTF-16), orjson refuses
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return replay
        if type(data) is not dict:
            return replay
        try:
            request = RankRequest.model_validate(data)
        except ValidationError:
            return replay
        if request.explain:
            return replay
        response = ranked(request, self.engine, self.metrics)
        await response(scope, replay, send)
        return None
