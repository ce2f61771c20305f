"""Degraded modes: no model, a model that fails to load or to score, a bad reload."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recommender.store import open_store
from service.app import create_app
from service.engine import RankingEngine

from service_support import ADMIN_KEY, CLIENT_KEY, FakeRegistry, add_fake_model, config_from, started_engine, write_config

C = {"X-API-Key": CLIENT_KEY}
A = {"X-API-Key": ADMIN_KEY}
OPERATORS_ORDER = ["b-pinned", "b-policy", "b-info", "b-survey", "b-event"]  # pinned, then priority


def setup(tmp_path):
    cfg = config_from(write_config(tmp_path))
    reg = FakeRegistry(cfg.models)
    return cfg, reg


def start(cfg, reg):
    engine = RankingEngine(cfg, open_store(cfg.db), registry=reg)
    return TestClient(create_app(engine=engine)), engine


def ranking(client):
    r = client.post("/v1/rank", json={"staff_id": "s-1"}, headers=C)
    assert r.status_code == 200
    return r.json()


def test_no_model_answers_operators_order_and_readyz_says_degraded(tmp_path):
    cfg, reg = setup(tmp_path)
    client, engine = start(cfg, reg)
    with client:
        out = ranking(client)
        assert out["model_version"] == "fallback"
        assert [i["banner_id"] for i in out["ranking"]] == OPERATORS_ORDER
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and "no model promoted" in ready.json()["problems"][0]
    engine.close()


def test_model_failing_its_load_at_start_falls_back(tmp_path):
    cfg, reg = setup(tmp_path)
    add_fake_model(cfg.models, "bad", broken="checksum mismatch")
    reg.promote("bad", verify=False)
    client, engine = start(cfg, reg)
    with client:
        assert ranking(client)["model_version"] == "fallback"
        assert "checksum mismatch" in " ".join(client.get("/readyz").json()["problems"])
    engine.close()


def test_model_failing_to_score_falls_back_per_request(tmp_path):
    cfg, reg = setup(tmp_path)
    add_fake_model(cfg.models, "flaky", fail=True)
    reg.promote("flaky", verify=False)
    client, engine = start(cfg, reg)
    with client:
        out = ranking(client)
        assert out["model_version"] == "fallback"
        assert [i["banner_id"] for i in out["ranking"]] == OPERATORS_ORDER
    engine.close()


def test_bad_reload_keeps_the_running_model_and_says_why(tmp_path):
    cfg, reg = setup(tmp_path)
    add_fake_model(cfg.models, "good")
    add_fake_model(cfg.models, "bad", broken="checksum mismatch in model.joblib")
    add_fake_model(cfg.models, "better", table={"b-event": 9.0})
    reg.promote("good", verify=False)
    client, engine = start(cfg, reg)
    with client:
        assert ranking(client)["model_version"] == "good"
        reg.promote("bad", verify=False)
        r = client.post("/v1/admin/reload", headers=A)
        assert r.status_code == 409
        arm = r.json()["arms"]["A"]
        assert arm["status"] == "kept" and arm["version"] == "good" and "checksum mismatch" in arm["error"]
        assert ranking(client)["model_version"] == "good"
        assert client.get("/readyz").json()["status"] == "degraded"
        reg.promote("better", verify=False)
        r = client.post("/v1/admin/reload", headers=A)
        # the registry watcher may have loaded it already: then the reload finds it unchanged
        assert r.status_code == 200 and r.json()["arms"]["A"]["version"] == "better"
        assert r.json()["arms"]["A"]["status"] in ("loaded", "unchanged")
        out = ranking(client)
        assert out["model_version"] == "better" and out["ranking"][1]["banner_id"] == "b-event"
        assert client.get("/readyz").json()["status"] == "ok"
        assert 'recommender_model_info{arm="A",model_version="better"} 1.0' in client.get("/metrics").text
    engine.close()


def test_store_not_writable_makes_readyz_503(tmp_path):
    cfg, reg = setup(tmp_path)
    client, engine = start(cfg, reg)

    def broken():
        raise OSError("disk full")

    with client:
        engine.store.check_writable = broken
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        assert any("disk full" in p for p in r.json()["problems"])
    engine.close()


def test_a_worker_picks_up_a_promotion_without_reload(tmp_path):
    """Every worker watches registry.json: a promotion reaches the ones reload did not hit."""
    cfg, reg = setup(tmp_path)
    add_fake_model(cfg.models, "m1")
    add_fake_model(cfg.models, "m2")
    reg.promote("m1", verify=False)
    engine = started_engine(cfg, reg)
    try:
        assert engine.rank("s-1").result.model_version == "m1"
        reg.promote("m2", verify=False)
        engine.sync()
        assert engine.rank("s-1").result.model_version == "m2"
    finally:
        engine.close()


def test_readyz_checks_the_store_at_most_once_a_second(tmp_path):
    """/readyz needs no key: a flood of calls must not turn into a flood of store writes."""
    cfg, reg = setup(tmp_path)
    client, engine = start(cfg, reg)
    calls = []
    check = engine.store.check_writable

    def counted():
        calls.append(1)
        check()

    with client:
        engine.store.check_writable = counted
        for _ in range(100):
            assert client.get("/readyz").status_code == 200
        assert len(calls) <= 2
        engine.readiness.check_every = 0.0  # the cached answer expires: the next call checks again
        client.get("/readyz")
        assert len(calls) <= 3 and calls
    engine.close()


@pytest.mark.parametrize("model, reason", [
    ({"table": {"b-info": float("nan"), "b-event": 2.0}}, "not finite"),
    ({"attributes": ("role", "subject")}, "subject"),
    ({"fail": True}, "probe request failed"),
])
def test_a_model_that_loads_but_cannot_score_is_refused_and_the_old_one_kept(tmp_path, model, reason):
    cfg, reg = setup(tmp_path)
    add_fake_model(cfg.models, "good")
    add_fake_model(cfg.models, "bad", **model)
    reg.promote("good", verify=False)
    client, engine = start(cfg, reg)
    with client:
        reg.promote("bad", verify=False)
        r = client.post("/v1/admin/reload", headers=A)
        assert r.status_code == 409
        arm = r.json()["arms"]["A"]
        assert arm["status"] == "kept" and arm["version"] == "good" and reason in arm["error"], arm
        assert ranking(client)["model_version"] == "good"
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded" and any(reason in p for p in ready["problems"])
    engine.close()


def test_a_model_that_cannot_score_at_start_leaves_the_operators_order(tmp_path):
    cfg, reg = setup(tmp_path)
    add_fake_model(cfg.models, "bad", table={"b-info": float("inf")})
    reg.promote("bad", verify=False)
    client, engine = start(cfg, reg)
    with client:
        assert ranking(client)["model_version"] == "fallback"
        assert any("not finite" in p for p in client.get("/readyz").json()["problems"])
    engine.close()


def test_events_the_store_cannot_take_are_refused_with_503(tmp_path):
    """Not acknowledged, so the client keeps them and sends them again."""
    cfg, reg = setup(tmp_path)
    client, engine = start(cfg, reg)

    def down(events):
        raise OSError("database is locked")

    with client:
        out = ranking(client)
        event = {"event_id": "e-1", "request_id": out["request_id"], "banner_id": out["ranking"][0]["banner_id"]}
        store_add = engine.store.add_events
        engine.store.add_events = down
        r = client.post("/v1/events", json={"events": [event]}, headers=C)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "send it again" in r.json()["detail"]
        engine.store.add_events = store_add
        assert client.post("/v1/events", json={"events": [event]}, headers=C).json()["stored"] == 1
    engine.close()


def test_with_no_model_the_service_explores_around_the_operators_order(tmp_path):
    """The first days' logs must be able to train and evaluate the first model: the
    no-model answers explore, with the propensities of epsilon-greedy."""
    cfg = config_from(write_config(tmp_path, arms='[arms]\nsalt = "s"\n[arms.A]\nshare = 1.0\nepsilon = 0.5\n'))
    client, engine = start(cfg, FakeRegistry(cfg.models))
    with client:
        outs = [ranking(client) for _ in range(60)]
    engine.close()
    assert {o["model_version"] for o in outs} == {"fallback"}
    explored = [o for o in outs if o["explored"]]
    assert 10 < len(explored) < 50
    free = len(OPERATORS_ORDER) - 1  # b-pinned holds the first place
    for o in outs:
        ids = [i["banner_id"] for i in o["ranking"]]
        assert ids[0] == "b-pinned" and o["ranking"][0]["propensity"] == 1.0
        for pos, item in enumerate(o["ranking"][1:], start=1):
            at_greedy = ids[pos] == OPERATORS_ORDER[pos]
            assert item["propensity"] == pytest.approx(0.5 * at_greedy + 0.5 / free)
