"""Crash safety: the server killed with SIGKILL under load, with 1 and 2 workers, on
SQLite and on PostgreSQL. Every click the server acknowledged is in the store exactly
once, and sending every click again after the restart stores nothing twice."""
from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from recommender.store import open_store

from launcher import ServeProcess
from service_support import CLIENT_KEY, write_config

C = {"X-API-Key": CLIENT_KEY}
KILLS = 2


def load(url: str, tag: str, stop: threading.Event, acked: set, sent: list) -> None:
    """Rank, then click the first banner shown, as fast as one client goes."""
    i = 0
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            try:
                out = http.post("/v1/rank", json={"staff_id": f"s-{i % 50}"}, headers=C).json()
                event = {"event_id": f"{tag}-{i}", "request_id": out["request_id"],
                         "banner_id": out["ranking"][0]["banner_id"]}
                sent.append(event)
                r = http.post("/v1/events", json={"events": [event]}, headers=C)
                if r.status_code == 200:
                    acked.add(event["event_id"])
            except (httpx.HTTPError, KeyError, ValueError):
                pass  # the server is gone: what was not acknowledged may or may not be stored
            i += 1


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_acknowledged_click_survives_sigkill_once(tmp_path, request, backend, workers):
    db = str(tmp_path / "events.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    config = write_config(tmp_path, db=db, extra=f"workers = {workers}")
    acked: set[str] = set()
    sent: list[dict] = []
    for kill in range(KILLS):
        server = ServeProcess(config, workers=workers)
        stop = threading.Event()
        clients = [threading.Thread(target=load, args=(server.url, f"k{kill}c{c}", stop, acked, sent))
                   for c in range(4)]
        for t in clients:
            t.start()
        time.sleep(1.0 + 0.3 * kill)
        os.killpg(server.proc.pid, signal.SIGKILL)  # the supervisor and its workers, mid-load
        server.proc.wait(10)
        stop.set()
        for t in clients:
            t.join(10)
    assert len(acked) > 50
    server = ServeProcess(config, workers=workers)  # restarted: clients send every click again
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for start in range(0, len(sent), 500):
                r = http.post("/v1/events", json={"events": sent[start:start + 500]}, headers=C)
                assert r.status_code == 200
                assert set(r.json()["duplicate_ids"]) >= acked & {e["event_id"] for e in sent[start:start + 500]}
    finally:
        server.stop()
    store = open_store(config.parent.joinpath(db).as_posix() if backend == "sqlite" else db)
    try:
        stored = [e.event_id for e in store.iter_events()]
    finally:
        store.close()
    assert len(stored) == len(set(stored))  # nothing twice
    assert acked <= set(stored)  # nothing acknowledged lost
    assert set(stored) == {e["event_id"] for e in sent}  # and the resent ones are in
