"""Property-based tests of the HTTP API from its own OpenAPI document (schemathesis): for
every endpoint, on SQLite and on PostgreSQL, requests generated from the schema (valid
ones and invalid ones, with an admin key, a client key and none) never get a 5xx; every
answer is one the document declares, in the declared shape; every refusal says why, and
a 422 names the field."""
from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from recommender.store import open_store
from service.app import create_app
from service.engine import RankingEngine

from service_support import ADMIN_KEY, CLIENT_KEY, FakeRegistry, add_fake_model, config_from, write_config

EXAMPLES = 50  # per endpoint, mode and store: about half a minute in all
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance]
KEYS = st.sampled_from([{"X-API-Key": ADMIN_KEY}, {"X-API-Key": CLIENT_KEY}, {}, {"X-API-Key": "wrong"}])


@pytest.fixture(params=["sqlite", "postgres"])
def app(request, tmp_path):
    db = "events.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    cfg = config_from(write_config(tmp_path, db=db))
    reg = FakeRegistry(cfg.models)
    add_fake_model(cfg.models, "m1")
    reg.promote("m1", verify=False)
    engine = RankingEngine(cfg, open_store(cfg.db), registry=reg)
    app = create_app(engine=engine)
    with TestClient(app):
        yield app
    engine.close()


def says_why(response) -> None:
    if response.status_code < 400:
        return
    body = response.json()
    assert body.get("detail"), response.text
    if response.status_code == 422:
        first = body["detail"][0] if isinstance(body["detail"], list) else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        assert body["message"].startswith(f"{where}:" if where else ""), response.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_endpoint_answers_as_documented(app, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    on_postgres = app.state.engine.store.url.startswith("postgres")
    for op in operations:
        if on_postgres and op.path.startswith("/personalizer"):
            continue  # the adapter's store reads are the ones /v1 fuzzes on PostgreSQL already: SQLite suffices
        @given(case=op.as_strategy(generation_mode=mode), headers=KEYS)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case, headers):
            says_why(case.call_and_validate(headers=headers, checks=CHECKS))

        try:
            call()
        except Unsatisfiable:  # nothing to make invalid (an endpoint without a body)
            assert mode is GenerationMode.NEGATIVE
