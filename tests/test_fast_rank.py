"""POST /v1/rank's fast path (service.fast_rank) answers as the FastAPI route does, and
hands everything it does not answer to the route with its body intact."""
from __future__ import annotations

import json

import pytest

from service_support import ADMIN_KEY, CLIENT_KEY, make_client
from service.fast_rank import FastRank

C = {"X-API-Key": CLIENT_KEY, "content-type": "application/json"}
ROUTE = {"X-API-Key": CLIENT_KEY, "content-type": "application/json; charset=utf-8"}  # not fast-pathed


@pytest.fixture
def api(tmp_path, monkeypatch):
    calls = {"answered": 0, "handed_on": 0}
    original = FastRank.__call__

    async def counting(self, scope, receive, send):
        out = await original(self, scope, receive, send)
        calls["answered" if out is None else "handed_on"] += 1
        return out

    monkeypatch.setattr(FastRank, "__call__", counting)
    client, engine = make_client(tmp_path)
    with client:
        yield client, engine, calls
    engine.close()


def _without_id(text: str) -> dict:
    body = json.loads(text)
    body.pop("request_id", None)
    return body


@pytest.mark.parametrize("body", [
    {"staff_id": "s-1"},
    {"staff_id": "s-1", "slots": 2, "context": {"page": "home"}},
    {"staff_id": "s-new", "profile": {"role": "principal", "school_level": "high", "region": "Goyang"}},
    {"staff_id": "s-1", "candidates": ["b-pinned", "b-none", "b-cold"], "slots": 3.0},
    {"staff_id": "s-1", "candidates": []},
])
def test_fast_path_answers_as_the_route(api, body):
    client, engine, calls = api
    raw = json.dumps(body)
    fast = client.post("/v1/rank", content=raw, headers=C)
    assert calls == {"answered": 1, "handed_on": 0}
    route = client.post("/v1/rank", content=raw, headers=ROUTE)
    assert calls == {"answered": 1, "handed_on": 1}
    assert fast.status_code == route.status_code == 200
    assert fast.headers["content-type"] == route.headers["content-type"]
    assert _without_id(fast.text) == _without_id(route.text)
    assert engine.flush()
    assert len(engine.store.rankings_after(0, 100)) == 2  # both logged


@pytest.mark.parametrize("body, headers, status", [
    ('{"staff_id": "s-1"}', {"content-type": "application/json"}, 401),
    ('{"staff_id": "s-1"}', {"X-API-Key": "wrong", "content-type": "application/json"}, 401),
    ("not json", C, 422),
    ('{"staff_id": "s-1", "slots": NaN}', C, 422),
    ('["s-1"]', C, 422),
    ('{"staff_id": "s\\u0000"}', C, 422),
    ('{"staff_id": "s-1", "extra": 1}', C, 422),
    ('{"staff_id": "s-1", "explain": true}', C, 403),
    ('{"staff_id": "s-1", "explain": true}', {"X-API-Key": ADMIN_KEY, "content-type": "application/json"}, 409),
    ("", C, 422),
])
def test_what_the_fast_path_does_not_answer_reaches_the_route(api, body, headers, status):
    client, _, calls = api
    r = client.post("/v1/rank", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert calls["answered"] == 0
