"""Explanations of a ranking: score parts that add up to the score (logistic and
gradient-boosted models), the place reasons and sentences, the route and the command."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.pipeline import history_from_logs
from recommender.candidates import select_candidates
from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.domain import Banner, DeliveryGoal
from recommender.explain import ExplainError, explain_request
from recommender.ranker import CandidateRows, Ranker
from recommender.store import open_store
from service.app import create_app
from service.engine import RankingEngine
from training.artifact import ModelArtifact
from training.registry import ModelRegistry

from service_support import ADMIN_KEY, CLIENT_KEY, FakeRegistry, add_fake_model, catalog, config_from, write_config

C = {"X-API-Key": CLIENT_KEY}
A = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def province(small_province):
    staff = load_staff(small_province / "staff.csv")
    cat = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=cat)
    return staff, cat, log


@pytest.fixture(scope="module")
def history(province, small_click_model):
    _, cat, log = province
    return history_from_logs([log], cat, small_click_model.encoder.config.half_life_days)


@pytest.fixture(scope="module")
def gbm_model(province):
    from training.fitting import TrainConfig, fit_click_model

    staff, cat, log = province
    return fit_click_model(staff, cat, log, kind="gbm", config=TrainConfig(gbm_iterations=25))


def _requests(province, seed: int, n: int = 4):
    """Requests of random staff members at random times of the province, over their
    eligible banners plus a banner the model never saw."""
    staff, cat, log = province
    rng = np.random.default_rng(seed)
    ids = list(staff.by_id)
    lo, hi = float(log.ts.min()), float(log.ts.max()) + 3600.0
    for _ in range(n):
        person = staff.get(ids[rng.integers(len(ids))])
        ts = float(rng.uniform(lo, hi))
        banners = select_candidates(cat, person.attributes, ts, None).banners + [Banner("b-never-seen", "survey")]
        yield person, ts, banners


def _check_sums(model, province, history, seed: int) -> None:
    for person, ts, banners in _requests(province, seed):
        single = CandidateRows.for_request(person.staff_id, person.attributes, ts, banners)
        parts = model.score_parts(single, history)
        total = np.array([sum(p.value for p in row) for row in parts])
        # the service's one-request path and the batch path give the same scores
        batch = CandidateRows(single.request, single.staff_id, single.attributes, single.banner, single.ts)
        for score in (model.score(single, history), model.score(batch, history)):
            assert np.max(np.abs(total - score)) <= 1e-9
        assert all(len({p.name for p in row}) == len(row) for row in parts)  # each part once


@pytest.mark.parametrize("seed", range(4))
def test_linear_parts_add_up_to_the_score(small_click_model, province, history, seed):
    _check_sums(small_click_model, province, history, seed)


@pytest.mark.parametrize("seed", range(2))
def test_tree_path_contributions_add_up_to_the_score(gbm_model, province, history, seed):
    _check_sums(gbm_model, province, history, seed)


def test_linear_parts_are_named_for_people(small_click_model, province, history):
    person, ts, banners = next(_requests(province, 0))
    rows = CandidateRows.for_request(person.staff_id, person.attributes, ts, banners)
    parts = small_click_model.score_parts(rows, history)[0]
    names = [p.name for p in parts]
    assert names[0] == "baseline" and parts[0].value != 0.0
    for name in ("role", "role x category", "your history with this banner", "popularity", "freshness"):
        assert name in names
    cross = parts[names.index("role x category")]
    assert person.attributes["role"] in cross.text and banners[0].category in cross.text


def test_a_model_kind_that_cannot_split_its_scores_is_refused_by_name(small_click_model, province, history):
    odd = ModelArtifact(small_click_model.encoder, small_click_model.estimator, "mystery", {"version": "v-odd"})
    person, ts, banners = next(_requests(province, 1))
    rows = CandidateRows.for_request(person.staff_id, person.attributes, ts, banners)
    with pytest.raises(ExplainError, match="v-odd.*kind mystery"):
        odd.score_parts(rows, history)


def test_place_reasons_pinning_exploration_targeting_and_no_model(small_click_model, history):
    banners = [b for b in catalog() if b.banner_id != "b-old"]
    profile = {"role": "principal", "school_level": "high", "region": "Goyang"}
    result, ex = explain_request(Ranker(small_click_model), "s-p", profile, 1.78e9, banners, history)
    by_id = {e.banner_id: e for e in ex}
    assert ex[0].banner_id == "b-pinned" and ex[0].decided_by == "pinned"
    assert "pinned by the operators" in ex[0].sentence
    heads = by_id["b-heads"]
    assert [r.kind for r in heads.reasons] == ["targeting"] and heads.decided_by == "score"
    assert "role principal" in heads.sentence
    for e in ex:
        assert abs(sum(p.value for p in e.parts) - e.score) <= 1e-9
        assert e.sentence.startswith(f"Place {e.position}: '")
        # every number in the sentence is one of the parts, as shown
        shown = {f"{p.value:+.2f}" for p in e.parts}
        assert set(re.findall(r"\(([+-]\d+\.\d\d)\)", e.sentence)) <= shown

    _, explored = explain_request(Ranker(small_click_model, epsilon=1.0), "s-p", profile, 1.78e9, banners, history)
    assert [e.decided_by for e in explored] == ["pinned"] + ["exploration"] * (len(explored) - 1)
    assert "random order" in explored[1].sentence and "explores 100% of requests" in explored[1].sentence
    assert explored[1].sentence.startswith("Place 2: '") and "— this request was explored" in explored[1].sentence

    _, fallback = explain_request(Ranker(None), "s-p", profile, 1.78e9, banners, history)
    assert all(e.parts == [] for e in fallback)
    assert [e.decided_by for e in fallback] == ["pinned"] + ["operators_order"] * (len(fallback) - 1)


# -- the route ---------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path, small_click_model):
    """The service with the real logistic model on arm A."""
    cfg = config_from(write_config(tmp_path))
    ModelArtifact(small_click_model.encoder, small_click_model.estimator, "logistic").save(
        cfg.models / "m-real", {"version": "m-real"})
    ModelRegistry(cfg.models).promote("m-real", "A")
    engine = RankingEngine(cfg, open_store(cfg.db))
    with TestClient(create_app(engine=engine)) as client:
        yield client, engine
    engine.close()


def test_explain_with_an_admin_key_gives_parts_that_add_up(served):
    client, engine = served
    r = client.post("/v1/rank", json={"staff_id": "s-1", "explain": True}, headers=A)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == "m-real" and out["ranking"]
    for item in out["ranking"]:
        e = item["explanation"]
        assert set(e) == {"sentence", "decided_by", "parts", "reasons"}
        assert abs(sum(p["value"] for p in e["parts"]) - item["score"]) <= 1e-9
        assert e["sentence"].startswith(f"Place {item['position']}: ")
    assert out["ranking"][0]["explanation"]["decided_by"] == "pinned"
    plain = client.post("/v1/rank", json={"staff_id": "s-1"}, headers=A).json()
    assert "explanation" not in plain["ranking"][0]
    assert [i["banner_id"] for i in plain["ranking"]] == [i["banner_id"] for i in out["ranking"]]


def _served_counts(client) -> tuple[float, float]:
    lines = client.get("/metrics").text.splitlines()
    total = lambda prefix: sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(prefix))  # noqa: E731
    return total("recommender_rankings_total{"), total("recommender_impressions_total{")


def test_an_explained_ranking_is_not_logged_nor_counted(served):
    client, engine = served
    before = _served_counts(client)
    impressions = len(engine.online)
    client.post("/v1/rank", json={"staff_id": "s-1", "explain": True}, headers=A)
    engine.flush()
    assert list(engine.store.iter_rankings()) == []
    assert len(engine.online) == impressions
    assert _served_counts(client) == before
    client.post("/v1/rank", json={"staff_id": "s-1"}, headers=A)  # a served one is, as before
    engine.flush()
    assert len(list(engine.store.iter_rankings())) == 1 and _served_counts(client) != before


def test_explain_with_a_client_key_is_403_naming_the_field(served):
    client, _ = served
    r = client.post("/v1/rank", json={"staff_id": "s-1", "explain": True}, headers=C)
    assert r.status_code == 403 and "'explain'" in r.json()["detail"]
    assert client.post("/v1/rank", json={"staff_id": "s-1", "explain": False}, headers=C).status_code == 200
    assert client.post("/v1/rank", json={"staff_id": "s-1", "explain": "yes"}, headers=A).status_code == 422


def test_explain_a_model_that_cannot_split_its_scores_is_409(tmp_path):
    cfg = config_from(write_config(tmp_path))
    reg = FakeRegistry(cfg.models)
    add_fake_model(cfg.models, "m-fake")
    reg.promote("m-fake", "A", verify=False)
    engine = RankingEngine(cfg, open_store(cfg.db), registry=reg)
    with TestClient(create_app(engine=engine)) as client:
        r = client.post("/v1/rank", json={"staff_id": "s-1", "explain": True}, headers=A)
    engine.close()
    assert r.status_code == 409 and "m-fake" in r.json()["detail"]


def test_openapi_documents_the_field_and_the_explanation(served):
    client, _ = served
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "explain" in schemas["RankRequest"]["properties"]
    assert "explanation" in schemas["RankedItemOut"]["properties"]
    assert {"403", "409"} <= set(doc["paths"]["/v1/rank"]["post"]["responses"])
    examples = schemas["RankResponse"]["examples"]
    assert any("explanation" in item for ex in examples for item in ex["ranking"])


# -- the command -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_folder(small_click_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "m-cli"
    ModelArtifact(small_click_model.encoder, small_click_model.estimator, "logistic").save(folder, {"version": "m-cli"})
    return folder


def _cli(small_province, model_folder, *extra):
    from cli.main import main

    return main(["explain", "--model", str(model_folder), "--staff", str(small_province / "staff.csv"),
                 "--banners", str(small_province / "banners.json"),
                 "--history", str(small_province / "impressions.jsonl"), *extra])


def test_cli_explains_as_text_and_json(small_province, model_folder, province, capsys):
    staff, _, _ = province
    staff_id = next(iter(staff.by_id))
    assert _cli(small_province, model_folder, "--staff-id", staff_id, "--slots", "3") == 0
    text = capsys.readouterr().out
    assert "place 1" in text and "Place 1: '" in text and "baseline" in text
    assert _cli(small_province, model_folder, "--staff-id", staff_id, "--json",
                "--at", "2026-03-04T09:00:00+09:00") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_version"] == "m-cli" and out["at"].startswith("2026-03-04T00:00:00")
    assert 0 < len(out["ranking"]) == out["candidates"]
    for item in out["ranking"]:
        assert abs(sum(p["value"] for p in item["explanation"]["parts"]) - item["score"]) <= 1e-9


def test_cli_unknown_staff_id_is_a_one_line_error(small_province, model_folder, capsys):
    assert _cli(small_province, model_folder, "--staff-id", "s-nobody") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s-nobody" in err and err.startswith("error: ")


def test_without_a_model_an_explored_request_says_exploration_decided(history):
    banners = [b for b in catalog() if b.banner_id != "b-old"]
    _, ex = explain_request(Ranker(None, epsilon=1.0), "s-1", {"role": "teacher"}, 1.78e9, banners, history)
    assert [e.decided_by for e in ex] == ["pinned"] + ["exploration"] * (len(ex) - 1)
    assert all("no model is loaded" in e.sentence and "operators' order" not in e.sentence for e in ex[1:])


def test_cli_leaves_out_capped_banners_and_says_when_a_goal_placed_one(small_province, model_folder, province, tmp_path,
                                                                       capsys):
    """As the service ranks: a banner whose cap the person reached (from --history) is left
    out with the reason; a banner behind its delivery goal is paced up and says so."""
    from dataclasses import replace

    from recommender.contracts import load_banners, load_impressions, write_banners

    catalog_ = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog_)
    last = int(np.argmax(log.ts))
    staff_id = log.staff_ids[log.staff[last]]
    seen = {log.banner_ids[log.banner[i]] for i in np.flatnonzero(log.staff == log.staff[last])}
    assert _cli(small_province, model_folder, "--staff-id", staff_id, "--json",
                "--default-cap", '{"unclicked": {"impressions": 1, "days": 30}}') == 0
    out = json.loads(capsys.readouterr().out)
    left = {x["banner_id"] for x in out["left_out"]}
    assert left and left <= seen and not left & {x["banner_id"] for x in out["ranking"]}
    assert all("without a click" in x["text"] for x in out["left_out"])

    assert _cli(small_province, model_folder, "--staff-id", staff_id, "--json") == 0
    plain = json.loads(capsys.readouterr().out)["ranking"]
    unpinned = [x for x in plain if x["explanation"]["decided_by"] == "score"]
    last_id = unpinned[-1]["banner_id"]  # the lowest score: paced up by a goal far behind its plan
    goal = DeliveryGoal("clicks", 10**6, float(log.ts.max()) + 86400.0)
    banners = [replace(b, start=b.start or 0.0, end=None, goal=goal) if b.banner_id == last_id else b
               for b in catalog_.known]
    write_banners(tmp_path / "banners.json", banners)
    from cli.main import main

    assert main(["explain", "--model", str(model_folder), "--staff", str(small_province / "staff.csv"),
                 "--banners", str(tmp_path / "banners.json"), "--history", str(small_province / "impressions.jsonl"),
                 "--staff-id", staff_id, "--json"]) == 0
    paced = json.loads(capsys.readouterr().out)["ranking"]
    first_free = next(x for x in paced if x["explanation"]["decided_by"] != "pinned")
    assert first_free["banner_id"] == last_id and first_free["explanation"]["decided_by"] == "goal"


def test_boltzmann_exploration_names_the_moved_banner_and_the_ones_it_shifted(small_click_model, history):
    from recommender.exploration import Exploration

    banners = [b for b in catalog() if b.banner_id != "b-old"]
    profile = {"role": "principal", "school_level": "high", "region": "Goyang"}
    greedy, _ = explain_request(Ranker(small_click_model), "s-p", profile, 1.78e9, banners, history)
    seen = set()
    for seed in range(30):
        ranker = Ranker(small_click_model, rng=np.random.default_rng(seed), exploration=Exploration("boltzmann", 1.0,
                                                                                                     1.0, 3))
        result, ex = explain_request(ranker, "s-p", profile, 1.78e9, banners, history)
        assert result.explored and result.moved is not None
        g, p = result.moved
        assert ex[0].decided_by == "pinned"
        for t, e in enumerate(ex[1:], 1):
            at_greedy = e.banner_id == greedy.banner_ids[t]
            kinds = [r.kind for r in e.reasons if r.decisive]
            if t == p and g != p:
                seen.add("moved")
                assert e.decided_by == "exploration" and f"instead of place {g + 1}" in e.sentence
                assert "drawn to be tried higher up" in e.sentence
            elif at_greedy:
                assert "exploration" not in kinds and e.decided_by in ("score", "goal")
            else:
                seen.add("shifted")
                assert e.decided_by == "exploration" and "one place" in e.sentence and "its score gives" in e.sentence
    assert seen == {"moved", "shifted"}


def test_boltzmann_without_a_model_keeps_the_operators_reason_off_the_move(history):
    from recommender.exploration import Exploration

    banners = [b for b in catalog() if b.banner_id != "b-old"]
    ranker = Ranker(None, rng=np.random.default_rng(0), exploration=Exploration("boltzmann", 1.0, 1.0, 1))
    result, ex = explain_request(ranker, "s-1", {"role": "teacher"}, 1.78e9, banners, history)
    g, p = result.moved
    for t, e in enumerate(ex[1:], 1):
        if min(g, p) <= t <= max(g, p) and g != p:
            assert e.decided_by == "exploration"
        else:
            assert e.decided_by == "operators_order"
