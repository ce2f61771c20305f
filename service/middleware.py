"""The ASGI middleware in front of every route: admission control's second look at each
request (``Admission.admit``, service.admission), body limits, metrics."""
from __future__ import annotations

import time

from fastapi.responses import JSONResponse

from .admission import OVERLOADED_BODY, OVERLOADED_HEADERS, RECEIVED, Admission
from .metrics import ServiceMetrics, endpoint_label

ADMIN_BODY_LIMIT = 64 * 1024 * 1024  # bulk staff and catalog uploads
ADMIN_PATHS = ("/v1/banners", "/v1/staff")


async def _answer(send, status: int, body: dict, headers: list | None = None) -> None:
    resp = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": [*resp.raw_headers, *(headers or [])]})
    await send({"type": "http.response.body", "body": resp.body})


class LimitsAndMetrics:
    """Pure ASGI middleware: sheds load (admission control's 503) when ``admission`` does
    not admit a request, refuses
    bodies over the limit with 413 (by Content-Length, or while reading a chunked body),
    and records request counts and latency per endpoint."""

    def __init__(self, app, max_body: int, admission: Admission, metrics: ServiceMetrics):
        self.app = app
        self.max_body = max_body
        self.admission = admission
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = endpoint_label(path)
        t = time.monotonic()
        admission = self.admission
        received = scope.get(RECEIVED)
        since = received if received is not None else t  # the latency counts the wait for the worker
        if not admission.admit(path, scope["method"], received):
            await send({"type": "http.response.start", "status": 503, "headers": OVERLOADED_HEADERS})
            await send({"type": "http.response.body", "body": OVERLOADED_BODY})
            admission.worked(time.monotonic() - t)
            return
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
