"""The Personalizer adapter, called with the official client library (azure-ai-personalizer)
against a real server (uvicorn on a free loopback port): rank, reward, activate, and their
multi-slot forms work unchanged, and reach the engine's history, store and export."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from azure.ai.personalizer import PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from recommender.contracts import write_banners
from recommender.store import open_store
from service.personalizer import PersonalizerError, context_person
from training.registry import ModelRegistry

from launcher import ServeProcess
from service_support import CLIENT_KEY, add_fake_model, catalog, config_text

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("personalizer")
    write_banners(tmp / "banners.json", catalog())
    (tmp / "staff.csv").write_text("staff_id,role,school_level,region\ns-1,teacher,elementary,Suwon\n", encoding="utf-8")
    add_fake_model(tmp / "models", "m1")  # b-survey 3, b-event 2, b-info 1, b-policy 0.5; -10 once clicked
    ModelRegistry(tmp / "models").promote("m1", verify=False)
    config = tmp / "service.toml"
    config.write_text(config_text({"db": "events.db", "models": "models", "banners": "banners.json", "staff": "staff.csv",
                                   "slots": 3, "seed": 1, "log_salt": "p", "model_loader": "service_support:load_model"},
                                  epsilon=0.0))
    proc = ServeProcess(config, extra_env={"PYTHONPATH": str(TESTS), "NO_PROXY": "*"})
    yield proc, tmp
    proc.stop()


def client(proc, key: str = CLIENT_KEY) -> PersonalizerClient:
    return PersonalizerClient(proc.url, AzureKeyCredential(key), retry_total=0)


ACTIONS = [{"id": b, "features": [{"kind": b.split("-")[1]}]} for b in ("b-policy", "b-info", "b-survey", "b-event", "b-pinned")]


def test_rank_and_reward_with_the_client_library(server, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "*")
    proc, tmp = server
    with client(proc) as c:
        answer = c.rank({"contextFeatures": [{"staff_id": "s-1"}, {"user": {"role": "teacher"}}], "actions": ACTIONS,
                         "excludedActions": ["b-pinned", "b-info"], "eventId": "evt-1"})
        assert answer["eventId"] == "evt-1"
        assert answer["rewardActionId"] == "b-survey"  # the model's best of the candidates left
        assert [a["id"] for a in answer["ranking"]] == ["b-survey", "b-event", "b-policy"]
        assert answer["ranking"][0]["probability"] == pytest.approx(1.0)  # epsilon 0: the greedy order for sure
        assert c.reward("evt-1", {"value": 1.0}) is None
        assert c.reward("evt-1", {"value": 1.0}) is None  # a retry: stored once
        assert c.activate("evt-1") is None
        # the reward is a click on the rewarded action: the model's history sees it at once
        again = c.rank({"contextFeatures": [{"staff_id": "s-1"}], "actions": ACTIONS, "excludedActions": ["b-pinned"]})
        assert again["rewardActionId"] == "b-event" and again["eventId"] not in ("", "evt-1")
        assert c.reward(again["eventId"], {"value": 0.0}) is None  # no engagement: nothing stored
        with pytest.raises(HttpResponseError) as e:
            c.rank({"actions": ACTIONS, "eventId": "evt-1"})
        assert e.value.status_code == 409  # an event id is used once
        with pytest.raises(HttpResponseError) as e:
            c.reward("no-such-event", {"value": 1.0})
        assert e.value.status_code == 404
        with pytest.raises(HttpResponseError) as e:
            c.reward("evt-1", {"value": 2.0})
        assert e.value.status_code == 422
    with client(proc, "wrong-key") as c, pytest.raises(ClientAuthenticationError):
        c.rank({"actions": ACTIONS})


def test_multi_slot_rank_and_reward_with_the_client_library(server, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "*")
    proc, tmp = server
    with client(proc) as c:
        answer = c.rank_multi_slot({
            "contextFeatures": [{"staffId": "s-2", "role": "principal"}], "actions": ACTIONS, "eventId": "multi-1",
            "slots": [{"id": "Main", "baselineAction": "b-policy", "excludedActions": ["b-pinned"]},
                      {"id": "Side", "baselineAction": "b-event"}]})
        assert answer["eventId"] == "multi-1"
        assert [(s["id"], s["rewardActionId"]) for s in answer["slots"]] == [("Main", "b-survey"), ("Side", "b-event")]
        assert c.reward_multi_slot("multi-1", {"reward": [{"slotId": "Side", "value": 0.7}]}) is None
        assert c.activate_multi_slot("multi-1") is None
        with pytest.raises(HttpResponseError) as e:
            c.reward_multi_slot("multi-1", {"reward": [{"slotId": "Footer", "value": 1.0}]})
        assert e.value.status_code == 400
    # the REST API's versioned path, with the same key header
    r = httpx.post(f"{proc.url}/personalizer/v1.0/rank", headers={"Ocp-Apim-Subscription-Key": CLIENT_KEY},
                   json={"contextFeatures": [{"staff_id": "s-3"}], "actions": ACTIONS[:2]})
    assert r.status_code == 201 and r.json()["rewardActionId"] in ("b-policy", "b-info")
    # what the adapter served and was rewarded for is in the store, and exports as impressions
    with open_store(str(tmp / "events.db")) as store:
        rows = {(r["request_id"], r["banner_id"]): r for r in store.export_impressions()}
    assert rows[("evt-1", "b-survey")]["clicked"] == 1 and ("evt-1", "b-event") not in rows  # one slot shown
    assert rows[("multi-1", "b-event")]["clicked"] == 1 and rows[("multi-1", "b-event")]["position"] == 2
    assert rows[("multi-1", "b-survey")]["clicked"] == 0


def test_context_features_name_the_staff_member_and_their_profile():
    assert context_person([{"staff_id": "s-1"}, {"user": {"role": "teacher", "years": 3}}, {"remote": True}]) == \
        ("s-1", {"role": "teacher", "years": "3", "remote": "true"})
    assert context_person([{"region": "Suwon"}]) == (None, {"region": "Suwon"})
    with pytest.raises(PersonalizerError):
        context_person([{"tags": ["a", "b"]}])
