"""The Ranker's per-request greedy order (CandidateSet.greedy, a Python sort) is
recommender.ordering's greedy_order, the one rule every other part orders by."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.domain import Banner
from recommender.ordering import greedy_order
from recommender.ranker import CandidateSet

candidate = st.tuples(st.booleans(), st.integers(-2, 3),
                      st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0]),
                                st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)))


@settings(max_examples=500, deadline=None)
@given(st.lists(candidate, max_size=40))
def test_greedy_is_greedy_order(cands):
    banners = [Banner(f"b-{i}", "policy", pinned=p, priority=q) for i, (p, q, _) in enumerate(cands)]
    scores = [s for _, _, s in cands]
    c = CandidateSet(banners)
    assert c.greedy(scores) == greedy_order(np.array(scores, dtype=np.float64), c.pinned, c.priority).tolist()
