"""``recommender serve`` in a child process on a free loopback port: what the integration
tests and the service benchmarks start.

A free port is only free when it is asked for: until uvicorn binds it, another process
(another test run on a shared machine) may take it. So readiness is asked with a client
key only this server knows (passed in ``RECOMMENDER_CLIENT_KEYS``; a foreign server
answers 401), and a server that could not bind is started again on another port.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

# loopback only: no proxy from the environment
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _status(url: str, headers: dict | None = None) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with _opener.open(urllib.request.Request(url, headers=headers or {}), timeout=1) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """Started and ready when built; ``stop()`` ends it (SIGTERM to its process group,
    SIGKILL after 15 s) and returns what it printed.

    ``cwd``, ``python`` and ``extra_env`` (PYTHONPATH) choose the code that runs (the
    benchmarks run other checkouts and virtualenvs); ``extra_args`` go to ``recommender
    serve``; ``port`` asks for one port (default: a free one). The output goes to a
    temporary file, not a pipe, so a server that logs a lot under load never blocks on a
    full pipe."""

    def __init__(self, config: Path, workers: int = 1, *, extra_env: dict | None = None,
                 extra_args: Sequence[str] = (), cwd: Path | None = None, python: str = sys.executable,
                 ready_timeout: float = 30.0, log_level: str = "warning", port: int | None = None):
        self.key = secrets.token_hex(8)
        env = {**os.environ, **(extra_env or {})}
        env["RECOMMENDER_CLIENT_KEYS"] = ",".join(filter(None, [env.get("RECOMMENDER_CLIENT_KEYS"), self.key]))
        self._args = [python, "-m", "cli.main", "serve", "--config", str(config), "--workers", str(workers),
                      "--log-level", log_level, *extra_args]
        self._output = tempfile.TemporaryFile()
        for _ in range(1 if port else 3):
            if self._start(env, cwd, ready_timeout, port):
                return
        raise RuntimeError(f"port {port} is taken" if port else "no free port could be bound in 3 tries")

    def _start(self, env: dict, cwd: Path | None, ready_timeout: float, port: int | None) -> bool:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._output.seek(0)
        self._output.truncate()
        self.proc = subprocess.Popen([*self._args, "--port", str(self.port)], cwd=cwd, env=env, stdout=self._output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                output = self._read_output()
                if "address already in use" in output.lower():
                    return False
                raise RuntimeError(f"server exited: {output}")
            if _status(f"{self.url}/v1/banners", {"X-API-Key": self.key}) == 200 and \
                    _status(f"{self.url}/readyz") == 200:
                return True
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become ready in {ready_timeout:g} s")

    def output(self) -> str:
        """What the server printed so far."""
        return self._read_output()

    def _read_output(self) -> str:
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def stop(self) -> str:
        stop_group(self.proc)
        return self._read_output()


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM to a process started in its own session and its children; SIGKILL after
    ``grace`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
