"""Outcomes after a click: the contracts, the events API, the store and its export, what
the catalog says follows a completion (hide, down-weight), outcome goals, objectives."""
from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.completion import CompletionLedger, counts_outcome
from recommender.contracts import load_banners, load_impressions, write_impressions
from recommender.contracts.banners import banner_from_dict, banner_to_dict
from recommender.domain import Banner, OutcomeRule
from recommender.errors import ContractError, FieldError
from recommender.store import ClickEvent, RankingRecord, open_store
from recommender.timeutil import format_ts
from training.objective import Objective

from service_support import ADMIN_KEY, CLIENT_KEY, make_client

C, A = {"X-API-Key": CLIENT_KEY}, {"X-API-Key": ADMIN_KEY}
DAY = 86400.0


# ---- contracts ----------------------------------------------------------------------------
def test_a_banner_outcome_rule_round_trips_and_bad_rules_name_their_field():
    obj = {"banner_id": "b-s", "category": "survey",
           "outcome": {"type": "complete", "value": 2.5, "after_completion": "downweight", "downweight": 0.2}}
    b = banner_from_dict(obj)
    assert b.outcome == OutcomeRule("complete", 2.5, "downweight", 0.2)
    assert banner_from_dict(banner_to_dict(b)) == b
    assert banner_from_dict({"banner_id": "x", "category": "survey", "outcome": {}}).outcome == OutcomeRule()
    plain = banner_from_dict({"banner_id": "x", "category": "info"})
    assert plain.outcome is None and "outcome" not in banner_to_dict(plain)  # files without rules stay as they were
    for bad, field in [({"type": "read"}, "outcome.type"), ({"value": 0}, "outcome.value"),
                       ({"value": True}, "outcome.value"), ({"after_completion": "forget"}, "outcome.after_completion"),
                       ({"after_completion": "downweight", "downweight": 1.0}, "outcome.downweight"),
                       ({"downweight": 0.5}, "outcome.downweight"), ({"extra": 1}, "outcome.extra")]:
        with pytest.raises(FieldError) as e:
            banner_from_dict({**obj, "outcome": bad})
        assert e.value.field == field, bad


def _row(**kw):
    return {"request_id": "r1", "ts": "2026-03-02T08:00:00+09:00", "staff_id": "s1", "banner_id": "b1", "position": 1,
            "propensity": 0.5, "clicked": 1, **kw}


def test_impressions_carry_an_optional_outcome_and_old_files_load_as_before(tmp_path):
    old = tmp_path / "old.jsonl"
    write_impressions(old, [_row(), _row(banner_id="b2", position=2, clicked=0)])
    log = load_impressions(old)
    assert log.outcome.tolist() == [0.0, 0.0] and not log.has_outcomes
    assert all("outcome" not in r for r in log.iter_rows())  # written back without the field
    new = tmp_path / "new.jsonl"
    write_impressions(new, [_row(outcome=0.75), _row(banner_id="b2", position=2, clicked=0, outcome=None)])
    log = load_impressions(new)
    assert log.outcome.tolist() == [0.75, 0.0] and log.has_outcomes
    assert log.subset(np.array([0])).outcome.tolist() == [0.75]
    assert type(log).concat([log, load_impressions(old)]).outcome.tolist() == [0.75, 0.0, 0.0, 0.0]
    csv = tmp_path / "log.csv"
    csv.write_text("request_id,ts,staff_id,banner_id,position,propensity,clicked,outcome\n"
                   "r1,2026-03-02T08:00:00+09:00,s1,b1,1,0.5,1,1\nr1,2026-03-02T08:00:00+09:00,s1,b2,2,0.5,0,\n")
    assert load_impressions(csv).outcome.tolist() == [1.0, 0.0]
    for bad in (1.5, -0.1, "1", True):
        write_impressions(new, [_row(outcome=bad)])
        with pytest.raises(ContractError) as e:
            load_impressions(new)
        assert e.value.errors[0].field == "outcome" and e.value.errors[0].line == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1), st.sampled_from(["b1", "b2", "b3"])), min_size=1, max_size=30),
       st.floats(0, 5), st.floats(0, 5))
def test_an_objective_rewards_each_row_within_its_bound(tmp_path_factory, rows, w_click, w_outcome):
    """r = w_click x clicked + w_outcome x worth x outcome lies in [0, bound], and the
    labels r / bound in [0, 1]; the click objective's labels are the clicks."""
    if w_click == 0 and w_outcome == 0:
        return
    path = tmp_path_factory.mktemp("obj") / "log.jsonl"
    write_impressions(path, [_row(request_id=f"r{i}", banner_id=b, clicked=int(c), outcome=o)
                             for i, (c, o, b) in enumerate(rows)])
    log = load_impressions(path)
    from recommender.domain import Catalog

    catalog = Catalog([Banner("b1", "survey", outcome=OutcomeRule(value=3.0)), Banner("b2", "event")])
    obj = Objective(w_click, w_outcome)
    r, y = obj.rewards(log, catalog), obj.labels(log, catalog)
    assert np.all(r >= 0) and np.all(r <= obj.bound(catalog) + 1e-9) and np.all((0 <= y) & (y <= 1 + 1e-12))
    worth = np.array([3.0 if b == "b1" else 1.0 for _, _, b in rows])
    assert np.allclose(r, w_click * log.clicked + w_outcome * worth * log.outcome)
    assert np.array_equal(Objective().labels(log, catalog), log.clicked.astype(float))


def test_objectives_parse_and_say_what_they_count():
    assert Objective.parse("clicks") == Objective() and Objective.parse("outcomes") == Objective(0, 1)
    o = Objective.parse("clicks=1, outcomes=4")
    assert (o.clicks, o.outcomes, o.name, o.metric(3)) == (1, 4, "clicks=1,outcomes=4", "reward@3")
    assert Objective.parse("outcomes").metric(3) == "outcomes@3" and Objective().metric(3) == "clicks@3"
    assert Objective.from_dict(o.to_dict()) == o
    for bad in ("views", "clicks=x", "clicks=0", "clicks=-1,outcomes=1"):
        with pytest.raises(ValueError):
            Objective.parse(bad)


def test_which_outcome_counts_for_a_banner():
    survey = Banner("s", "survey", outcome=OutcomeRule("complete"))
    assert counts_outcome(survey, "complete") and not counts_outcome(survey, "convert")
    assert counts_outcome(Banner("x", "info"), "convert") and counts_outcome(None, "complete")
    assert not counts_outcome(None, "click")


def test_a_completion_counts_from_its_impression_on_and_the_earliest_is_kept():
    ledger = CompletionLedger()
    ledger.add("p", "s", 100.0)
    ledger.add("p", "s", 50.0)
    assert not ledger.completed("p", "s", 50.0) and ledger.completed("p", "s", 50.5)
    banners = [Banner("s", "survey", outcome=OutcomeRule(after_completion="hide")),
               Banner("e", "event", outcome=OutcomeRule("convert", after_completion="downweight", downweight=0.25))]
    ledger.add("p", "e", 10.0)
    assert ledger.hidden("p", banners, 200.0) == {"s"} and ledger.hidden("q", banners, 200.0) == set()
    assert ledger.penalties("p", banners, 200.0).tolist() == [0.0, pytest.approx(np.log(0.25))]
    assert ledger.penalties("p", banners, 5.0) is None or not ledger.penalties("p", banners, 5.0).any()


# ---- the store ----------------------------------------------------------------------------
def test_the_store_keeps_outcome_values_and_the_export_joins_them(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    from recommender.store import CATALOG_DOC

    store.put_document(CATALOG_DOC, json.dumps([banner_to_dict(b) for b in [
        Banner("b-s", "survey", outcome=OutcomeRule("complete")), Banner("b-e", "event"), Banner("b-i", "info")]]))
    store.log_rankings([RankingRecord("r1", 1.7e9, "p", "A", "m", False, 2,
                                      [("b-s", 1, 0.0, 0.5), ("b-e", 2, 0.0, 0.5), ("b-i", 3, 0.0, 0.5)], ["b-s", "b-e", "b-i"])])
    out = store.add_events([ClickEvent("c1", "r1", "b-s", 1.7e9 + 1), ClickEvent("o1", "r1", "b-s", 1.7e9 + 2, "complete", value=0.5),
                            ClickEvent("o2", "r1", "b-s", 1.7e9 + 3, "complete", value=1.0),
                            ClickEvent("o3", "r1", "b-s", 1.7e9 + 3, "convert", value=1.0),  # not b-s's outcome
                            ClickEvent("o4", "r1", "b-e", 1.7e9 + 4, "convert", value=0.25),  # no rule: any type counts
                            ClickEvent("o5", "r1", "b-i", 1.7e9 + 4, "complete")])  # not shown: flagged
    assert out.flagged == {"o5": "not_shown"}
    assert store.add_events([ClickEvent("o1", "r1", "b-s", 1.7e9 + 2, "complete", value=0.5)]).duplicates == ["o1"]
    stored = {e.event_id: e for e in store.iter_events()}
    assert stored["o1"].value == 0.5 and stored["c1"].value is None and stored["o1"].is_outcome
    rows = list(store.export_impressions())
    assert [(r["banner_id"], r["clicked"], r.get("outcome")) for r in rows] == [("b-s", 1, 1.0), ("b-e", 0, 0.25)]
    assert store.shown_of("r1") == ["b-s", "b-e"] and store.shown_of("nope") is None
    store.close()


def test_a_store_made_before_outcomes_gets_the_value_column(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, "
                     "type TEXT NOT NULL, request_id TEXT NOT NULL, banner_id TEXT NOT NULL, ts REAL NOT NULL, "
                     "received REAL NOT NULL, status TEXT NOT NULL, writer TEXT NOT NULL DEFAULT '');"
                     "INSERT INTO events (event_id, type, request_id, banner_id, ts, received, status) "
                     "VALUES ('old', 'click', 'r', 'b', 1, 1, 'unknown_request');")
    db.commit()
    db.close()
    with open_store(str(path)) as store:
        store.add_events([ClickEvent("new", "r", "b", 2.0, "complete", value=0.5)])
        assert {e.event_id: e.value for e in store.iter_events()} == {"old": None, "new": 0.5}


# ---- the service --------------------------------------------------------------------------
def _rank(client, staff_id, **kw):
    r = client.post("/v1/rank", json={"staff_id": staff_id, **kw}, headers=C)
    assert r.status_code == 200, r.text
    return r.json()


def _post(client, *events):
    return client.post("/v1/events", json={"events": list(events)}, headers=C)


def _with_rule(client, banner_id, **rule):
    banners = client.get("/v1/banners", headers=A).json()
    for b in banners:
        if b["banner_id"] == banner_id:
            b["outcome"] = rule
    assert client.put("/v1/banners", json=banners, headers=A).status_code == 200


def test_outcome_events_are_checked_stored_once_and_exported(tmp_path):
    client, engine = make_client(tmp_path, extra="slots = 2")
    with client:
        body = _rank(client, "s-1")
        shown = [x["banner_id"] for x in body["ranking"][:2]]
        rid = body["request_id"]
        first = {"event_id": "c", "request_id": rid, "banner_id": shown[1]}
        done = {"event_id": "o", "type": "complete", "request_id": rid, "banner_id": shown[1], "value": 0.8}
        r = _post(client, first, done)
        assert r.status_code == 200 and r.json()["stored"] == 2
        assert _post(client, done).json()["duplicate_ids"] == ["o"]
        for bad, field in [({**done, "event_id": "x", "value": 1.5}, "value"), ({**done, "event_id": "x", "value": "1"}, "value"),
                           ({**first, "event_id": "x", "value": 1}, None), ({**done, "event_id": "x", "type": "read"}, "type")]:
            r = _post(client, bad)
            assert r.status_code == 422, bad
            if field:
                assert r.json()["detail"][0]["loc"][-1] == field
        default = {"event_id": "o2", "type": "convert", "request_id": rid, "banner_id": shown[0]}
        assert _post(client, default).json()["stored"] == 1
        assert 'recommender_outcomes_total{arm="A",type="complete"} 1.0' in client.get("/metrics").text
    engine.close()
    with open_store(engine.config.db) as store:
        rows = {r["banner_id"]: r for r in store.export_impressions()}
    assert rows[shown[1]]["clicked"] == 1 and rows[shown[1]]["outcome"] == 0.8
    assert rows[shown[0]]["clicked"] == 0 and rows[shown[0]]["outcome"] == 1.0  # the default value: in full


def test_a_completed_survey_is_not_shown_again_when_the_catalog_hides_it(tmp_path):
    client, engine = make_client(tmp_path)
    with client:
        _with_rule(client, "b-survey", type="complete", after_completion="hide")
        body = _rank(client, "s-1")
        assert body["ranking"][1]["banner_id"] == "b-survey"  # the model's best, after the pinned one
        rid = body["request_id"]
        # a click alone, or an outcome of another type, does not complete it
        _post(client, {"event_id": "c", "request_id": rid, "banner_id": "b-survey"},
              {"event_id": "v", "type": "convert", "request_id": rid, "banner_id": "b-survey"})
        time.sleep(0.01)
        assert "b-survey" in [x["banner_id"] for x in _rank(client, "s-1")["ranking"]]
        _post(client, {"event_id": "o", "type": "complete", "request_id": rid, "banner_id": "b-survey"})
        time.sleep(0.01)
        assert "b-survey" not in [x["banner_id"] for x in _rank(client, "s-1")["ranking"]]
        assert "b-survey" in [x["banner_id"] for x in _rank(client, "s-p")["ranking"]]  # someone else still sees it
    engine.close()
    # a worker started later knows it from the store
    from service.engine import RankingEngine
    from service_support import FakeRegistry

    again = RankingEngine(engine.config, open_store(engine.config.db), registry=FakeRegistry(engine.config.models))
    again.start(background=False)
    assert "b-survey" not in again.rank("s-1").result.banner_ids
    assert "b-survey" in again.rank("s-p").result.banner_ids
    again.close()


def test_an_explained_ranking_names_what_a_completion_left_out(tmp_path):
    client, engine = make_client(tmp_path, promote=None)  # the operators' order: explainable
    with client:
        _with_rule(client, "b-info", type="complete", after_completion="hide")
        body = _rank(client, "s-1")
        assert "b-info" in [x["banner_id"] for x in body["ranking"][:3]]
        _post(client, {"event_id": "o", "type": "complete", "request_id": body["request_id"], "banner_id": "b-info"})
        time.sleep(0.01)
        r = client.post("/v1/rank", json={"staff_id": "s-1", "explain": True}, headers=A)
        assert r.status_code == 200, r.text
        assert [(x["banner_id"], x["reason"]) for x in r.json()["left_out"]] == [("b-info", "completed")]
    engine.close()


def test_a_completed_banner_the_catalog_downweights_moves_down(tmp_path):
    client, engine = make_client(tmp_path)
    with client:
        _with_rule(client, "b-survey", type="complete", after_completion="downweight", downweight=0.01)
        body = _rank(client, "s-1")
        order = [x["banner_id"] for x in body["ranking"]]
        assert order[1] == "b-survey"
        _post(client, {"event_id": "o", "type": "complete", "request_id": body["request_id"], "banner_id": "b-survey"})
        time.sleep(0.01)
        after = _rank(client, "s-1")
        # the fake model scores it 3; its odds times 0.01 (3 + log 0.01 = -1.6) put it below policy (0.5)
        ranked = [x["banner_id"] for x in after["ranking"]]
        assert ranked.index("b-survey") > ranked.index("b-policy")
        survey = next(x for x in after["ranking"] if x["banner_id"] == "b-survey")
        assert survey["score"] == pytest.approx(3.0)  # the answered score is the model's own
    engine.close()


def test_a_goal_on_outcomes_is_paced_until_met(tmp_path):
    client, engine = make_client(tmp_path, extra="slots = 1")
    with client:
        banners = [b for b in client.get("/v1/banners", headers=A).json() if b["banner_id"] != "b-pinned"]
        assert client.put("/v1/banners", json=banners, headers=A).status_code == 200

        def top(staff_id):
            body = _rank(client, staff_id)
            return body["ranking"][0]["banner_id"], body["request_id"]

        assert top("s-2")[0] == "b-survey"
        now = time.time()
        policy = next(b for b in banners if b["banner_id"] == "b-policy")
        policy.update(start=format_ts(now - 10 * DAY), goal={"metric": "outcomes", "target": 2, "by": format_ts(now + DAY)},
                      outcome={"type": "convert"})
        assert client.put("/v1/banners", json=banners, headers=A).status_code == 200
        for i, person in enumerate(("s-3", "s-4")):
            banner, rid = top(person)
            assert banner == "b-policy"  # behind its plan: paced to the top
            assert top(person)[0] == "b-policy"  # no outcome yet: still paced for them
            _post(client, {"event_id": f"o{i}", "type": "convert", "request_id": rid, "banner_id": "b-policy"})
            time.sleep(0.01)
            assert top(person)[0] == "b-survey"  # had its outcome: the boost is for others
        goal = client.get("/v1/goals", headers=A).json()["goals"][0]
        assert (goal["metric"], goal["delivered"], goal["met"], goal["boost"]) == ("outcomes", 2, True, 0.0)
        assert top("s-5")[0] == "b-survey"  # met: the scores decide again
    engine.close()
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cli.main", "goals", "--config", str(engine.config.source), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["goals"][0]["delivered"] == 2  # the store agrees


# ---- offline evaluation ---------------------------------------------------------------------
def test_target_policies_leave_out_what_a_person_completed_where_the_catalog_hides_it(tmp_path):
    from recommender.domain import Catalog, Staff, StaffDirectory
    from training.ope.data import build_bandit
    from training.ope.policies import popularity_policy

    catalog = Catalog([Banner("s", "survey", outcome=OutcomeRule(after_completion="hide")), Banner("i", "info"),
                       Banner("e", "event")])
    rows = []
    for i, (t, staff, shown, outcome) in enumerate([(0, "p", "s", 1), (10, "p", "i", 0), (20, "q", "s", 0), (30, "p", "e", 0)]):
        rows.append(_row(request_id=f"r{i}", ts=format_ts(1.7e9 + t), staff_id=staff, banner_id=shown, position=1,
                         propensity=1 / 3, clicked=outcome, outcome=outcome))
    path = tmp_path / "log.jsonl"
    write_impressions(path, rows)
    log = load_impressions(path, catalog=catalog)
    bandit = build_bandit(log, catalog, StaffDirectory([Staff("p", {}), Staff("q", {})]), 1, objective=Objective(0, 1))
    hidden = {(bandit.request_ids[r], catalog.banners[b].banner_id)
              for r, b, c in zip(bandit.cand_request, bandit.cand_banner, bandit.capped) if c}
    assert hidden == {("r1", "s"), ("r3", "s")}  # p's requests after the completion; not q's, not r0's own
    assert bandit.reward[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    pol = popularity_policy(bandit)
    assert not pol.pi[bandit.capped].any()
