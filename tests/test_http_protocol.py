"""The server's HTTP protocol turns Nagle's algorithm off on every TCP connection."""
import asyncio
import socket
import time

from uvicorn.config import Config
from uvicorn.server import ServerState

from service.http_protocol import NoDelayHTTPProtocol


def test_accepted_connection_gets_tcp_nodelay():
    # whatever protocol number the listening socket was created with (uvicorn binds it
    # itself with several workers), the accepted connection may start with Nagle's
    # algorithm on; the protocol must turn it off
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0

        class Transport(asyncio.Transport):
            def get_extra_info(self, name, default=None):
                return {"socket": conn, "peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

        config = Config(app=lambda scope, receive, send: None)
        config.load()
        loop = asyncio.new_event_loop()
        try:
            protocol = NoDelayHTTPProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
            protocol.connection_made(Transport())
        finally:
            loop.close()
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        conn.close()
        client.close()
        listener.close()


def test_admission_sheds_by_the_wait_ahead_only_on_a_saturated_worker():
    import time

    from service.admission import Admission

    a = Admission(max_in_flight=2, max_queue_ms=10, window=0.05)
    a.seconds_per_request = 0.001
    a.waiting = 11
    assert not a.overloaded()  # a burst on a worker that is not busy: absorbed, not shed
    assert a.refusal(time.monotonic() - 0.05) is None
    a.waiting = 101
    assert a.overloaded()  # unless it is ten times the bound: an overload not yet seen
    assert "waited" in a.refusal(time.monotonic() - 0.15)
    a.in_flight = 1
    time.sleep(0.06)
    a.finished(0.055)  # busy for nearly all of the window: saturated
    assert a.saturated
    a.seconds_per_request = 0.001
    a.waiting = 10
    assert not a.overloaded()  # 10 ms ahead: at the bound
    a.waiting = 11
    assert a.overloaded()
    assert "waited" in a.refusal(time.monotonic() - 0.05)
    assert a.refusal(time.monotonic()) is None
    a.in_flight = 2
    assert "holds 2 requests" in a.refusal(None)
    a.in_flight = 1
    time.sleep(0.06)
    a.finished(0.036)  # busy 60% of the window: still saturated (it stops below 50%)
    assert a.saturated
    a.in_flight = 1
    time.sleep(0.06)
    a.finished(0.001)  # idle again
    assert not a.saturated
    a.waiting = 11
    assert a.overloaded()  # but the strict bound holds a while after saturation: a lull of overloaded clients
    a._strict_until = time.monotonic()
    assert not a.overloaded()


def test_an_early_refusal_keeps_the_connection_only_for_one_whole_request():
    from service.admission import is_one_whole_request as _is_one_whole_request
    from service.admission import path_of as _path_of

    one = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
    assert _is_one_whole_request(one) and _path_of(one) == "/v1/rank"
    assert not _is_one_whole_request(one + one)  # pipelined: the parser must see the second
    assert not _is_one_whole_request(one[:-1])  # the body is still coming
    assert not _is_one_whole_request(b"POST /v1/rank HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
    assert _path_of(b"GET /readyz?x=1 HTTP/1.1\r\n\r\n") == "/readyz"


def _raw_answer(raw: bytes) -> tuple[int, dict, bytes]:
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def test_both_checks_answer_the_same_503(tmp_path):
    """The read-time check (raw bytes, in the protocol) and the app-start check (in the
    middleware) shed with one answer: same status, JSON body, Retry-After."""
    import json

    from service.admission import OVERLOADED_CLOSE, OVERLOADED_KEEP_ALIVE, Admission
    from service_support import CLIENT_KEY, make_client

    a = Admission(max_in_flight=2, max_queue_ms=10)
    a.waiting, a.saturated = 100, True
    shed = []
    a.on_shed = lambda path, method: shed.append((path, method))
    one = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    assert a.refuse_at_read(one, time.monotonic()) is OVERLOADED_KEEP_ALIVE
    assert a.refuse_at_read(one[:-1], time.monotonic()) is OVERLOADED_CLOSE  # the body is still coming
    assert a.refuse_at_read(b"GET /healthz HTTP/1.1\r\n\r\n", time.monotonic()) is None  # never shed
    assert shed == [("/v1/rank", "POST")] * 2
    raw = [_raw_answer(x) for x in (OVERLOADED_KEEP_ALIVE, OVERLOADED_CLOSE)]
    assert raw[0][1]["connection"] == "keep-alive" and raw[1][1]["connection"] == "close"

    client, engine = make_client(tmp_path)
    with client:
        middleware = client.app.middleware_stack  # down to the middleware: make its admission refuse
        while not hasattr(middleware, "admission"):
            middleware = middleware.app
        middleware.admission.in_flight = middleware.admission.max_in_flight
        r = client.post("/v1/rank", json={"staff_id": "s-1"}, headers={"X-API-Key": CLIENT_KEY})
        ok = client.get("/healthz")
        metrics = client.get("/metrics").text
    engine.close()
    assert ok.status_code == 200
    for status, headers, body in raw:
        assert r.status_code == status == 503
        assert r.content == body and json.loads(body)["detail"].startswith("overloaded")
        assert r.headers["retry-after"] == headers["retry-after"] == "1"
        assert r.headers["content-type"] == headers["content-type"] == "application/json"
        assert r.headers["content-length"] == headers["content-length"]
    assert 'recommender_shed_requests_total{endpoint="/v1/rank"} 1.0' in metrics
    assert 'recommender_http_requests_total{endpoint="/v1/rank",method="POST",status="503"} 1.0' in metrics
    assert 'recommender_http_request_duration_seconds_count{endpoint="/v1/rank"}' not in metrics  # admitted only
