"""The closed loop on a real server: a service with no model yet explores around the
operators' order; simulated staff click through HTTP by the simulator's ground truth
(some requests name banner ids the catalog does not know); `recommender retrain --promote
--service URL` exports, trains, evaluates, promotes and the server answers with the new
version. A candidate that is not surely better is kept (exit 3, with the reason); a run
finding the lock held exits 4; broken input exits 1 with one line."""
from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest

from recommender.contracts import load_banners, load_impressions, write_banners
from simulator import GroundTruth, SimulationConfig, simulate

from launcher import ServeProcess
from service_support import ADMIN_KEY, CLIENT_KEY, config_text
from test_service_e2e import TruthState

ROOT = Path(__file__).resolve().parent.parent
C = {"X-API-Key": CLIENT_KEY}
A = {"X-API-Key": ADMIN_KEY}
SLOTS = 3


def recommender(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A service that ran 9,000 requests of simulated traffic from no model; its config,
    the province and the server (still running). The banner server names 6 candidates a
    request and the service explores half of the time: enough exploration, on a test's
    few thousand requests, for the offline A/B's importance weights to be reliable."""
    tmp = tmp_path_factory.mktemp("loop")
    rng = np.random.default_rng(8)
    prov = tmp / "province"
    today_kst = datetime.now(timezone(timedelta(hours=9))).date()
    simulate(prov, SimulationConfig(staff=8000, days=4, seed=8, start=str(today_kst - timedelta(days=4))))
    truth = GroundTruth.load(prov)
    catalog = load_banners(prov / "banners.json")
    # the operators' priorities put the banners people like least first: the order a first
    # model must beat, by a margin a test's few thousand requests can show
    staff_sample = np.arange(0, len(truth.staff_ids), 7)
    liked = {b.banner_id: float(truth.attractiveness(staff_sample, truth.banner_idx([b.banner_id] * len(staff_sample)))
                                .mean()) for b in catalog}
    by_dislike = sorted(liked, key=liked.get)
    write_banners(tmp / "banners.json", [replace(b, priority=len(by_dislike) - by_dislike.index(b.banner_id))
                                         for b in catalog])
    catalog = load_banners(tmp / "banners.json")
    config = tmp / "service.toml"
    config.write_text(config_text({
        "db": "events.db", "models": "models", "banners": str(tmp / "banners.json"), "staff": str(prov / "staff.csv"),
        "history": str(prov / "impressions.jsonl"), "history_days": 30, "slots": SLOTS, "seed": 3,
        "log_salt": "loop"}, epsilon=0.5, salt="loop"))
    state = TruthState(truth, load_impressions(prov / "impressions.jsonl", catalog=catalog))
    server = ServeProcess(config)
    staff_ids = truth.staff_ids
    ids = [b.banner_id for b in catalog]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for i in range(9000):
            u = int(rng.integers(len(staff_ids)))
            candidates = rng.choice(ids, 6, replace=False).tolist()
            if i % 10 == 0:
                candidates[-1] = f"b-new-{i % 3}"  # a banner the catalog does not know
            body = {"staff_id": staff_ids[u], "slots": SLOTS, "candidates": candidates}
            out = http.post("/v1/rank", json=body, headers=C).json()
            assert out["model_version"] == "fallback"
            shown = [x["banner_id"] for x in out["ranking"][:SLOTS]]
            known = [b for b in shown if b in catalog]
            p = dict(zip(known, state.probs(u, known))) if known else {}
            clicks = np.array([rng.random() < p.get(b, 0.05) for b in shown])
            state.show(u, known, np.array([c for b, c in zip(shown, clicks) if b in catalog], dtype=bool))
            events = [{"event_id": f"e-{i}-{j}", "request_id": out["request_id"], "banner_id": shown[j]}
                      for j in np.flatnonzero(clicks).tolist()]
            if events:
                assert http.post("/v1/events", json={"events": events}, headers=C).status_code == 200
    log = load_impressions(prov / "impressions.jsonl", catalog=catalog)
    yield {"config": config, "prov": prov, "server": server, "tmp": tmp, "past": log}
    server.stop()


def span_days(config: Path) -> float:
    from recommender.store import open_store

    with open_store(f"sqlite:///{config.parent / 'events.db'}") as store:
        ts = [r.ts for r in store.iter_rankings()]
    return (max(ts) - min(ts)) / 86400


def retrain(served, *extra: str, **env) -> subprocess.CompletedProcess:
    span = span_days(served["config"])
    return recommender("retrain", "--config", str(served["config"]), "--window", "1d",
                       "--eval-days", f"{span * 0.6:.8f}", "--holdout-days", f"{span / 8:.8f}", "--models", "logistic",
                       "--history", str(served["prov"] / "impressions.jsonl"), "--epsilon", "0.1", *extra,
                       env={"RECOMMENDER_ADMIN_KEY": ADMIN_KEY, **env})


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
