"""A service that served simulated traffic from no model, for the retraining tests: the
simulator's staff and ground truth, a catalog whose operators' priorities put the banners
people like least first (the order a first model must beat, by a margin a test's few
thousand requests can show), and clicks sent through HTTP by the ground truth."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np

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


def serve_simulated_traffic(tmp: Path, epsilon: float, requests: int, arms: str = "", extra: dict | None = None) -> dict:
    """Start a service with no model and send it ``requests`` requests of simulated traffic
    (6 candidates each, one in ten naming a banner the catalog does not know) and their
    clicks. ``arms``: TOML appended to the config (more arms than A's 100%); ``extra``:
    more [service] keys. Returns the config, the province, the server (running) and the
    province's own past logs."""
    rng = np.random.default_rng(8)
    prov = tmp / "province"
    today_kst = datetime.now(timezone(timedelta(hours=9))).date()
    simulate(prov, SimulationConfig(staff=8000, days=4, seed=8, start=str(today_kst - timedelta(days=4))))
    truth = GroundTruth.load(prov)
    catalog = load_banners(prov / "banners.json")
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
        "log_salt": "loop", **(extra or {})}, epsilon=epsilon, salt="loop") + arms)
    state = TruthState(truth, load_impressions(prov / "impressions.jsonl", catalog=catalog))
    server = ServeProcess(config)
    staff_ids = truth.staff_ids
    ids = [b.banner_id for b in catalog]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for i in range(requests):
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
    return {"config": config, "prov": prov, "server": server, "tmp": tmp,
            "past": load_impressions(prov / "impressions.jsonl", catalog=catalog)}


def span_days(config: Path) -> float:
    from recommender.store import open_store

    with open_store(f"sqlite:///{config.parent / 'events.db'}") as store:
        ts = [r.ts for r in store.iter_rankings()]
    return (max(ts) - min(ts)) / 86400


def retrain(served: dict, *extra: str, **env) -> subprocess.CompletedProcess:
    """`recommender retrain` on the service's logs: its newest 60% evaluated, the province's
    past logs as history."""
    span = span_days(served["config"])
    return recommender("retrain", "--config", str(served["config"]), "--window", "1d",
                       "--eval-days", f"{span * 0.6:.8f}", "--holdout-days", f"{span / 8:.8f}", "--models", "logistic",
                       "--history", str(served["prov"] / "impressions.jsonl"), "--epsilon", "0.1", *extra,
                       env={"RECOMMENDER_ADMIN_KEY": ADMIN_KEY, **env})
