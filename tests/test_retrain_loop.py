"""The closed loop on a real server: a service with no model yet explores around the
operators' order; simulated staff click through HTTP by the simulator's ground truth
(some requests name banner ids the catalog does not know); `recommender retrain --promote
--service URL` exports, trains, evaluates, promotes and the server answers with the new
version. A candidate that is not surely better is kept (exit 3, with the reason); a run
finding the lock held exits 4; broken input exits 1 with one line."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

import httpx
import pytest

from loop_support import A, C, recommender, retrain, serve_simulated_traffic


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A service that ran 9,000 requests of simulated traffic from no model; its config,
    the province and the server (still running). The banner server names 6 candidates a
    request and the service explores half of the time: enough exploration, on a test's
    few thousand requests, for the offline A/B's importance weights to be reliable."""
    out = serve_simulated_traffic(tmp_path_factory.mktemp("loop"), epsilon=0.5, requests=9000)
    yield out
    out["server"].stop()


def test_a_candidate_not_surely_better_is_kept_with_its_reason(served):
    out = retrain(served, "--min-gain", "1.0", "--promote", "--service", served["server"].url)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "decision: kept" in out.stdout and "is not surely above +1.0000" in out.stdout
    summary = json.loads(Path(out.stdout.split("summary: ")[1].split(";")[0].strip()).read_text())
    assert summary["decision"] == "kept" and summary["difference"]["ci_low"] < 1.0
    with httpx.Client(base_url=served["server"].url, timeout=10) as http:
        assert http.get("/v1/admin/arms", headers=A).json()["models"]["A"] == "fallback"


def test_too_little_data_is_kept_with_its_reason(served):
    out = recommender("retrain", "--config", str(served["config"]), "--window", "1s", "--eval-days", "0.5")
    assert out.returncode == 3 and "too few to train a candidate" in out.stdout, out.stdout + out.stderr


def test_the_loop_promotes_a_better_model_and_the_server_serves_it(served):
    out = retrain(served, "--promote", "--service", served["server"].url)
    assert out.returncode == 0, out.stdout + out.stderr
    version = out.stdout.split("candidate: ")[1].split(";")[0]
    assert "decision: promoted" in out.stdout and f"serves {version} on arm A" in out.stdout
    with httpx.Client(base_url=served["server"].url, timeout=10) as http:
        r = http.post("/v1/rank", json={"staff_id": "s-000001"}, headers=C).json()
        assert r["model_version"] == version
    listed = recommender("models", "--config", str(served["config"]), "list").stdout
    assert version in listed and "vs operators" in listed
    folder = served["config"].parent / "models" / version
    summary = json.loads((folder / "retrain.json").read_text())
    report = (folder / "report.html").read_text()
    assert summary["decision"] == "promoted" and "promoted" in report and summary["reason"] in report
    assert f"{summary['difference']['value']:+.4f}" in summary["reason"]


def test_a_second_run_finding_the_lock_held_exits_4(served):
    models = served["config"].parent / "models"
    models.mkdir(exist_ok=True)
    with open(models / "retrain.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = recommender("retrain", "--config", str(served["config"]))
    assert out.returncode == 4 and "another run holds" in out.stderr


def test_broken_input_fails_with_one_line(tmp_path):
    (tmp_path / "events.db").write_bytes(b"not a database at all" * 100)
    out = recommender("retrain", "--db", str(tmp_path / "events.db"), "--registry", str(tmp_path))
    assert out.returncode == 1 and out.stderr.startswith("retrain failed: ") and len(out.stderr.splitlines()) == 1
    out = recommender("retrain", "--registry", str(tmp_path))
    assert out.returncode == 1 and "give --config, or both --db and --registry" in out.stderr
