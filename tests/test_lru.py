"""features.lru.LRU against a plain list model of least-recently-used eviction."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.lru import LRU

ops = st.lists(st.tuples(st.sampled_from(["get", "put"]), st.integers(0, 4), st.integers(0, 100)), max_size=80)


@given(st.integers(1, 5), ops)
def test_lru_matches_a_list_model(max_entries, calls):
    lru: LRU[int, int] = LRU(max_entries)
    model: list[tuple[int, int]] = []  # least recently used first
    for op, key, value in calls:
        found = next((i for i, (k, _) in enumerate(model) if k == key), None)
        if op == "get":
            want = None if found is None else model[found][1]
            assert lru.get(key) == want
            if found is not None:
                model.append(model.pop(found))
        else:
            assert lru.put(key, value) == value
            if found is not None:
                model.pop(found)
            model.append((key, value))
            if len(model) > max_entries:
                model.pop(0)
        assert len(lru) == len(model) <= max_entries
        assert all(k in lru for k, _ in model)


def test_lru_refuses_a_zero_bound():
    with pytest.raises(ValueError):
        LRU(0)
