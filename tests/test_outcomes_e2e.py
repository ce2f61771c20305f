"""End to end on outcomes: a real server serves the operators' order, explored uniformly;
simulated staff click and answer surveys or sign up to events through HTTP, as the
simulator's ground truth says; the service's own traffic is exported, a model is trained
for outcomes on its first part (`recommender train --objective outcomes`), and the
offline A/B on outcomes (`recommender evaluate --objective outcomes`) of the rest covers
each policy's true expected outcomes, recomputed from the ground truth."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest

from recommender.contracts import ImpressionLog, load_banners, load_impressions, load_staff, write_impressions
from recommender.timeutil import format_ts
from simulator import GroundTruth, SimulationConfig, simulate
from simulator.truevalue import TrueValue
from training.objective import OUTCOMES
from training.ope.data import build_bandit
from training.ope.evaluate import resolve_policy
from training.registry import ModelRegistry

from launcher import ServeProcess
from service_support import run_cli as cli, CLIENT_KEY, add_fake_model, config_text

C = {"X-API-Key": CLIENT_KEY}
SLOTS = 3
REQUESTS = 12000
EVALUATED = 7000  # the last requests: the offline A/B's; the others train


class People:
    """The ground truth with each person's views, clicks and outcomes so far."""

    def __init__(self, truth: GroundTruth, log):
        self.truth = truth
        self.views: dict[tuple[int, int], int] = {}
        self.clicked: set[tuple[int, int]] = set()
        self.completed: set[tuple[int, int]] = set()
        u = truth.staff_idx([log.staff_ids[i] for i in log.staff])
        b = truth.banner_idx([log.banner_ids[i] for i in log.banner])
        self.show(u.tolist(), b.tolist(), log.clicked.tolist(), (log.outcome > 0).tolist())

    def show(self, u, b, clicks, outcomes) -> None:
        for uu, bb, c, o in zip(u, b, clicks, outcomes):
            self.views[(uu, bb)] = self.views.get((uu, bb), 0) + 1
            if c:
                self.clicked.add((uu, bb))
            if o:
                self.completed.add((uu, bb))

    def draw(self, u: int, banners: list[str], rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.truth.banner_idx(banners)
        views = np.array([self.views.get((u, x), 0) for x in b.tolist()])
        before = np.array([(u, x) in self.clicked for x in b.tolist()], dtype=float)
        done = np.array([(u, x) in self.completed for x in b.tolist()], dtype=float)
        p = self.truth.click_probability(np.full(len(b), u), b, np.arange(1, len(b) + 1), views, before)
        clicks = rng.random(len(b)) < p
        outcomes = clicks & (rng.random(len(b)) < self.truth.outcome_probability(np.full(len(b), u), b, done))
        return b, clicks, outcomes


@pytest.mark.slow
def test_clicks_and_outcomes_through_http_train_and_evaluate_for_outcomes(tmp_path):
    rng = np.random.default_rng(11)
    prov = tmp_path / "province"
    today_kst = datetime.now(timezone(timedelta(hours=9))).date()
    simulate(prov, SimulationConfig(staff=3000, days=4, seed=11, outcomes=True, start=str(today_kst - timedelta(days=4))))
    truth = GroundTruth.load(prov)
    catalog = load_banners(prov / "banners.json")
    past = load_impressions(prov / "impressions.jsonl", catalog=catalog)
    kind = {b.banner_id: b.outcome.type for b in catalog if b.outcome is not None}
    hides = {b.banner_id for b in catalog if b.outcome is not None and b.outcome.after_completion == "hide"}

    models = tmp_path / "models"
    add_fake_model(models, "operators", table={})  # every score 0: the operators' order, explored
    ModelRegistry(models).promote("operators", verify=False)
    config = tmp_path / "service.toml"
    config.write_text(config_text({
        "db": "events.db", "models": "models", "banners": str(prov / "banners.json"), "staff": str(prov / "staff.csv"),
        "history": str(prov / "impressions.jsonl"), "history_days": 30, "slots": SLOTS, "seed": 3,
        "log_salt": "e2e", "model_loader": "service_support:load_model"}, epsilon=1.0, salt="e2e"))
    people = People(truth, past)
    staff_ids = truth.staff_ids
    n_clicks = n_outcomes = 0
    server = ServeProcess(config, extra_env={"PYTHONPATH": str(Path(__file__).resolve().parent)})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(REQUESTS):
                u = int(rng.integers(len(staff_ids)))
                r = http.post("/v1/rank", json={"staff_id": staff_ids[u], "slots": SLOTS}, headers=C)
                assert r.status_code == 200, r.text
                body = r.json()
                shown = [x["banner_id"] for x in body["ranking"][:SLOTS]]
                b, clicks, outcomes = people.draw(u, shown, rng)
                # the catalog hides a survey from whoever answered it
                assert not any((u, x) in people.completed for x, bid in zip(b.tolist(), shown) if bid in hides)
                people.show([u] * len(b), b.tolist(), clicks.tolist(), outcomes.tolist())
                events = [{"event_id": f"c-{i}-{j}", "request_id": body["request_id"], "banner_id": shown[j]}
                          for j in np.flatnonzero(clicks).tolist()]
                events += [{"event_id": f"o-{i}-{j}", "type": kind[shown[j]], "request_id": body["request_id"],
                            "banner_id": shown[j], "value": 1.0} for j in np.flatnonzero(outcomes).tolist()]
                if events:
                    res = http.post("/v1/events", json={"events": events}, headers=C).json()
                    assert res["stored"] == len(events) and not res["flagged"], res
                n_clicks += int(clicks.sum())
                n_outcomes += int(outcomes.sum())
    finally:
        server.stop()
    assert n_outcomes > 20

    exported = tmp_path / "served.jsonl"
    cli("export", "--db", str(tmp_path / "events.db"), "--out", str(exported))
    served = load_impressions(exported, catalog=catalog)
    assert served.n_requests == REQUESTS and int(served.clicked.sum()) == n_clicks
    assert int((served.outcome > 0).sum()) == n_outcomes

    # train for outcomes on the simulated days and the first served requests
    cut = float(np.sort(served.request_ts())[REQUESTS - EVALUATED])
    since = format_ts(cut)
    train_log = tmp_path / "train.jsonl"
    write_impressions(train_log, ImpressionLog.concat([past, served.subset(served.ts < cut)]).iter_rows())
    out = cli("train", "--staff", str(prov / "staff.csv"), "--banners", str(prov / "banners.json"),
              "--impressions", str(train_log), "--out", str(models), "--models", "logistic", "--objective", "outcomes")
    folder = Path(out.strip().splitlines()[-1].split("model: ", 1)[1])
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["objective"]["name"] == "outcomes" and "outcomes@3" in meta["validation"]["logistic"]

    # the offline A/B on outcomes of the last served requests, against the truth
    result = tmp_path / "ab.json"
    cli("evaluate", "--staff", str(prov / "staff.csv"), "--banners", str(prov / "banners.json"),
        "--impressions", str(exported), "--history", str(prov / "impressions.jsonl"), "--since", since,
        "--policy", str(folder), "--policy", "popularity", "--policy", "logged", "--objective", "outcomes",
        "--json", str(result))
    ab = json.loads(result.read_text())
    assert ab["objective"] == "outcomes"

    staff = load_staff(prov / "staff.csv")
    history = [past, served.subset(served.ts < cut)]
    evaluated = served.subset(served.ts >= cut)
    bandit = build_bandit(evaluated, catalog, staff, SLOTS, history_logs=history, objective=OUTCOMES)
    true_value = TrueValue(truth, bandit, [*history, evaluated], OUTCOMES)
    report = []
    for spec in (str(folder), "popularity"):
        policy = resolve_policy(spec, bandit)
        dr = ab["policies"][policy.name]["dr"]
        t = true_value(policy)
        report.append(f"{policy.name}: true {t:.4f}, DR {dr['value']:.4f} [{dr['ci_low']:.4f}, {dr['ci_high']:.4f}]")
        assert dr["ci_low"] <= t <= dr["ci_high"], report
    # the model of outcomes gets more of them than popularity (clicks) would, and the A/B says so
    difference = ab["differences"][f"popularity-{resolve_policy(str(folder), bandit).name}"]["dr"]
    assert difference["ci_high"] < 0, difference
    logged = ab["policies"]["logged"]["ips"]["value"]
    assert logged == pytest.approx(float(evaluated.outcome.sum()) / evaluated.n_requests)
    print("; ".join(report))
