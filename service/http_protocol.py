"""uvicorn's HTTP protocol with TCP_NODELAY set on every connection, and admission
control's first check (service.admission): a new request on a worker that is behind is
answered 503 as soon as it is read; the others are stamped with the time they were read
(``RECEIVED`` in the ASGI scope), so that the app sees how long they waited.

With ``--workers`` > 1 uvicorn binds the listening socket itself with protocol number 0,
and asyncio only sets TCP_NODELAY on accepted sockets whose protocol is IPPROTO_TCP. A
response written in two parts (head, body) then waits for the client's delayed ACK:
about 40 ms per request (measured here with two workers: p50 44 ms, against 1.9 ms with
one). ``recommender serve`` runs uvicorn with this protocol in every mode.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .admission import ADMISSION_STATE, NEVER_SHED, RETRY_AFTER_SECONDS
from .metrics import endpoint_label


RECEIVED = "recommender.received"  # time.monotonic() when the request's bytes were read


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        received = time.monotonic()
        admission = self.app_state.get(ADMISSION_STATE)
        starts_request = self.cycle is None or self.cycle.response_complete
        if admission is not None and starts_request and admission.overloaded():
            path = _path_of(data)
            if path not in NEVER_SHED:
                admission.shed(endpoint_label(path))
                if _is_one_whole_request(data):  # the usual case: the connection stays open for the next one
                    self.transport.write(OVERLOADED_KEEP_ALIVE)
                else:
                    self.transport.write(OVERLOADED_CLOSE)
                    self.transport.close()
                admission.worked(time.monotonic() - received)
                return
        super().data_received(data)  # parses the request and creates the task that runs the app
        scope = getattr(self, "scope", None)
        if scope is not None and RECEIVED not in scope:
            scope[RECEIVED] = received
            if admission is not None:
                admission.waiting += 1


def _path_of(data: bytes) -> str:
    """The path of the request line at the start of ``data`` ("" if there is none)."""
    parts = data.split(b" ", 2)
    return parts[1].split(b"?", 1)[0].decode("latin-1") if len(parts) > 2 else ""


def _is_one_whole_request(data: bytes) -> bool:
    """``data`` holds exactly one request, head and body (so it can be answered and
    dropped without a parser, and the connection kept)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[:end].lower()
    if b"transfer-encoding" in head:
        return False
    at = head.find(b"\r\ncontent-length:")
    length = int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
    return len(data) == end + 4 + length


def _overloaded(connection: str) -> bytes:
    body = json.dumps({"detail": f"overloaded: this worker is behind; retry after {RETRY_AFTER_SECONDS} s"}).encode()
    return (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"retry-after: {RETRY_AFTER_SECONDS}\r\nconnection: {connection}\r\n\r\n").encode() + body


OVERLOADED_KEEP_ALIVE = _overloaded("keep-alive")
OVERLOADED_CLOSE = _overloaded("close")
