"""uvicorn's HTTP protocol with TCP_NODELAY set on every connection, where admission
control (service.admission) takes its first look at each request: the bytes that start
a request go to ``Admission.refuse_at_read``, which may answer 503 at once; the requests
read on are stamped with the time they were read (``RECEIVED`` in the ASGI scope), so
that the app sees how long they waited.

With ``--workers`` > 1 uvicorn binds the listening socket itself with protocol number 0,
and asyncio only sets TCP_NODELAY on accepted sockets whose protocol is IPPROTO_TCP. A
response written in two parts (head, body) then waits for the client's delayed ACK:
about 40 ms per request (measured here with two workers: p50 44 ms, against 1.9 ms with
one). ``recommender serve`` runs uvicorn with this protocol in every mode.
"""
from __future__ import annotations

import asyncio
import socket
import time

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .admission import ADMISSION_STATE, OVERLOADED_KEEP_ALIVE, RECEIVED

__all__ = ["NoDelayHTTPProtocol", "RECEIVED"]


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        received = time.monotonic()
        admission = self.app_state.get(ADMISSION_STATE)
        if admission is not None and (self.cycle is None or self.cycle.response_complete):  # a new request
            answer = admission.refuse_at_read(data, received)
            if answer is not None:
                self.transport.write(answer)
                if answer is not OVERLOADED_KEEP_ALIVE:
                    self.transport.close()
                return
        super().data_received(data)  # parses the request and creates the task that runs the app
        scope = getattr(self, "scope", None)
        if scope is not None and RECEIVED not in scope:
            scope[RECEIVED] = received
            if admission is not None:
                admission.waiting += 1
