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


def test_the_gate_values_the_objective_the_candidate_is_trained_for(tmp_path):
    from recommender.contracts import load_banners, load_impressions, load_staff
    from simulator import SimulationConfig, simulate
    from training.objective import Objective
    from training.registry import ModelRegistry
    from training.retrain import RetrainConfig, retrain_from_logs
    from training.train import TrainConfig

    simulate(tmp_path / "p", SimulationConfig(staff=1500, days=4, seed=3, outcomes=True))
    catalog = load_banners(tmp_path / "p" / "banners.json")
    staff = load_staff(tmp_path / "p" / "staff.csv")
    log = load_impressions(tmp_path / "p" / "impressions.jsonl", catalog=catalog)
    cfg = RetrainConfig(eval_days=1.0, bootstrap=20,
                        train=TrainConfig(models=("logistic",), objective=Objective.parse("outcomes")))
    result = retrain_from_logs(staff, catalog, log, [], ModelRegistry(tmp_path / "models"), cfg)
    assert result.candidate is not None and "outcomes per request" in result.reason
    assert result.evaluation["objective"] == "outcomes"
