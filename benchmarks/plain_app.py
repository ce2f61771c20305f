"""A plain FastAPI app: the yardstick the ranking service's throughput is compared with.

No middleware, no auth, no engine: POST /v1/rank parses a body of the same shape as the
service's RankRequest (service/schemas.py) with pydantic and answers a small JSON list.
bench_plain_fastapi.py starts it next to the real service.

    .venv/bin/python benchmarks/plain_app.py --port 8001 --workers 2

Run this way, each worker is a uvicorn server on uvloop and httptools with a listening
socket of its own (SO_REUSEPORT), as ``recommender serve`` runs its workers
(service/workers.py), so that the kernel spreads connections over the workers in both
servers alike. With one worker it is ``uvicorn plain_app:app --loop uvloop --http httptools``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import signal
import socket
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict


class PlainRankRequest(BaseModel):
    """RankRequest's fields and types, without its custom validators."""

    model_config = ConfigDict(extra="forbid")

    staff_id: str
    profile: dict[str, str] | None = None
    candidates: list[str] | None = None
    slots: int | None = None
    context: dict[str, Any] | None = None
    explain: bool = False


app = FastAPI()


@app.post("/v1/rank")
async def rank(body: PlainRankRequest) -> list[str]:
    return (body.candidates or [])[: body.slots or 3]


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _worker(host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config("plain_app:app", host=host, port=port, loop="uvloop", http="httptools",
                            log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    if args.workers == 1:
        return _worker(args.host, args.port)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(args.host, args.port)) for _ in range(args.workers)]
    for proc in procs:
        proc.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # after the start: children inherit it
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(10)


if __name__ == "__main__":
    main()
