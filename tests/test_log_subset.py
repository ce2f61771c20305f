"""ImpressionLog.subset holds exactly its own requests (a value per request divides by them)."""
import numpy as np
from hypothesis import given, settings
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
