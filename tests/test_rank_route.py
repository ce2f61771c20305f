"""POST /v1/rank is one route (service.lean_route.LeanRoute): it answers as FastAPI's own
handler for the same route would, errors included, in the same order of precedence; it
documents its models in the OpenAPI document; and a dependency added to its router runs."""
from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.lean_route import LeanRoute
from service_support import ADMIN_KEY, CLIENT_KEY

C = {"X-API-Key": CLIENT_KEY, "content-type": "application/json"}


def _general(client):
    """Make the app's LeanRoutes hand every request to FastAPI's own handler: they do while
    the app overrides any dependency."""
    client.app.dependency_overrides[_unused] = lambda: None


def _unused():  # pragma: no cover - only its identity is used
    return None


def _without_id(text: str) -> dict:
    body = json.loads(text)
    if isinstance(body, dict):
        body.pop("request_id", None)
    return body


def test_rank_is_one_lean_route_in_the_routing_table(api):
    client, _ = api
    ranks = [r.original_route for r in iter_route_contexts(client.app.routes) if r.path == "/v1/rank"]
    assert len(ranks) == 1 and isinstance(ranks[0], LeanRoute) and ranks[0].lean


def test_openapi_documents_the_rank_models(api):
    client, _ = api
    op = client.get("/openapi.json").json()["paths"]["/v1/rank"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RankRequest")
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RankResponse")
    assert {"401", "403", "413", "422"} <= set(op["responses"])
    assert op["security"] == [{"APIKeyHeader": []}]


CASES = [
    ('{"staff_id": "s-1"}', C),
    ('{"staff_id": "s-1", "slots": 2, "context": {"page": "home"}}', C),
    ('{"staff_id": "s-1", "candidates": ["b-pinned", "b-none", "b-cold"], "slots": 3.0}', C),
    ('{"staff_id": "s-1"}', {"X-API-Key": CLIENT_KEY, "content-type": "application/json; charset=utf-8"}),
    ('{"staff_id": "s-1"}', {"X-API-Key": CLIENT_KEY, "content-type": "application/vnd.api+json"}),
    # errors: bad content type, bad key, bad body, and their order of precedence
    ('{"staff_id": "s-1"}', {"X-API-Key": CLIENT_KEY, "content-type": "text/plain"}),
    ('{"staff_id": "s-1"}', {"X-API-Key": CLIENT_KEY}),
    ('{"staff_id": "s-1"}', {"content-type": "application/json"}),
    ('{"staff_id": "s-1"}', {"X-API-Key": "wrong", "content-type": "application/json"}),
    ('{"staff_id": "s-1", "extra": 1}', {"X-API-Key": "wrong", "content-type": "application/json"}),
    ("not json", {"X-API-Key": "wrong", "content-type": "application/json"}),
    ("not json", C),
    ('{"staff_id": "s-1", "slots": NaN}', C),
    ('{"staff_id": "s-1", "slots": 1e400}', C),
    ('{"staff_id": "s-1", "slots": 123456789012345678901234567890}', C),
    ('["s-1"]', C),
    ('"s-1"', C),
    ('{"staff_id": "s\\u0000"}', C),
    ('{"staff_id": "\\ud800"}', C),
    ('{"staff_id": "s-1", "extra": 1}', C),
    ('{"staff_id": "s-1", "explain": true}', C),
    ('{"staff_id": "s-1", "explain": true}', {"X-API-Key": ADMIN_KEY, "content-type": "application/json"}),
    ("", C),
]


@pytest.mark.parametrize("body, headers", CASES)
def test_the_route_answers_as_fastapis_own_handler(api, body, headers):
    client, _ = api
    lean = client.post("/v1/rank", content=body.encode("utf-8", "surrogatepass"), headers=headers)
    _general(client)
    general = client.post("/v1/rank", content=body.encode("utf-8", "surrogatepass"), headers=headers)
    assert lean.status_code == general.status_code, (lean.text, general.text)
    assert lean.headers["content-type"] == general.headers["content-type"]
    assert lean.headers.get("www-authenticate") == general.headers.get("www-authenticate")
    assert _without_id(lean.text) == _without_id(general.text)


def test_a_body_that_is_not_text_is_400_as_fastapis(api):
    client, _ = api
    lean = client.post("/v1/rank", content=b"\x80", headers=C)
    _general(client)
    general = client.post("/v1/rank", content=b"\x80", headers=C)
    assert lean.status_code == general.status_code == 400 and lean.json() == general.json()


@pytest.mark.parametrize("body, headers, status, says", [
    ('{"staff_id": "s-1"}', {"X-API-Key": CLIENT_KEY, "content-type": "text/plain"}, 422, "valid dictionary"),
    ('{"staff_id": "s-1"}', {"X-API-Key": "wrong", "content-type": "application/json"}, 401, "API key"),
    ("not json", {"content-type": "application/json"}, 422, "JSON decode error"),  # before the key
    ('{"staff_id": "s-1", "extra": 1}', {"content-type": "application/json"}, 401, "API key"),  # the key first
    ('{"staff_id": "s-1", "extra": 1}', C, 422, "extra: Extra inputs are not permitted"),
    ('{"staff_id": "s-1", "explain": true}', C, 403, "admin API key"),
    ("", C, 422, "Field required"),
])
def test_bad_requests_get_their_error_answers(api, body, headers, status, says):
    client, engine = api
    r = client.post("/v1/rank", content=body, headers=headers)
    assert r.status_code == status and says in r.text, r.text
    assert engine.flush() and engine.store.rankings_after(0, 100) == []  # nothing ranked, nothing logged


def test_a_ranking_is_logged_once(api):
    client, engine = api
    r = client.post("/v1/rank", content='{"staff_id": "s-1"}', headers=C)
    assert r.status_code == 200 and r.json()["ranking"]
    assert engine.flush()
    assert [x.request_id for x in engine.store.rankings_after(0, 100)] == [r.json()["request_id"]]


class Body(BaseModel):
    n: int


def _app(**router_options) -> FastAPI:
    router = APIRouter(route_class=LeanRoute, **router_options)

    @router.post("/x")
    async def x(body: Body, request: Request) -> Response:
        return Response(str(body.n * 2))

    app = FastAPI()
    app.include_router(router)
    return app


def test_a_dependency_added_to_the_router_runs():
    calls = []

    async def counted(request: Request):
        calls.append(request.url.path)

    async def refuse(request: Request):
        raise HTTPException(418, "refused")

    with TestClient(_app(dependencies=[Depends(counted)])) as client:
        assert client.post("/x", json={"n": 2}).text == "4"
    assert calls == ["/x"]
    with TestClient(_app(dependencies=[Depends(refuse)])) as client:
        assert client.post("/x", json={"n": 2}).status_code == 418


def test_a_route_the_lean_handler_cannot_serve_exactly_is_fastapis():
    def with_query(q: int = 1):  # a dependency with a parameter of its own
        return q

    app = _app(dependencies=[Depends(with_query)])
    route = next(r.original_route for r in iter_route_contexts(app.routes) if r.path == "/x")
    with TestClient(app) as client:
        assert client.post("/x?q=oops", json={"n": 2}).status_code == 422  # the query is validated
        assert client.post("/x", json={"n": 2}).text == "4"
    assert not route.lean
