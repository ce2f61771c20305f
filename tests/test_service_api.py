"""The HTTP API through FastAPI's TestClient (httpx), with fake models in a real registry."""
from __future__ import annotations

import json
import time

import pytest

from recommender.store import open_store

from service_support import ADMIN_KEY, CLIENT_KEY

C = {"X-API-Key": CLIENT_KEY}
A = {"X-API-Key": ADMIN_KEY}


def rank(client, **body):
    body.setdefault("staff_id", "s-1")
    r = client.post("/v1/rank", json=body, headers=C)
    assert r.status_code == 200, r.text
    return r.json()


def test_rank_orders_by_model_with_pinned_first(api):
    client, _ = api
    out = rank(client)
    ids = [i["banner_id"] for i in out["ranking"]]
    # b-pinned first; b-heads is for principals; b-old's window is over
    assert ids == ["b-pinned", "b-survey", "b-event", "b-info", "b-policy"]
    assert [i["position"] for i in out["ranking"]] == [1, 2, 3, 4, 5]
    assert out["model_version"] == "m1" and out["arm"] == "A" and out["explored"] is False
    assert all(i["propensity"] == 1.0 for i in out["ranking"])  # epsilon 0 in this config
    assert len(out["request_id"]) >= 16


def test_request_ids_are_unique_and_grow_with_time(api):
    """The ranking log's index relies on it: ids sort in the order the rankings were made
    (to the millisecond), and stay unique within one millisecond."""
    _, engine = api
    earlier = [engine.rank("s-1").request_id for _ in range(200)]
    time.sleep(0.002)
    later = engine.rank("s-1").request_id
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in [*earlier, later])
    assert len(set(earlier)) == len(earlier)
    assert [i[:12] for i in earlier] == sorted(i[:12] for i in earlier)
    assert later > max(earlier)
    assert abs(int(later[:12], 16) / 1000 - time.time()) < 60


def test_profile_from_request_then_directory_then_unknown(api):
    client, _ = api
    heads = lambda body: "b-heads" in [i["banner_id"] for i in rank(client, **body)["ranking"]]  # noqa: E731
    assert heads({"staff_id": "s-p"})  # the directory says principal
    assert not heads({"staff_id": "s-p", "profile": {"role": "teacher"}})  # the request's profile wins
    assert heads({"staff_id": "nobody", "profile": {"role": "principal"}})
    assert not heads({"staff_id": "nobody"})  # unknown staff: empty profile, untargeted banners only


def test_request_candidates_are_filtered_and_unknown_ids_cold_started(api):
    client, _ = api
    out = rank(client, candidates=["b-old", "b-new-1", "b-info", "b-heads", "b-info"])
    ids = [i["banner_id"] for i in out["ranking"]]
    assert sorted(ids) == ["b-info", "b-new-1"]  # b-old expired, b-heads not for a teacher, duplicate dropped
    assert ids[0] == "b-info"  # 1.0 beats the cold-start 0.0


def test_a_click_changes_the_next_ranking(api):
    client, engine = api
    first = rank(client)
    assert first["ranking"][1]["banner_id"] == "b-survey"
    r = client.post("/v1/events", json={"events": [{"event_id": "e-1", "request_id": first["request_id"],
                                                    "banner_id": "b-survey"}]}, headers=C)
    assert r.status_code == 200 and r.json()["stored"] == 1
    t = time.perf_counter()
    second = rank(client)
    assert time.perf_counter() - t < 1.0
    ids = [i["banner_id"] for i in second["ranking"]]
    assert ids.index("b-survey") == len(ids) - 1  # the completed survey drops to the end
    # another person is not affected
    assert rank(client, staff_id="s-other")["ranking"][1]["banner_id"] == "b-survey"


def test_events_are_idempotent_durable_and_flag_unknown_requests(api, tmp_path):
    client, engine = api
    out = rank(client)
    batch = {"events": [{"event_id": "e-1", "type": "click", "request_id": out["request_id"], "banner_id": "b-survey",
                         "ts": "2026-03-02T08:41:07+09:00"},
                        {"event_id": "e-2", "request_id": "r-never-served", "banner_id": "b-info"}]}
    r1 = client.post("/v1/events", json=batch, headers=C).json()
    assert r1["stored"] == 2 and r1["duplicates"] == 0
    assert r1["flagged"] == [{"event_id": "e-2", "status": "unknown_request"}]
    r2 = client.post("/v1/events", json=batch, headers=C).json()
    assert r2["stored"] == 0 and r2["duplicates"] == 2 and sorted(r2["duplicate_ids"]) == ["e-1", "e-2"]
    # durable: a separate connection to the same file sees them at once
    other = open_store(engine.config.db)
    try:
        assert {e.event_id: e.status for e in other.iter_events()} == {"e-1": "ok", "e-2": "unknown_request"}
        assert [r.request_id for r in other.iter_rankings()] == [out["request_id"]]
    finally:
        other.close()


def test_events_need_an_offset_on_ts(api):
    client, _ = api
    r = client.post("/v1/events", json={"events": [{"event_id": "e", "request_id": "r", "banner_id": "b",
                                                    "ts": "2026-03-02T08:41:07"}]}, headers=C)
    assert r.status_code == 422 and "offset" in r.json()["message"]


def test_auth_401_and_403(api):
    client, _ = api
    assert client.post("/v1/rank", json={"staff_id": "s-1"}).status_code == 401
    assert client.post("/v1/rank", json={"staff_id": "s-1"}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/rank", json={"staff_id": "s-1"}, headers=A).status_code == 200  # admin may rank
    assert client.put("/v1/banners", json=[], headers=C).status_code == 403
    assert client.put("/v1/staff", json={"staff": []}, headers=C).status_code == 403
    assert client.post("/v1/admin/reload", headers=C).status_code == 403
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.get("/v1/banners").status_code == 401


def test_limits_give_a_clear_message(api):
    client, _ = api
    r = client.post("/v1/rank", json={"staff_id": "s-1", "candidates": [f"b{i}" for i in range(501)]}, headers=C)
    assert r.status_code == 422 and "candidates" in r.json()["message"] and "500" in r.json()["message"]
    ok = client.post("/v1/rank", json={"staff_id": "s-1", "candidates": [f"b{i}" for i in range(500)]}, headers=C)
    assert ok.status_code == 200 and len(ok.json()["ranking"]) == 500
    big = json.dumps({"staff_id": "s-1", "context": {"pad": "x" * (256 * 1024)}})
    r = client.post("/v1/rank", content=big, headers={**C, "content-type": "application/json"})
    assert r.status_code == 413 and "256 KiB" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(300):
            yield b"x" * 1024

    r = client.post("/v1/rank", content=chunks(), headers={**C, "content-type": "application/json"})
    assert r.status_code == 413


def test_banners_get_put_and_validation(api):
    client, _ = api
    got = client.get("/v1/banners", headers=C).json()
    assert [b["banner_id"] for b in got][:2] == ["b-policy", "b-info"]
    new = [{"banner_id": "n-1", "category": "event", "priority": 2},
           {"banner_id": "n-2", "category": "survey", "start": "2020-01-01T00:00:00+09:00", "end": None}]
    r = client.put("/v1/banners", json=new, headers=A)
    assert r.status_code == 200 and r.json()["count"] == 2
    assert sorted(i["banner_id"] for i in rank(client)["ranking"]) == ["n-1", "n-2"]
    bad = client.put("/v1/banners", json=[{"banner_id": "x", "category": "info", "priority": "high"}], headers=A)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", 0, "priority"]
    assert client.get("/v1/banners", headers=C).headers["x-catalog-version"] == str(r.json()["version"])


def test_a_saved_copy_of_the_catalog_is_a_valid_banners_file(api, tmp_path):
    from recommender.contracts import load_banners

    client, engine = api
    saved = tmp_path / "banners.json"
    saved.write_bytes(client.get("/v1/banners", headers=C).content)
    assert [b.banner_id for b in load_banners(saved)] == [b.banner_id for b in engine.catalog]


def test_put_staff_changes_the_profile(api):
    client, _ = api
    assert "b-heads" not in [i["banner_id"] for i in rank(client, staff_id="s-new")["ranking"]]
    r = client.put("/v1/staff", json={"staff": [{"staff_id": "s-new", "role": "principal", "region": "Paju"}]},
                   headers=A)
    assert r.status_code == 200 and r.json()["count"] == 1
    assert "b-heads" in [i["banner_id"] for i in rank(client, staff_id="s-new")["ranking"]]


def test_openapi_lists_every_endpoint(api):
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/rank", "/v1/events", "/v1/banners", "/v1/staff", "/v1/admin/reload", "/healthz", "/readyz",
              "/metrics"):
        assert p in paths, p
    assert "put" in paths["/v1/banners"] and "get" in paths["/v1/banners"]


def test_health_ready_and_metrics(api):
    client, _ = api
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert set(ready.json()["history"]) == {"impressions", "people", "open_rankings"}
    out = rank(client)
    client.post("/v1/events", json={"events": [{"event_id": "m-1", "request_id": out["request_id"],
                                                "banner_id": "b-survey"}]}, headers=C)
    text = client.get("/metrics").text
    assert 'recommender_http_requests_total{endpoint="/v1/rank",method="POST",status="200"}' in text
    assert 'recommender_http_request_duration_seconds_bucket{endpoint="/v1/rank"' in text
    assert 'recommender_impressions_total{arm="A"}' in text
    assert 'recommender_clicks_total{arm="A"}' in text
    assert 'recommender_model_info{arm="A",model_version="m1"} 1.0' in text


def _metric(text: str, prefix: str) -> float:
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))


def test_metrics_count_impressions_per_slot(api):
    client, _ = api
    before = _metric(client.get("/metrics").text, 'recommender_impressions_total{arm="A"}')
    rank(client, slots=2)
    rank(client, slots=3)
    after = _metric(client.get("/metrics").text, 'recommender_impressions_total{arm="A"}')
    assert after - before == 5


def test_staff_ids_never_reach_the_logs(api, caplog):
    client, _ = api
    caplog.set_level("DEBUG")
    rank(client, staff_id="s-secret-4711")
    assert caplog.records, "the debug log should have a line for the ranking"
    assert "s-secret-4711" not in caplog.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_pages_load_every_asset_from_the_service(api, page):
    """No network: the pages' scripts and styles come from the service itself."""
    import re

    client, _ = api
    r = client.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert any(a.endswith(".js") for a in assets)
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from outside the service"
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 1000, url
    assert "https://" not in re.sub(r"https://[^\"']*swagger\.io[^\"']*", "", r.text)  # no CDN, no fonts


def test_openapi_declares_the_error_answers_and_an_example_per_endpoint(api):
    client, _ = api
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def has_example(content) -> bool:
        for media in content.values():
            if "example" in media or "examples" in media:
                return True
            ref = media.get("schema", {}).get("$ref", "")
            if ref and "examples" in schemas[ref.rsplit("/", 1)[1]]:
                return True
        return False

    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            answers = op["responses"]
            if path.startswith("/v1/"):
                assert "401" in answers, (path, method)
            if path in ("/v1/banners", "/v1/staff", "/v1/admin/reload") and method in ("put", "post"):
                assert "403" in answers, (path, method)
            if method in ("post", "put") and "requestBody" in op:
                assert "413" in answers and "422" in answers, (path, method)
                assert has_example(op["requestBody"]["content"]), (path, method)
            ok = next(code for code in answers if code.startswith("2"))  # 200, or Personalizer's 201 and 204
            assert ok == "204" or has_example(answers[ok]["content"]), (path, method)


@pytest.mark.parametrize("body, field", [
    ({"staff_id": "s-\u0000-1"}, "staff_id"),
    ({"staff_id": "s-1", "candidates": ["b-info", "b\u0000"]}, "candidates.1"),
    ({"staff_id": "s-1", "profile": {"role": "tea\ncher"}}, "profile.role"),
    ({"staff_id": "s-1", "slots": "3"}, "slots"),
    ({"staff_id": "s-1", "slots": True}, "slots"),
    ({"staff_id": "s-1", "slots": 2.5}, "slots"),
])
def test_rank_refuses_control_characters_and_lax_types_naming_the_field(api, body, field):
    client, _ = api
    r = client.post("/v1/rank", json=body, headers=C)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(field + ":"), r.json()


@pytest.mark.parametrize("event, field", [
    ({"event_id": "e\u0000", "request_id": "r-1", "banner_id": "b-info"}, "events.0.event_id"),
    ({"event_id": "e-1", "request_id": "r\u0000", "banner_id": "b-info"}, "events.0.request_id"),
    ({"event_id": "e-1", "request_id": "r-1", "banner_id": "b\u001f"}, "events.0.banner_id"),
    ({"event_id": "e-1", "request_id": "r-1", "banner_id": "b-info", "ts": 0}, "events.0.ts"),
    ({"event_id": "e-1", "request_id": "r-1", "banner_id": "b-info", "ts": "1970-01-01T00:00:00Z"}, "events.0.ts"),
])
def test_events_refuse_control_characters_and_impossible_times_naming_the_field(api, event, field):
    client, engine = api
    ok = {"event_id": "e-ok", "request_id": "r-1", "banner_id": "b-info"}
    r = client.post("/v1/events", json={"events": [ok, event]}, headers=C)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(field.replace("events.0", "events.1") + ":"), r.json()
    assert engine.store.counts()["events"] == 0  # the whole batch is refused before the store


@pytest.mark.parametrize("staff, where", [
    ({"staff_id": "s-\u0000"}, "staff_id"),
    ({"staff_id": "s-9", "role": {"nested": "x"}}, "'role'"),
    ({"staff_id": "s-9", "role": ["teacher"]}, "'role'"),
    ({"staff_id": "s-9", "region": "Suwon\u0000"}, "'region'"),
])
def test_staff_upload_refuses_nested_values_and_control_characters(api, staff, where):
    client, _ = api
    r = client.put("/v1/staff", json={"staff": [staff]}, headers=A)
    assert r.status_code == 422, r.text
    assert where in r.json()["message"], r.json()


def test_an_empty_candidate_list_is_answered_by_the_model(api):
    client, _ = api
    out = rank(client, candidates=[])
    assert out["model_version"] == "m1" and out["ranking"] == []
