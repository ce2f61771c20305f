"""Retention and erasure: pruning old rankings and clicks, and forgetting one person, in
the store (SQLite and PostgreSQL), in the service's memory (every worker), from the
command line and the admin endpoint, and in what is exported afterwards."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main as cli_main
from features.history import RunningHistory
from recommender.contracts import load_impressions, load_staff, write_impressions
from recommender.store import STAFF_DOC, ClickEvent, RankingRecord, open_store
from recommender.store.export import export_training_set
from service.app import create_app
from service.config import ConfigError
from service.engine import RankingEngine
from service.retention import Retention

from service_support import ADMIN_KEY, CLIENT_KEY, FakeRegistry, add_fake_model, config_from, started_engine, \
    write_config

T0 = 1_700_000_000.0
DAY = 86400.0
BASELINE = ["b-pinned", "b-survey", "b-event", "b-info", "b-policy"]  # the fake model's order for s-1, no history


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite"
                   else request.getfixturevalue("pg_url"))
    try:
        yield s
    finally:
        s.close()


def ranking(rid: str, staff: str, ts: float) -> RankingRecord:
    items = [("b-1", 1, 0.9, 0.9), ("b-2", 2, 0.5, 0.85), ("b-3", 3, 0.1, 0.05)]
    return RankingRecord(rid, ts, staff, "A", "v1", False, 2, items, ["b-1", "b-2", "b-3"], writer="w")


def click(eid: str, rid: str, received: float) -> ClickEvent:
    return ClickEvent(eid, rid, "b-1", received, received=received)


# -- the store -----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ages=st.lists(st.floats(0, 10 * DAY), min_size=0, max_size=30),
       delays=st.lists(st.floats(0, 3 * DAY), min_size=0, max_size=30),
       cutoff_age=st.sampled_from([0.0, DAY, 2.5 * DAY, 5 * DAY, 11 * DAY]), batch=st.integers(1, 7))
def test_prune_keeps_exactly_what_is_newer_than_the_cutoff(store, ages, delays, cutoff_age, batch):
    """Rankings at or after the cutoff stay with their clicks; older rankings go with
    every click on them, and clicks received before the cutoff go too, whatever the
    batch size."""
    store.prune(math.inf)
    assert store.counts()["rankings"] == store.counts()["events"] == 0
    now = T0 + 20 * DAY
    ts = [now - a for a in ages]
    store.log_rankings([ranking(f"r-{i}", f"s-{i % 3}", t) for i, t in enumerate(ts)])
    events = [click(f"e-{i}", f"r-{i % max(len(ts), 1)}", ts[i % len(ts)] + d if ts else now - d)
              for i, d in enumerate(delays)]
    events.append(click("e-orphan", "r-none", now - 4 * DAY))
    store.add_events(events)
    cutoff = now - cutoff_age
    out = store.prune(cutoff, batch=batch)
    kept_rankings = {f"r-{i}" for i, t in enumerate(ts) if t >= cutoff}
    logged = {f"r-{i}" for i in range(len(ts))}
    kept_events = {e.event_id for e in events
                   if e.received >= cutoff and (e.request_id in kept_rankings or e.request_id not in logged)}
    assert {r.request_id for r in store.iter_rankings()} == kept_rankings
    assert {e.event_id for e in store.iter_events()} == kept_events
    assert out.rankings == len(ts) - len(kept_rankings)
    assert out.events == len(events) - len(kept_events)


def test_forget_deletes_one_person_and_leaves_a_record_without_their_id(store, tmp_path):
    store.upsert_staff([("s-gone", {"role": "teacher"}), ("s-kept", {"role": "principal"})])
    store.log_rankings([ranking(f"r-{i}", "s-gone" if i % 2 else "s-kept", T0 + i) for i in range(10)])
    store.add_events([click(f"e-{i}", f"r-{i}", T0 + 100 + i) for i in range(10)])
    version = store.get_document(STAFF_DOC)[0]
    out = store.forget("s-gone", now=T0 + 1000, batch=2)
    assert (out.rankings, out.events, out.staff) == (5, 5, 1)
    assert {r.staff_id for r in store.iter_rankings()} == {"s-kept"}
    assert {e.request_id for e in store.iter_events()} == {f"r-{i}" for i in range(0, 10, 2)}
    assert [s for s, _ in store.all_staff()] == ["s-kept"]
    assert store.get_document(STAFF_DOC)[0] == version + 1  # the workers reload the directory
    [record] = store.erasures_after(0)
    assert record.ts == T0 + 1000 and "s-gone" not in record.key
    assert store.erasures().covers("s-gone", T0 + 999) and not store.erasures().covers("s-kept", T0)
    again = store.forget("s-gone", now=T0 + 2000)
    assert (again.rankings, again.events, again.staff) == (0, 0, 0)
    assert len(store.erasures_after(record.seq)) == 1

    export_training_set(store, tmp_path / "export")
    for name in ("impressions.jsonl", "staff.csv"):
        assert "s-gone" not in (tmp_path / "export" / name).read_text()


def test_export_skips_a_ranking_served_before_the_erasure_but_written_after(store):
    """A worker's ranking log may write a ranking a moment after the person was forgotten;
    exports leave it out, and a ranking served after the erasure is new data."""
    store.forget("s-1", now=T0)
    store.log_rankings([ranking("r-late", "s-1", T0 - 0.05), ranking("r-new", "s-1", T0 + 60)])
    assert {r["request_id"] for r in store.export_impressions()} == {"r-new"}


# -- the click history ---------------------------------------------------------------------
people = st.sampled_from(["s-1", "s-2", "s-3"])
banners = st.sampled_from(["b-1", "b-2", "b-3"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(people, banners, st.floats(0, 5 * DAY), st.booleans()), max_size=40), people)
def test_a_forgotten_person_leaves_the_history_as_if_never_added(rows, gone):
    """Forgetting equals never having added the person: their counters and their share of
    every banner's global views and clicks are gone."""
    cat = {"b-1": "info", "b-2": "survey", "b-3": "event"}

    def build(rows):
        h = RunningHistory(t_ref=T0)
        for staff, banner, dt, clicked in rows:
            h.add_impression(staff, banner, cat[banner], T0 + dt)
            if clicked:
                h.add_click(staff, banner, cat[banner], T0 + dt)
        return h

    h = build(rows)
    removed = h.forget(gone)
    assert removed == sum(r[0] == gone for r in rows)
    expected = build([r for r in rows if r[0] != gone])
    assert len(h) == len(expected) and gone not in h.people()
    ids = list(cat)
    for staff in ("s-1", "s-2", "s-3"):
        got = h.query_person(staff, ids, [cat[b] for b in ids], T0 + 6 * DAY)
        want = expected.query_person(staff, ids, [cat[b] for b in ids], T0 + 6 * DAY)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


# -- the service ---------------------------------------------------------------------------
def serving(tmp_path, extra: str = ""):
    cfg = config_from(write_config(tmp_path, extra=extra))
    reg = FakeRegistry(cfg.models)
    if not (cfg.models / "m1").exists():
        add_fake_model(cfg.models, "m1")
        reg.promote("m1", verify=False)
    return cfg, reg


def order(engine: RankingEngine, staff: str = "s-1") -> list[str]:
    return engine.rank(staff).result.banner_ids


def clicked_survey(engine: RankingEngine, n: int = 0) -> None:
    out = engine.rank("s-1")
    engine.record_events([ClickEvent(f"e-{n}", out.request_id, "b-survey", 0.0)])


def test_forget_reaches_another_worker_and_survives_a_restart(tmp_path):
    """Two engines on one store: a click on one changes the other's ranking; after a
    forget on the first, the second drops the person at its next sync (history and
    directory), and an engine started afterwards (from the same history file) does not
    bring them back."""
    history = tmp_path / "history.jsonl"
    write_impressions(history, [{"request_id": "h-1", "ts": "2026-01-05T09:00:00+09:00", "staff_id": "s-1",
                                 "banner_id": "b-event", "position": 1, "propensity": 1.0, "clicked": 1}])
    cfg, reg = serving(tmp_path, extra=f'history = "{history}"\nhistory_days = 3650')
    one, two = started_engine(cfg, reg), started_engine(cfg, reg)
    try:
        assert order(two) == ["b-pinned", "b-survey", "b-info", "b-policy", "b-event"]  # the history file's click
        clicked_survey(one)
        one.flush()
        two.sync()
        assert order(two)[-2:] == ["b-survey", "b-event"]
        assert "s-1" in two.directory.staff
        out = one.forget("s-1")  # two's rankings of s-1 are still in its queue: written late, on close
        assert (out.rankings, out.events, out.staff) == (1, 1, 1)
        assert order(one) == BASELINE
        two.sync()
        assert "s-1" not in two.directory.staff and "s-1" not in two.online.people()
        assert order(two) == BASELINE
    finally:
        one.close()
        two.close()
    again = started_engine(cfg, reg)
    try:
        assert "s-1" not in again.directory.staff
        rows = [r for r in again.store.export_impressions() if r["staff_id"] == "s-1"]
        assert len(rows) == 2 * cfg.slots  # the two rankings served after the forget, new data
        held = again.online.query_person("s-1", ["b-pinned", "b-event"], ["policy", "event"], time.time() + 1)
        assert held["ever_views_banner"].tolist() == [2.0, 2.0] and held["clicks_person"].tolist() == [0.0, 0.0]
        assert order(again) == BASELINE
    finally:
        again.close()


def test_the_staff_file_does_not_bring_back_a_forgotten_person(tmp_path):
    """When the store's directory is empty at start the staff file fills it: without the
    people forgotten."""
    cfg, reg = serving(tmp_path)
    engine = started_engine(cfg, reg)
    engine.forget("s-1")
    engine.forget("s-p")
    assert len(engine.directory.staff) == 0
    engine.close()
    again = started_engine(cfg, reg)
    try:
        assert len(again.directory.staff) == 0 and not again.store.all_staff()
        assert [s.staff_id for s in load_staff(cfg.staff).by_id.values()] == ["s-1", "s-p"]  # the file is untouched
    finally:
        again.close()


def test_admin_forget_endpoint_answers_counts_and_logs_no_staff_id(tmp_path, caplog):
    cfg, reg = serving(tmp_path)
    engine = RankingEngine(cfg, open_store(cfg.db), registry=reg)
    caplog.set_level("INFO")
    with TestClient(create_app(engine=engine)) as client:
        C, A = {"X-API-Key": CLIENT_KEY}, {"X-API-Key": ADMIN_KEY}
        out = client.post("/v1/rank", json={"staff_id": "s-1"}, headers=C).json()
        client.post("/v1/events", json={"events": [{"event_id": "e-1", "request_id": out["request_id"],
                                                    "banner_id": "b-survey"}]}, headers=C)
        assert client.post("/v1/admin/forget", json={"staff_id": "s-1"}, headers=C).status_code == 403
        bad = client.post("/v1/admin/forget", json={"staff_id": "s-\n1"}, headers=A)
        assert bad.status_code == 422 and bad.json()["message"].startswith("staff_id:")
        assert client.post("/v1/admin/forget", json={"staff_id": "s-1", "x": 1}, headers=A).status_code == 422
        r = client.post("/v1/admin/forget", json={"staff_id": "s-1"}, headers=A)
        assert r.status_code == 200 and r.json() == {"rankings": 1, "events": 1, "staff": 1}
        assert client.get("/readyz").json()["history"]["people"] == 0
        assert "/v1/admin/forget" in client.get("/openapi.json").json()["paths"]
    engine.close()
    assert "forgot s#" in caplog.text and "s-1" not in caplog.text


# -- retention in the service and on the command line --------------------------------------
def test_retention_days_must_leave_the_click_window_open(tmp_path):
    with pytest.raises(ConfigError, match="at least 3"):
        config_from(write_config(tmp_path, extra="retention_days = 2"))
    assert config_from(write_config(tmp_path, extra="retention_days = 30")).retention_days == 30.0
    assert config_from(write_config(tmp_path)).retention_days is None


def test_the_service_prunes_what_is_older_than_retention(tmp_path):
    cfg, reg = serving(tmp_path, extra="retention_days = 7")
    now = time.time()
    with open_store(cfg.db) as store:
        store.log_rankings([ranking("r-old", "s-1", now - 8 * DAY), ranking("r-new", "s-1", now - 6 * DAY)])
        store.add_events([click("e-old", "r-old", now - 8 * DAY + 60), click("e-new", "r-new", now - 6 * DAY + 60)])
    engine = started_engine(cfg, reg)
    try:
        assert engine.retention is not None and engine.retention.days == 7.0
        out = engine.retention.run_once()
        assert (out.rankings, out.events) == (1, 1)
        assert [r.request_id for r in engine.store.iter_rankings()] == ["r-new"]
        assert [e.event_id for e in engine.store.iter_events()] == ["e-new"]
    finally:
        engine.close()


def test_only_one_worker_of_a_host_prunes_at_a_time(tmp_path):
    import fcntl

    from service.retention import LOCK_FILE

    retention = Retention(f"sqlite:///{tmp_path / 'events.db'}", 7, tmp_path / "models")
    (tmp_path / "models").mkdir()
    with open(tmp_path / "models" / LOCK_FILE, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert retention.run_once() is None
    assert retention.run_once() is not None


def test_store_commands_print_counts_without_the_staff_id(tmp_path, capsys):
    config = write_config(tmp_path)
    cfg = config_from(config)
    now = time.time()
    with open_store(cfg.db) as store:
        store.upsert_staff([("s-secret-9", {"role": "teacher"})])
        store.log_rankings([ranking("r-1", "s-secret-9", now - 40 * DAY), ranking("r-2", "s-secret-9", now),
                            ranking("r-3", "s-other", now)])
        store.add_events([click("e-1", "r-1", now - 40 * DAY), click("e-2", "r-2", now)])
    assert cli_main(["store", "prune", "--config", str(config)]) == 2
    assert "retention_days" in capsys.readouterr().err
    assert cli_main(["store", "prune", "--config", str(config), "--older-than-days", "1"]) == 2
    assert cli_main(["store", "prune", "--config", str(config), "--older-than-days", "30"]) == 0
    assert "deleted 1 rankings and 1 click events" in capsys.readouterr().out
    assert cli_main(["store", "forget", "s-secret-9", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "deleted 1 rankings, 1 click events and 1 staff directory row(s)" in printed
    assert "s-secret-9" not in printed and "forgot s#" in printed
    assert cli_main(["store", "forget", "s-\t9", "--config", str(config)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with open_store(cfg.db) as store:
        assert [r.request_id for r in store.iter_rankings()] == ["r-3"] and not store.all_staff()


# -- two real workers ----------------------------------------------------------------------
def test_forget_through_the_admin_endpoint_reaches_both_workers_within_a_second(tmp_path):
    """``recommender serve --workers 2``: a person's click changes both workers' rankings;
    a second after POST /v1/admin/forget, neither worker holds them (its /readyz counts
    nobody in the click history and one staff member left), every ranking is the one of a
    person without history, the export holds only what was served after the forget, the
    logs never name them, and a restart does not bring them back."""
    import httpx

    from launcher import ServeProcess
    from training.registry import ModelRegistry

    from test_service_processes import worker_pids

    config = write_config(tmp_path, extra='model_loader = "service_support:load_model"\nretention_days = 30')
    (tmp_path / "staff.csv").write_text("staff_id,role,school_level,region\ns-forget-7,teacher,elementary,Suwon\n"
                                        "s-p,principal,high,Goyang\n", encoding="utf-8")
    add_fake_model(tmp_path / "models", "m1")
    ModelRegistry(tmp_path / "models").promote("m1", verify=False)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent)}
    C, A = {"X-API-Key": CLIENT_KEY}, {"X-API-Key": ADMIN_KEY}

    def each_connection(n: int, call) -> list:
        out = []
        for _ in range(n):  # a new connection each time: the kernel spreads them over the workers
            with httpx.Client(base_url=server.url, timeout=5) as http:
                out.append(call(http))
        return out

    def rank(http) -> tuple[str, list[str]]:
        body = http.post("/v1/rank", json={"staff_id": "s-forget-7"}, headers=C).json()
        return body["request_id"], [x["banner_id"] for x in body["ranking"]]

    server = ServeProcess(config, workers=2, extra_env=env, log_level="info")
    try:
        assert len(worker_pids(server)) == 2
        with httpx.Client(base_url=server.url, timeout=5) as http:
            rid, _ = rank(http)
            http.post("/v1/events", json={"events": [{"event_id": "e-1", "request_id": rid, "banner_id": "b-survey"}]},
                      headers=C)
        time.sleep(0.5)  # both workers follow the store every 0.05 s
        assert all(ranked[-1] == "b-survey" for _, ranked in each_connection(20, rank))  # clicked: last

        with httpx.Client(base_url=server.url, timeout=5) as http:
            r = http.post("/v1/admin/forget", json={"staff_id": "s-forget-7"}, headers=A)
        done = time.monotonic()
        assert r.status_code == 200 and r.json()["events"] == 1 and r.json()["staff"] == 1, r.text
        time.sleep(max(0.0, 1.0 - (time.monotonic() - done)))
        ready = each_connection(30, lambda http: http.get("/readyz").json())
        assert len({x["worker"] for x in ready}) == 2
        assert all(x["history"]["people"] == 0 and x["staff"] == 1 for x in ready), ready
        after = each_connection(20, rank)
        assert all(ranked == BASELINE for _, ranked in after)
    finally:
        logs = server.stop()
    assert "forgot s#" in logs and "s-forget-7" not in logs

    with open_store(config_from(config).db) as store:
        export_training_set(store, tmp_path / "export")
    log = load_impressions(tmp_path / "export" / "impressions.jsonl")
    theirs = {log.request_ids[r] for r, s in zip(log.request.tolist(), log.staff.tolist())
              if log.staff_ids[s] == "s-forget-7"}
    assert theirs == {rid for rid, _ in after}  # only the rankings served after the forget
    assert "s-forget-7" not in (tmp_path / "export" / "staff.csv").read_text()

    again = ServeProcess(config, workers=1, extra_env=env)
    try:
        with httpx.Client(base_url=again.url, timeout=5) as http:
            assert http.get("/readyz").json()["staff"] == 1
            assert rank(http)[1] == BASELINE
    finally:
        again.stop()


def test_rankings_a_worker_wrote_after_the_erasure_are_deleted_without_a_new_record(store):
    """A ranking served before the erasure but still queued in a worker's log reaches the
    store after it: the followers delete it (delete_rankings_of), and nothing newer."""
    store.log_rankings([ranking("r-old", "s-gone", T0), ranking("r-keep", "s-other", T0)])
    store.forget("s-gone", now=T0 + 100)
    store.log_rankings([ranking("r-late", "s-gone", T0 + 50), ranking("r-after", "s-gone", T0 + 200)])
    store.add_events([click("e-late", "r-late", T0 + 60)])
    records = store.erasures_after(0)
    assert store.delete_rankings_of("s-gone", T0 + 100) == (1, 1)
    assert store.erasures_after(0) == records
    assert {r.request_id for r in store.iter_rankings()} == {"r-keep", "r-after"}


def test_a_ranking_in_progress_when_its_person_is_forgotten_does_not_bring_them_back():
    from service.online import OnlineHistory

    online = OnlineHistory()
    online.add_ranking("s-1", "r-1", 100.0, [("b-1", "info")])
    online.forget(["s-1"], at=200.0)
    online.add_ranking("s-1", "r-2", 150.0, [("b-1", "info")])  # served before the erasure, added after it
    assert online.counts()["people"] == 0 and online.staff_of("r-2") is None
    online.add_ranking("s-1", "r-3", 250.0, [("b-1", "info")])  # they came back and were served again
    assert online.counts()["people"] == 1
