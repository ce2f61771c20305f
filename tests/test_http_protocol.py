"""The server's HTTP protocol turns Nagle's algorithm off on every TCP connection."""
import asyncio
import socket

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
    from service.http_protocol import _is_one_whole_request, _path_of

    one = b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
    assert _is_one_whole_request(one) and _path_of(one) == "/v1/rank"
    assert not _is_one_whole_request(one + one)  # pipelined: the parser must see the second
    assert not _is_one_whole_request(one[:-1])  # the body is still coming
    assert not _is_one_whole_request(b"POST /v1/rank HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
    assert _path_of(b"GET /readyz?x=1 HTTP/1.1\r\n\r\n") == "/readyz"
