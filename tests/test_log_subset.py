"""ImpressionLog.subset holds exactly its own requests (a value per request divides by them)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.contracts import load_impressions


@settings(max_examples=25, deadline=None)
@given(st.floats(0, 1))
def test_subset_renumbers_requests(small_province, q):
    log = load_impressions(small_province / "impressions.jsonl")
    cut = np.quantile(log.ts, q)
    sub = log.subset(log.ts >= cut)
    assert sub.n_requests == len(np.unique(sub.request)) == len({log.request_ids[r] for r in log.request[log.ts >= cut]})
    assert [r["request_id"] for r in sub.iter_rows()] == [log.request_ids[r] for r in log.request[log.ts >= cut]]


@pytest.fixture(scope="module")
def small_log(small_province):
    return load_impressions(small_province / "impressions.jsonl")


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_concat_of_the_parts_of_a_log_is_the_log(small_log, qs):
    from recommender.contracts.impressions import ImpressionLog

    log = small_log
    cuts = sorted(float(np.quantile(log.ts, q)) for q in qs)
    parts, rest = [], log
    for cut in cuts:
        before, rest = rest.split(cut)
        parts.append(before)
    joined = ImpressionLog.concat([*parts, rest])
    key = lambda r: (r["request_id"], r["position"])  # noqa: E731
    assert sorted(joined.iter_rows(), key=key) == sorted(log.iter_rows(), key=key)
    assert joined.n_requests == log.n_requests and joined.candidates.keys() == log.candidates.keys()
