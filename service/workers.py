"""Several uvicorn workers, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's own multi-worker mode shares one listening socket between the workers, and the
worker whose event loop wakes first accepts every connection waiting (asyncio accepts up
to the backlog per wake-up). A client that opens its keep-alive pool in one burst, as a
banner server does, then lands entirely on one worker (seen with ``ss -tnp``: 32 of 32
connections on one of two workers). With a socket per worker bound with SO_REUSEPORT,
the kernel spreads connections over the workers by their addresses.

The parent holds the port with a bound socket that does not listen (so port 0 resolves to
one port for all, and no other program takes it), starts the workers, restarts one that
dies, and on SIGINT/SIGTERM stops them all (each drains its requests and flushes its
ranking log, as a single uvicorn server does). A worker that dies after it started
serving is replaced; one that dies before (the app does not load) stops the service.
When the parent dies, even by SIGKILL, the workers stop too (``exit_with_parent``).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time

log = logging.getLogger("service.workers")
BACKLOG = 2048
STOP_TIMEOUT = 30.0


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def exit_with_parent(parent: int) -> None:
    """Stop this worker (SIGTERM: uvicorn's graceful shutdown, which flushes the ranking
    log) when the parent dies, even by SIGKILL: otherwise the workers go on serving with
    no supervisor, and hold the port against the next start. Linux tells the child at
    once (PR_SET_PDEATHSIG); elsewhere, and in case the parent died before that was set,
    a thread watches the parent's pid."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        log.error("the supervising process %d is gone; this worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker(app: str, host: str, port: int, uvicorn_options: dict, ready, parent: int) -> None:
    import uvicorn

    exit_with_parent(parent)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                ready.set()  # the parent restarts only workers that got this far

    sock = _socket(host, port)
    sock.listen(BACKLOG)
    config = uvicorn.Config(app, host=host, port=port, **uvicorn_options)
    Server(config).run(sockets=[sock])


def serve(app: str, host: str, port: int, workers: int, **uvicorn_options) -> int:
    """Run ``workers`` uvicorn servers of the app factory ``app`` on one port; returns the
    exit code. Blocks until SIGINT or SIGTERM."""
    # a plain socket first: its bind fails while anything holds the port, a server with
    # SO_REUSEPORT included, so a second service on the same port fails to start
    # instead of sharing the port's connections with this one
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
        port = probe.getsockname()[1]
    finally:
        probe.close()
    holder = _socket(host, port)  # bound, never listening: keeps the port, takes no connections
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    ready: dict[int, object] = {}  # pid -> the worker's "started serving" event

    def start() -> multiprocessing.Process:
        event = ctx.Event()
        p = ctx.Process(target=_worker, args=(app, host, port, uvicorn_options, event, os.getpid()),
                        name="recommender-worker")
        p.start()
        ready[p.pid] = event
        return p

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    log.info("serving on http://%s:%d with %d workers (a listening socket each)", host, port, workers)
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if p.is_alive() or stopping:
                    continue
                if not ready.pop(p.pid).is_set():
                    # it never served (the app did not load, its startup failed):
                    # starting another would fail the same way
                    log.error("worker %d exited with code %s before serving; stopping", p.pid, p.exitcode)
                    stopping, code = True, p.exitcode or 1
                    break
                log.error("worker %d exited with code %s; starting another", p.pid, p.exitcode)
                procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        holder.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    return code
