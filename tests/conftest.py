import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("RECOMMENDER_PROGRESS", "0")


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the feature kernels once before any test (and any server a test starts)
    needs them; from then on every process loads them from numba's cache."""
    from features.history import compile_kernels

    compile_kernels()


@pytest.fixture(scope="session")
def small_province(tmp_path_factory) -> Path:
    """A small simulated province (5,000 staff, 3 days), shared by the tests that only read it."""
    from simulator import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("province")
    simulate(out, SimulationConfig(staff=5000, days=3, seed=11))
    return out


@pytest.fixture(scope="session")
def small_click_model(small_province):
    """A logistic click model fitted on the whole small province (not saved)."""
    from recommender.contracts import load_banners, load_impressions, load_staff
    from training.fitting import fit_click_model

    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    return fit_click_model(staff, catalog, load_impressions(small_province / "impressions.jsonl", catalog=catalog))


PG_BASE = os.environ.get("RECOMMENDER_TEST_PG", "postgresql://{user}@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The URL of the local PostgreSQL server (CI starts it; elsewhere, tests skip)."""
    import psycopg

    for user in ("postgres", "root"):
        url = PG_BASE.format(user=user)
        try:
            psycopg.connect(url, connect_timeout=3).close()
            return url
        except Exception:
            continue
    if os.environ.get("CI"):
        pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432 (CI starts it)")
    pytest.skip("no PostgreSQL on 127.0.0.1:5432")


@pytest.fixture
def pg_url(pg_server):
    """A store URL on a schema of its own, dropped afterwards."""
    from recommender.store import open_store

    url = f"{pg_server}?schema=t_{uuid.uuid4().hex[:12]}"
    yield url
    store = open_store(url)
    store.drop_schema()
    store.close()


@pytest.fixture
def api(tmp_path):
    """A test client of a service with model m1 on arm A, and its engine."""
    from service_support import make_client

    client, engine = make_client(tmp_path)
    with client:
        yield client, engine
    engine.close()
