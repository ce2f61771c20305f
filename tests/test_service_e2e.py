"""End to end: a real server (uvicorn on a free port) serves the
operators' order with epsilon-greedy exploration; simulated staff click through HTTP
according to the simulator's ground truth; the service's own traffic is exported, a
model is trained on it (`recommender train`), promoted and reloaded; its rankings' true
expected clicks beat the popularity order of the same traffic."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np

from recommender.contracts import load_banners, load_impressions
from simulator import GroundTruth, SimulationConfig, simulate
from training.registry import ModelRegistry

from launcher import ServeProcess
from service_support import run_cli as cli, ADMIN_KEY, CLIENT_KEY, add_fake_model, config_text

C = {"X-API-Key": CLIENT_KEY}
A = {"X-API-Key": ADMIN_KEY}
SLOTS = 3


T0 = time.perf_counter()


def mark(what: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {what}", flush=True)


class TruthState:
    """The simulator's click model with each person's views and clicks so far."""

    def __init__(self, truth: GroundTruth, log):
        self.truth = truth
        self.views: dict[tuple[int, int], int] = {}
        self.clicked: set[tuple[int, int]] = set()
        u = truth.staff_idx([log.staff_ids[i] for i in log.staff])
        b = truth.banner_idx([log.banner_ids[i] for i in log.banner])
        for uu, bb, c in zip(u.tolist(), b.tolist(), log.clicked.tolist()):
            self.views[(uu, bb)] = self.views.get((uu, bb), 0) + 1
            if c:
                self.clicked.add((uu, bb))

    def probs(self, u: int, banners: list[str]) -> np.ndarray:
        b = self.truth.banner_idx(banners)
        views = np.array([self.views.get((u, x), 0) for x in b.tolist()])
        before = np.array([(u, x) in self.clicked for x in b.tolist()], dtype=float)
        return self.truth.click_probability(np.full(len(b), u), b, np.arange(1, len(b) + 1), views, before)

    def show(self, u: int, banners: list[str], clicks: np.ndarray) -> None:
        for x, c in zip(self.truth.banner_idx(banners).tolist(), clicks.tolist()):
            self.views[(u, x)] = self.views.get((u, x), 0) + 1
            if c:
                self.clicked.add((u, x))


def test_traffic_export_retrain_reload_beats_popularity(tmp_path):
    rng = np.random.default_rng(5)
    prov = tmp_path / "province"
    today_kst = datetime.now(timezone(timedelta(hours=9))).date()
    simulate(prov, SimulationConfig(staff=3000, days=3, seed=5, start=str(today_kst - timedelta(days=3))))
    mark("simulated")
    truth = GroundTruth.load(prov)
    catalog = load_banners(prov / "banners.json")
    past = load_impressions(prov / "impressions.jsonl", catalog=catalog)

    # the first policy: the operators' order with epsilon-greedy exploration (a model that
    # scores every banner 0, so ties fall back to priority), as before any training
    models = tmp_path / "models"
    add_fake_model(models, "operators", table={})
    first = "operators"
    ModelRegistry(models).promote(first, verify=False)
    mark("registry ready")

    config = tmp_path / "service.toml"
    config.write_text(config_text({
        "db": "events.db", "models": "models", "banners": str(prov / "banners.json"), "staff": str(prov / "staff.csv"),
        "history": str(prov / "impressions.jsonl"), "history_days": 30, "slots": SLOTS, "seed": 3, "log_salt": "e2e",
        "model_loader": "service_support:load_model"}, epsilon=0.3, salt="e2e"))
    state = TruthState(truth, past)
    staff_ids = truth.staff_ids
    server = ServeProcess(config, extra_env={"PYTHONPATH": str(Path(__file__).resolve().parent)})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/readyz").json()["status"] == "ok"
            mark("server up")
            # simulated traffic: rank, look at the first SLOTS banners, click by the ground truth
            n_clicks = 0
            for i in range(3000):
                u = int(rng.integers(len(staff_ids)))
                r = http.post("/v1/rank", json={"staff_id": staff_ids[u], "slots": SLOTS}, headers=C)
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["model_version"] == first
                shown = [x["banner_id"] for x in body["ranking"][:SLOTS]]
                clicks = rng.random(len(shown)) < state.probs(u, shown)
                state.show(u, shown, clicks)
                events = [{"event_id": f"e-{i}-{j}", "request_id": body["request_id"], "banner_id": shown[j]}
                          for j in np.flatnonzero(clicks).tolist()]
                if events:
                    n_clicks += len(events)
                    res = http.post("/v1/events", json={"events": events}, headers=C).json()
                    assert res["stored"] == len(events) and not res["flagged"]
            assert n_clicks > 100
            mark("traffic")

            # export the service's traffic and retrain on it
            exported = tmp_path / "served.jsonl"
            cli("export", "--db", str(tmp_path / "events.db"), "--out", str(exported))
            served = load_impressions(exported, catalog=catalog)
            assert served.n_requests == 3000 and int(served.clicked.sum()) == n_clicks
            span_days = float(served.ts.max() - served.ts.min()) / 86400
            out = cli("train", "--staff", str(prov / "staff.csv"), "--banners", str(prov / "banners.json"),
                      "--impressions", str(exported), "--history", str(prov / "impressions.jsonl"),
                      "--out", str(models), "--models", "logistic", "--holdout-days", f"{span_days / 4:.8f}")
            mark("exported, retrained")
            second = Path(out.strip().splitlines()[-1].split("model: ", 1)[1].rstrip("/")).name
            assert second != first
            cli("models", "--models", str(models), "promote", second)  # verifies the checksums
            reload = http.post("/v1/admin/reload", headers=A)
            assert reload.status_code == 200 and reload.json()["arms"]["A"]["version"] == second

            # popularity from the same exported traffic (smoothed click rate per banner)
            ctr = {}
            for b in range(len(served.banner_ids)):
                m = served.banner == b
                ctr[served.banner_ids[b]] = (served.clicked[m].sum() + 1.0) / (m.sum() + 20.0)
            pinned = {b.banner_id for b in catalog if b.pinned}

            model_value, pop_value = [], []
            for u in rng.choice(len(staff_ids), 1500, replace=False).tolist():
                body = http.post("/v1/rank", json={"staff_id": staff_ids[u], "slots": SLOTS}, headers=C).json()
                assert body["model_version"] == second
                if body["explored"]:
                    continue
                ranked = [x["banner_id"] for x in body["ranking"]]
                popular = sorted(ranked, key=lambda b: (b not in pinned, -ctr.get(b, 0.0)))
                model_value.append(state.probs(u, ranked[:SLOTS]).sum())
                pop_value.append(state.probs(u, popular[:SLOTS]).sum())
    finally:
        server.stop()
    model_value, pop_value = np.array(model_value), np.array(pop_value)
    diff = model_value - pop_value
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    print(f"true expected clicks@{SLOTS}: retrained {model_value.mean():.4f}, popularity {pop_value.mean():.4f}, "
          f"difference {diff.mean():.4f} +- {se:.4f} over {len(diff)} requests")
    assert diff.mean() > 2 * se, (model_value.mean(), pop_value.mean(), se)
