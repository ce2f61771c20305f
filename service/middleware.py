"""The ASGI middleware in front of every route: admission control's second check
(service.admission), body limits, metrics, and POST /v1/rank's fast path
(service.fast_rank)."""
from __future__ import annotations

import time

from fastapi.responses import JSONResponse

from .admission import NEVER_SHED, RETRY_AFTER_SECONDS, Admission
from .fast_rank import PATH as FAST_RANK_PATH
from .fast_rank import FastRank
from .http_protocol import RECEIVED
from .metrics import ServiceMetrics, endpoint_label

ADMIN_BODY_LIMIT = 64 * 1024 * 1024  # bulk staff and catalog uploads
ADMIN_PATHS = ("/v1/banners", "/v1/staff")


async def _answer(send, status: int, body: dict, headers: list | None = None) -> None:
    resp = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": [*resp.raw_headers, *(headers or [])]})
    await send({"type": "http.response.body", "body": resp.body})


class LimitsAndMetrics:
    """Pure ASGI middleware: sheds load (503) when ``admission`` refuses a request, refuses
    bodies over the limit with 413 (by Content-Length, or while reading a chunked body),
    and records request counts and latency per endpoint."""

    def __init__(self, app, max_body: int, admission: Admission, metrics: ServiceMetrics,
                 fast_rank: FastRank | None = None):
        self.app = app
        self.max_body = max_body
        self.admission = admission
        self.metrics = metrics
        self.fast_rank = fast_rank

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = endpoint_label(path)
        t = time.monotonic()
        admission = self.admission
        received = scope.get(RECEIVED)
        if received is not None:  # the latency metric counts the time the request waited for the worker
            admission.waiting -= 1
        since = received if received is not None else t
        refusal = admission.refusal(received)
        if refusal and path not in NEVER_SHED:
            admission.shed(endpoint)
            await _answer(send, 503, {"detail": f"overloaded: {refusal}; retry after {RETRY_AFTER_SECONDS} s"},
                          [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
            self.metrics.observe_request(endpoint, scope["method"], 503, time.monotonic() - since)
            admission.worked(time.monotonic() - t)
            return
        admission.in_flight += 1
        try:
            status = await self._limited(scope, receive, send, path)
        finally:
            admission.finished(time.monotonic() - t)
        self.metrics.observe_request(endpoint, scope["method"], status, time.monotonic() - since)

    async def _limited(self, scope, receive, send, path: str) -> int:
        """Runs the app under the body limit; returns the answer's status."""
        limit = ADMIN_BODY_LIMIT if path in ADMIN_PATHS else self.max_body
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
        if length is not None:
            # the server hands the app at most Content-Length bytes of body: nothing to count
            if int(length) > limit:
                await self._too_large(send_wrapper, limit)
                return status
            if self.fast_rank is not None and path == FAST_RANK_PATH and scope["method"] == "POST":
                receive = await self.fast_rank(scope, receive, send_wrapper)
                if receive is None:
                    return status
            await self.app(scope, receive, send_wrapper)
            return status
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
        return status

    @staticmethod
    async def _too_large(send, limit: int):
        await _answer(send, 413, {"detail": f"request body too large: the limit is {limit} bytes ({limit // 1024} KiB)"})
