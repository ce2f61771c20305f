"""The server's HTTP protocol turns Nagle's algorithm off on every TCP connection."""
import asyncio
import socket

from uvicorn.config import Config
from uvicorn.server import ServerState

from service.http_protocol import NoDelayHTTPProtocol


def test_accepted_connection_gets_tcp_nodelay():
    # the listening socket as uvicorn binds it with several workers: protocol number 0,
    # for which asyncio leaves TCP_NODELAY off
    listener = Config("service.app:app_from_env", host="127.0.0.1", port=0).bind_socket()
    assert listener.proto == 0
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    try:
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
