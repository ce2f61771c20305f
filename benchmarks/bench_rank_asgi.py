"""CPU per rank request inside the app, without HTTP: the service's ASGI app against the
plain FastAPI app (plain_app.py), side by side in one process.

Each round sends --requests rank requests straight to each app's ASGI callable (plain
first, then the service), one after another on one event loop, and takes the event
loop thread's CPU time for each. The bodies are bench_service.py's: 30 candidates, 20,000
staff ids, 42 profiles. The service is set up as bench_service.py sets it up (the numpy
stand-in model, or ``--model`` and ``--province``) and started through its lifespan, so
its background threads (the ranking log, the store follower) run as in a server.

Without sockets, a request's cost is the app's alone (routing, middleware, validation,
the engine, the answer), and the ratio of the two apps drifts much less on a shared
machine than two servers' requests per second do: the HTTP layer
(bench_plain_fastapi.py) adds about the same 40-60 us to both. ``--profile`` prints the
service's hottest functions (cProfile; it slows every call, so only the shares count).

    .venv/bin/python benchmarks/bench_rank_asgi.py
    .venv/bin/python benchmarks/bench_rank_asgi.py --model models/V --province DIR --rounds 9
    .venv/bin/python benchmarks/bench_rank_asgi.py --profile
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_service import KEY, LEVELS, REGIONS, ROLES, add_setup_arguments, prepare  # noqa: E402


def _scope(body: bytes, key: str, state: dict | None) -> dict:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/rank", "raw_path": b"/v1/rank", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"x-api-key", key.encode()), (b"content-length", str(len(body)).encode())]}
    if state is not None:
        scope["state"] = dict(state)  # as uvicorn hands the lifespan's state to each request
    return scope


async def send_requests(app, bodies: list[bytes], key: str, n: int, state: dict | None, start: int = 0) -> dict:
    """``n`` requests through ``app``; the count of each answer status."""
    statuses: dict[int, int] = {}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    for i in range(start, start + n):
        body = bodies[i % len(bodies)]
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected

        await app(_scope(body, key, state), receive, send)
    return statuses


def rank_bodies(candidates: list[str], n: int = 20_000) -> list[bytes]:
    """bench_service.py's wrk bodies: staff ids cycling over 20,000, 42 profiles."""
    return [json.dumps({"staff_id": f"s-{i % 20000:06d}",
                        "profile": {"role": ROLES[i % 7], "school_level": LEVELS[i % 6], "region": REGIONS[i % 7]},
                        "candidates": candidates}).encode() for i in range(1, n + 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(p)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--requests", type=int, default=2000, help="requests per app per round")
    p.add_argument("--profile", action="store_true", help="profile the service's requests instead (cProfile)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rank-asgi-"))
    config, candidates, info = prepare(tmp, args)
    os.chdir(tmp)  # the config's relative paths
    import plain_app
    from service.app import create_app
    from service.config import load_config

    app = create_app(load_config(config))
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    state = loop.run_until_complete(lifespan.__aenter__()) or {}
    bodies = rank_bodies(candidates)
    try:
        for target, key, st in ((plain_app.app, "", None), (app, KEY, state)):  # warm-up
            loop.run_until_complete(send_requests(target, bodies, key, 500, st))
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            loop.run_until_complete(send_requests(app, bodies, KEY, args.requests * args.rounds, state))
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
            return
        plain_us, service_us, ratios = [], [], []
        for r in range(args.rounds):
            t0 = time.thread_time()
            loop.run_until_complete(send_requests(plain_app.app, bodies, "", args.requests, None))
            t1 = time.thread_time()
            statuses = loop.run_until_complete(send_requests(app, bodies, KEY, args.requests, state,
                                                             start=r * args.requests))
            t2 = time.thread_time()
            if set(statuses) != {200}:
                raise SystemExit(f"the service answered {statuses}")
            plain_us.append((t1 - t0) / args.requests * 1e6)
            service_us.append((t2 - t1) / args.requests * 1e6)
            ratios.append((t1 - t0) / (t2 - t1))
            print(f"round {r + 1}: plain {plain_us[-1]:.0f} us, service {service_us[-1]:.0f} us of CPU per request; "
                  f"plain / service {100 * ratios[-1]:.1f}%")
        print(f"\nmodel {info['model']}, {len(candidates)} candidates, medians of {args.rounds} rounds of "
              f"{args.requests} requests: plain {statistics.median(plain_us):.0f} us, service "
              f"{statistics.median(service_us):.0f} us of CPU per request; plain / service "
              f"{100 * statistics.median(ratios):.1f}% ({100 * min(ratios):.0f}-{100 * max(ratios):.0f}%)")
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))


if __name__ == "__main__":
    main()
