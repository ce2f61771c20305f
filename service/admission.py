"""Admission control: whether a worker takes a request or answers 503 at once. All of it
is here: the decision, both places it is taken, and the one 503 answer.

A worker serves one request at a time on its event loop (a ranking is about a
millisecond of CPU and does not yield), so the requests waiting for it wait in the
loop, not in the app: at three times its capacity, without a bound, they waited tens of
seconds and the process grew by hundreds of MB.

Shedding starts only when the worker is saturated: when it was busy with requests
(serving or refusing them) more than ``saturation`` (80%) of the last tenth of a second, and
it stops when that falls below ``relief`` (50%). Below saturation, a queue is a burst (a pause of the process, a train of
requests) that the worker absorbs within milliseconds, and a 503 would only fail a
request that was about to be served; only a queue of ``burst_factor`` (10) times
``max_queue_ms`` is shed there, which bounds the wait in the moment before a
sudden overload is seen. The strict bound holds for ``hold`` (1 s) after the worker was
last saturated: an overloaded worker's clients pause now and then (and the worker with
them), and the burst that follows a pause is overload, not a hiccup (with no hold, the
p99 of what was admitted at three times capacity rose from under 15 ms to 25-50 ms). On
a saturated worker, two checks, at two places:

- when a request's bytes are read (``Admission.refuse_at_read``, called by the HTTP
  protocol, service.http_protocol), the wait ahead of it is estimated as the requests
  read but not started times the recent time per request; past ``max_queue_ms`` it is
  answered 503 there and then, as raw bytes, without the app. This costs a few tens of
  microseconds, so shedding stays cheap when most requests must be shed (a 503 built by
  the app costs a good part of a ranking, and at three times capacity the shedding alone
  would fill the worker);
- when the app starts on a request (``Admission.admit``, called by the middleware,
  service.middleware), the measured wait is checked against ``max_queue_ms`` again while
  other requests wait behind it (a lone request that the operating system kept waiting
  is served: refusing it would help no one), and the requests in the app (the endpoints
  that wait for the disk run in a thread pool) against ``max_in_flight``.

Both answer the same 503: the body ``OVERLOADED_BODY`` (``{"detail": "overloaded: ..."}``)
with ``Retry-After: 1``. Each request shed is counted (``on_shed``: the metrics' shed
counter and a 503 in the request counter); the latency histogram holds the requests
admitted. Health, readiness and metrics are never shed.
"""
from __future__ import annotations

import json
import time
from typing import Callable

ADMISSION_STATE = "admission"  # the lifespan state key the protocol finds it under
RECEIVED = "recommender.received"  # in the ASGI scope: time.monotonic() when the request's bytes were read
RETRY_AFTER_SECONDS = 1
NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})

OVERLOADED_BODY = json.dumps({"detail": f"overloaded: this worker is behind; retry after {RETRY_AFTER_SECONDS} s"},
                             separators=(",", ":")).encode()
OVERLOADED_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(OVERLOADED_BODY)).encode()),
                      (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]


def _raw_overloaded(connection: bytes) -> bytes:
    """The 503 as the bytes of a whole HTTP/1.1 answer (the read-time check writes it)."""
    head = b"".join(b"%s: %s\r\n" % h for h in [*OVERLOADED_HEADERS, (b"connection", connection)])
    return b"HTTP/1.1 503 Service Unavailable\r\n" + head + b"\r\n" + OVERLOADED_BODY


OVERLOADED_KEEP_ALIVE = _raw_overloaded(b"keep-alive")
OVERLOADED_CLOSE = _raw_overloaded(b"close")


def path_of(data: bytes) -> str:
    """The path of the request line at the start of ``data`` ("" if there is none)."""
    parts = data.split(b" ", 2)
    return parts[1].split(b"?", 1)[0].decode("latin-1") if len(parts) > 2 else ""


def is_one_whole_request(data: bytes) -> bool:
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


class Admission:
    def __init__(self, max_in_flight: int, max_queue_ms: float, saturation: float = 0.8, relief: float = 0.5,
                 window: float = 0.1, burst_factor: float = 10.0, hold: float = 1.0):
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue_ms / 1000.0
        self.burst_factor = burst_factor
        self.saturation = saturation
        self.relief = relief
        self.window = window
        self.hold = hold
        self.in_flight = 0  # requests the app is working on
        self.waiting = 0  # requests read and not started yet
        self.seconds_per_request = 0.001  # moving average of the app's time per request
        self.saturated = False  # the app was busy more than ``saturation`` of the last window
        self._busy = 0.0
        self._window_start = time.monotonic()
        self._strict_until = 0.0  # the strict bound holds until then
        self.on_shed: Callable[[str, str], None] | None = None  # told the path and method of each request shed

    # Only the event loop's thread reads or changes these counters.
    def bound(self) -> float:
        """The longest wait admitted now, in seconds."""
        if self.saturated or time.monotonic() < self._strict_until:
            return self.max_queue
        return self.max_queue * self.burst_factor

    def overloaded(self) -> bool:
        """At read time: would a new request wait longer than the bound?"""
        return self.waiting * self.seconds_per_request > self.bound()

    def refusal(self, received: float | None) -> str | None:
        """At the app's start: why this request is not admitted, or None."""
        if self.in_flight >= self.max_in_flight:
            return f"this worker holds {self.in_flight} requests"
        if received is not None and self.waiting > 0:  # a lone request delayed by a pause is served
            waited = time.monotonic() - received
            if waited > self.bound():
                return f"this request waited {1000 * waited:.0f} ms for the worker"
        return None

    def finished(self, seconds: float) -> None:
        self.in_flight -= 1
        self.seconds_per_request += 0.05 * (seconds - self.seconds_per_request)
        self.worked(seconds)

    def worked(self, seconds: float) -> None:
        """Count time the worker spent on requests: serving them, or refusing them (which
        is load too: a worker that spends half its time refusing is not relieved)."""
        self._busy += seconds
        now = time.monotonic()
        if now - self._window_start >= self.window:
            threshold = self.relief if self.saturated else self.saturation
            self.saturated = self._busy > threshold * (now - self._window_start)
            if self.saturated:
                self._strict_until = now + self.hold
            self._busy, self._window_start = 0.0, now

    def shed(self, path: str, method: str) -> None:
        if self.on_shed is not None:
            self.on_shed(path, method)

    def refuse_at_read(self, data: bytes, received: float) -> bytes | None:
        """The first check, on the bytes that start a request: None to read it on, else the
        503 to write (OVERLOADED_CLOSE when ``data`` is not exactly one whole request: the
        connection must then be closed, as no parser has read the rest)."""
        if not self.overloaded():
            return None
        path = path_of(data)
        if path in NEVER_SHED:
            return None
        self.shed(path, data.split(b" ", 1)[0].decode("latin-1"))
        answer = OVERLOADED_KEEP_ALIVE if is_one_whole_request(data) else OVERLOADED_CLOSE
        self.worked(time.monotonic() - received)
        return answer

    def admit(self, path: str, method: str, received: float | None) -> bool:
        """The second check, when the app starts on a request read at ``received`` (None:
        not stamped by the protocol): True if it is admitted (the caller then calls
        ``finished``), False if it is shed (the caller answers ``OVERLOADED_BODY``)."""
        if received is not None:  # it no longer waits
            self.waiting -= 1
        if path not in NEVER_SHED and self.refusal(received):
            self.shed(path, method)
            return False
        self.in_flight += 1
        return True
