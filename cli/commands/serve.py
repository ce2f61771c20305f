"""recommender serve --config service.toml: run the ranking service with uvicorn."""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile

# one thread per library per worker: BLAS/OpenMP pools in every worker fight over the
# cores (HistGradientBoosting with 2 workers fell under 10 requests/s with the defaults).
# This module is imported by the CLI before numpy is used for serving; the env vars are
# also inherited by uvicorn's worker processes.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def limit_threads() -> None:
    for v in THREAD_VARS:
        os.environ.setdefault(v, "1")


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the ranking service (FastAPI on uvicorn)")
    p.add_argument("--config", required=True, help="service config (TOML)")
    p.add_argument("--host", help="override [service] host")
    p.add_argument("--port", type=int, help="override [service] port")
    p.add_argument("--workers", type=int, help="override [service] workers")
    p.add_argument("--noop-endpoint", action="store_true", help="add POST /v1/noop (the benchmark's baseline)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    limit_threads()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # numpy may already be loaded by the CLI: limit its pools now too
    except ImportError:
        pass
    import uvicorn

    from service.config import LOG_SALT_ENV

    from ._options import service_config

    cfg = service_config(args.config, require_keys=True)
    host = args.host or cfg.host
    port = args.port if args.port is not None else cfg.port
    workers = args.workers or cfg.workers
    os.environ["RECOMMENDER_CONFIG"] = os.path.abspath(args.config)
    os.environ["RECOMMENDER_LOG_LEVEL"] = args.log_level
    os.environ.setdefault(LOG_SALT_ENV, secrets.token_hex(8))  # one salt for every worker, if the config sets none
    if args.noop_endpoint:
        os.environ["RECOMMENDER_NOOP_ENDPOINT"] = "1"
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recommender-metrics-")
    options = dict(factory=True, http="service.http_protocol:NoDelayHTTPProtocol", log_level=args.log_level,
                   access_log=False)
    from service.workers import reuse_port_supported, serve

    try:
        if workers > 1 and reuse_port_supported():
            # a listening socket per worker: uvicorn's shared one hands a burst of
            # connections to a single worker (service/workers.py)
            try:
                return serve("service.app:app_from_env", host, port, workers, **options)
            except OSError as e:  # the port is taken, or the host is not an address of this machine
                print(f"error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
                return 1
        uvicorn.run("service.app:app_from_env", host=host, port=port, workers=workers, **options)
        return 0
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
