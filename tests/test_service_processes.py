"""The server as processes: workers never outlive their supervisor, signals stop them all,
nothing is left behind, and --log-level reaches the service's own logs."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from launcher import ServeProcess
from service_support import CLIENT_KEY, write_config

C = {"X-API-Key": CLIENT_KEY}


def alive(pid: int) -> bool:
    """Running (a zombie left for a parent that does not reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def worker_pids(server: ServeProcess, tries: int = 40) -> set[int]:
    pids = set()
    for _ in range(tries):  # a new connection each time: the kernel spreads them over the workers
        with httpx.Client(base_url=server.url, timeout=5) as http:
            pids.add(http.get("/readyz").json()["worker"])
    return pids


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_workers_exit_when_their_supervisor_is_killed_and_the_port_can_be_reused(tmp_path):
    config = write_config(tmp_path)
    server = ServeProcess(config, workers=2)
    try:
        workers = worker_pids(server)
        assert len(workers) == 2 and server.proc.pid not in workers
        os.kill(server.proc.pid, signal.SIGKILL)  # the supervisor alone, not its process group
        server.proc.wait(5)
        assert wait_until(lambda: not any(alive(p) for p in workers)), "workers outlived their supervisor"
        again = ServeProcess(config, workers=2, port=server.port)  # the port is free again
        try:
            with httpx.Client(base_url=again.url, timeout=5) as http:
                assert http.post("/v1/rank", json={"staff_id": "s-1"}, headers=C).status_code == 200
            assert not worker_pids(again, 10) & workers
        finally:
            again.stop()
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_supervisor_stops_its_workers_on_a_signal(tmp_path, sig):
    server = ServeProcess(write_config(tmp_path), workers=2)
    try:
        workers = worker_pids(server)
        os.kill(server.proc.pid, sig)
        assert server.proc.wait(20) == 0
        assert wait_until(lambda: not any(alive(p) for p in workers))
    finally:
        server.stop()


def test_a_multi_worker_server_leaves_no_temporary_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = ServeProcess(write_config(tmp_path), workers=2, extra_env={"TMPDIR": str(tmp)})
    try:
        assert any(p.name.startswith("recommender-metrics-") for p in tmp.iterdir())
    finally:
        server.stop()
    assert not any(p.name.startswith("recommender-metrics-") for p in tmp.iterdir())


def test_log_level_debug_reaches_the_service_logs_without_staff_ids(tmp_path):
    server = ServeProcess(write_config(tmp_path), log_level="debug")
    try:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            out = http.post("/v1/rank", json={"staff_id": "s-secret-42"}, headers=C).json()
    finally:
        logs = server.stop()
    assert f"rank {out['request_id']} staff=s#" in logs
    assert "s-secret-42" not in logs
