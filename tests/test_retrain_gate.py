"""The retrain gate's three decisions (training.retrain.decide), for every interval and
reliability: promoted only on reliable weights and an interval above min_gain; undecided
only on unreliable weights and an interval not wholly below it; kept otherwise."""
from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from training.retrain import KEPT, PROMOTED, UNDECIDED, decide


@given(st.floats(-0.5, 0.5), st.floats(0, 0.3), st.floats(0, 0.3), st.booleans(), st.booleans(),
       st.floats(-0.05, 0.05))
def test_the_decision_follows_the_interval_and_the_weights(value, below, above, prod_ok, cand_ok, min_gain):
    diff = {"value": value, "ci_low": value - below, "ci_high": value + above}
    result = SimpleNamespace(n_requests=1000, diagnostics={"prod": {"ips_reliable": prod_ok},
                                                           "cand": {"ips_reliable": cand_ok}})
    decision, reason = decide(result, "prod", "cand", diff, min_gain, "outcomes")
    reliable = prod_ok and cand_ok
    if reliable and diff["ci_low"] > min_gain:
        assert decision == PROMOTED
    elif not reliable and diff["ci_high"] >= min_gain:
        assert decision == UNDECIDED and "unreliable" in reason
    else:
        assert decision == KEPT and reason.startswith("kept prod")
    assert "outcomes per request" in reason
