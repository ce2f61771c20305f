"""The ASGI middleware in front of every route: admission control, body limits, metrics.

Admission control: a worker holds at most ``max_in_flight`` requests at once; past that
it answers 503 with ``Retry-After`` at once instead of queueing without bound (at three
times its capacity the queue grew to tens of seconds and hundreds of MB). A ranking is a
millisecond of CPU, so a short queue is all a worker can serve within its latency goal;
the banner server retries after a second, or shows its default order. Health, readiness
and metrics are never shed.
"""
from __future__ import annotations

import time

from fastapi.responses import JSONResponse

from .metrics import ServiceMetrics, endpoint_label

ADMIN_BODY_LIMIT = 64 * 1024 * 1024  # bulk staff and catalog uploads
ADMIN_PATHS = ("/v1/banners", "/v1/staff")
NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_SECONDS = 1


async def _answer(send, status: int, body: dict, headers: list | None = None) -> None:
    resp = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": [*resp.raw_headers, *(headers or [])]})
    await send({"type": "http.response.body", "body": resp.body})


class LimitsAndMetrics:
    """Pure ASGI middleware: sheds load past ``max_in_flight`` requests (503), refuses
    bodies over the limit with 413 (by Content-Length, or while reading a chunked body),
    and records request counts and latency per endpoint."""

    def __init__(self, app, max_body: int, max_in_flight: int, metrics: ServiceMetrics):
        self.app = app
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self.in_flight = 0  # read and changed on the event loop only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = endpoint_label(path)
        t = time.perf_counter()
        if self.in_flight >= self.max_in_flight and path not in NEVER_SHED:
            self.metrics.observe_shed(endpoint)
            await _answer(send, 503, {"detail": f"overloaded: this worker holds {self.in_flight} requests; "
                                                f"retry after {RETRY_AFTER_SECONDS} s"},
                          [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
            self.metrics.observe_request(endpoint, scope["method"], 503, time.perf_counter() - t)
            return
        self.in_flight += 1
        try:
            status = await self._limited(scope, receive, send, path)
        finally:
            self.in_flight -= 1
        self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - t)

    async def _limited(self, scope, receive, send, path: str) -> int:
        """Runs the app under the body limit; returns the answer's status."""
        limit = ADMIN_BODY_LIMIT if path in ADMIN_PATHS else self.max_body
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and int(length) > limit:
            await self._too_large(send_wrapper, limit)
            return status["code"]
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
        return status["code"]

    @staticmethod
    async def _too_large(send, limit: int):
        await _answer(send, 413, {"detail": f"request body too large: the limit is {limit} bytes ({limit // 1024} KiB)"})
