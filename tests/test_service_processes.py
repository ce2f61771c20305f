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
        try:
            with httpx.Client(base_url=server.url, timeout=5) as http:
                pids.add(http.get("/readyz").json()["worker"])
        except httpx.ConnectError as e:  # the server is gone: say what it said
            raise AssertionError(f"{e}; the server's output:\n{server.output()[-4000:]}") from None
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


def test_an_overloaded_worker_sheds_with_503_and_retry_after(tmp_path):
    """Far more requests at once than max_in_flight: the excess is answered 503 with
    Retry-After at once, the rest normally; health and metrics are never shed."""
    import asyncio

    server = ServeProcess(write_config(tmp_path, extra="max_in_flight = 2"))

    async def burst():
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
            ranks = [http.post("/v1/rank", json={"staff_id": f"s-{i}"}, headers=C) for i in range(300)]
            health = [http.get("/healthz") for _ in range(20)]
            return await asyncio.gather(*ranks), await asyncio.gather(*health)

    try:
        ranks, health = asyncio.run(burst())
        codes = [r.status_code for r in ranks]
        assert set(codes) <= {200, 503} and codes.count(503) > 0 and codes.count(200) > 0, codes
        shed = next(r for r in ranks if r.status_code == 503)
        assert shed.headers["retry-after"] == "1" and "overloaded" in shed.json()["detail"]
        assert all(h.status_code == 200 for h in health)
        with httpx.Client(base_url=server.url, timeout=5) as http:
            metrics = http.get("/metrics").text
        assert 'recommender_shed_requests_total{endpoint="/v1/rank"}' in metrics
        assert "recommender_open_rankings " in metrics
    finally:
        server.stop()
