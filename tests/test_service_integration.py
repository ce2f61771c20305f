"""The real server: `recommender serve` (uvicorn) on a free loopback port, 1 and 2 workers."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from recommender.contracts.impressions import load_impressions

from launcher import ServeProcess
from service_support import CLIENT_KEY, write_config

C = {"X-API-Key": CLIENT_KEY}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path, extra="workers = 1")


def test_serve_rank_click_export(config, tmp_path):
    server = ServeProcess(config, extra_env={"RECOMMENDER_CLIENT_KEYS": "env-client-key"})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            r = http.post("/v1/rank", json={"staff_id": "s-secret-99", "slots": 2}, headers=C)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["model_version"] == "fallback"  # no model promoted in this registry
            # a key from the environment works too
            assert http.post("/v1/rank", json={"staff_id": "s-2"}, headers={"X-API-Key": "env-client-key"}).status_code == 200
            ev = {"events": [{"event_id": "e-1", "request_id": out["request_id"],
                              "banner_id": out["ranking"][1]["banner_id"]}]}
            assert http.post("/v1/events", json=ev, headers=C).json()["stored"] == 1
            assert http.post("/v1/events", json=ev, headers=C).json()["duplicates"] == 1
            assert http.get("/readyz").json()["status"] == "degraded"
            assert "recommender_rankings_total" in http.get("/metrics").text
    finally:
        logs = server.stop()
    assert "s-secret-99" not in logs
    out_file = tmp_path / "exported.jsonl"
    res = subprocess.run([sys.executable, "-m", "cli.main", "export", "--db", str(tmp_path / "events.db"),
                          "--out", str(out_file)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    log = load_impressions(out_file)
    assert len(log) == 2 + 3  # slots 2, then the default 3
    assert int(log.clicked.sum()) == 1
    assert log.n_requests == 2


def test_two_workers_share_a_burst_of_connections(tmp_path):
    """Connections opened all at once (a client's keep-alive pool) spread over the workers:
    each has a listening socket of its own, so the first to wake cannot take them all. A
    second server on the same port fails to start instead of sharing it."""
    import http.client

    server = ServeProcess(write_config(tmp_path, extra="workers = 2"), workers=2)
    try:
        # the first worker may answer before the second has bound its socket: wait until
        # fresh connections have reached both, then open the burst
        seen: set = set()
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            c.request("GET", "/readyz")
            seen.add(json.loads(c.getresponse().read())["worker"])
            c.close()
        assert len(seen) == 2, "the second worker never answered"
        conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(16)]
        for c in conns:
            c.connect()
        answered = set()
        for c in conns:
            c.request("GET", "/readyz")
            answered.add(json.loads(c.getresponse().read())["worker"])
            c.close()
        assert len(answered) == 2  # all 16 on one of two sockets: probability 2**-15
        other = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--config",
                                str(tmp_path / "service.toml"), "--port", str(server.port), "--workers", "2"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert other.returncode != 0 and "address already in use" in (other.stdout + other.stderr).lower()
    finally:
        server.stop()


def test_two_workers_share_clicks_within_a_second(tmp_path):
    """A click posted to one worker changes the person's ranking in every worker within a
    second (each worker tails the store), through a real model loaded by a real server."""
    from recommender.store import open_store
    from training.registry import ModelRegistry

    from service_support import add_fake_model

    config = write_config(tmp_path, extra='workers = 2\nmodel_loader = "service_support:load_model"')
    add_fake_model(tmp_path / "models", "m1")
    ModelRegistry(tmp_path / "models").promote("m1", verify=False)
    tests_dir = str(Path(__file__).resolve().parent)
    server = ServeProcess(config, workers=2, extra_env={"PYTHONPATH": tests_dir})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            before = http.post("/v1/rank", json={"staff_id": "s-1"}, headers=C).json()
            assert before["model_version"] == "m1"
            assert before["ranking"][1]["banner_id"] == "b-survey"
            http.post("/v1/events", json={"events": [{"event_id": "e-9", "request_id": before["request_id"],
                                                      "banner_id": "b-survey"}]}, headers=C).raise_for_status()
        time.sleep(0.5)
        writers, answered = set(), 0
        deadline = time.time() + 20
        while len(writers) < 2 and time.time() < deadline:
            for _ in range(8):  # a fresh connection may land on either worker
                with httpx.Client(base_url=server.url, timeout=10) as fresh:
                    r = fresh.post("/v1/rank", json={"staff_id": "s-1"}, headers=C).json()
                ids = [i["banner_id"] for i in r["ranking"]]
                assert ids[-1] == "b-survey", ids  # clicked: it drops, whichever worker answered
                answered += 1
            time.sleep(0.2)
            with open_store(str(tmp_path / "events.db")) as store:
                writers = {x.writer for x in store.iter_rankings() if x.request_id != before["request_id"]}
        assert len(writers) == 2, f"only one worker answered {answered} requests"
    finally:
        server.stop()


def test_an_export_folder_is_a_complete_training_set(config, tmp_path):
    """The catalog and the staff directory the service held come with the impressions, in
    the file contracts, and the impressions validate against that catalog."""
    from recommender.contracts import load_banners, load_staff

    server = ServeProcess(config)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for staff in ("s-1", "s-p", "s-unknown"):
                assert http.post("/v1/rank", json={"staff_id": staff}, headers=C).status_code == 200
    finally:
        server.stop()
    folder = tmp_path / "export"
    res = subprocess.run([sys.executable, "-m", "cli.main", "export", "--db", str(tmp_path / "events.db"),
                          "--out", str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    catalog = load_banners(folder / "banners.json")
    staff = load_staff(folder / "staff.csv")
    log = load_impressions(folder / "impressions.jsonl", catalog=catalog)
    assert "b-heads" in catalog and staff.get("s-p").get("role") == "principal" and log.n_requests == 3


def test_two_workers_map_one_copy_of_the_history_file(tmp_path):
    """With two workers, the history file's counters are built once, saved in the history
    cache and mapped by both; a restart maps them again without building."""
    rows = [{"request_id": f"r-{i}", "ts": f"2026-03-02T0{i % 9}:00:00+09:00", "staff_id": "s-1",
             "banner_id": "b-survey", "position": 1, "propensity": 1.0, "clicked": i % 2} for i in range(20)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = write_config(tmp_path, extra='workers = 2\nhistory = "history.jsonl"')
    for start in ("first", "second"):
        server = ServeProcess(config, workers=2, log_level="info")
        try:
            answers = set()
            for _ in range(12):  # fresh connections land on either worker
                with httpx.Client(base_url=server.url, timeout=10) as http:
                    answers.add(http.get("/readyz").json()["history"]["impressions"])
        finally:
            output = server.stop()
        bases = [p for p in (tmp_path / "history-cache").iterdir() if p.is_dir()]
        assert len(bases) == 1 and (bases[0] / "vocabulary.json").is_file()
        assert answers == {len(rows)}
        built = output.count("saved to")
        assert built == (1 if start == "first" else 0), output
