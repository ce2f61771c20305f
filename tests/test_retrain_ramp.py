"""When the offline A/B cannot decide, the loop ramps the candidate in online, against a
real server: a service that explored little (epsilon 0.02) leaves logs on which a new
candidate's importance weights are unreliable; `retrain --promote` then starts the
candidate on arm B at the ramp's first step instead of keeping production. A candidate
that loses online is stopped at that first step by the service's guardrail and never
gets more traffic; one that holds its own through its last step becomes arm A's model."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from loop_support import A, C, retrain, serve_simulated_traffic
from training.registry import ModelRegistry

pytestmark = pytest.mark.slow
ARM_B = "[arms.B]\nshare = 0.0\nepsilon = 0.02\n"


def little_explored(tmp_path_factory):
    out = serve_simulated_traffic(tmp_path_factory.mktemp("ramp"), epsilon=0.02, requests=3000, arms=ARM_B,
                                  extra={"ramp_check_interval": 0.2, "ramp_min_requests": 100})
    yield out
    out["server"].stop()


# Each ramp gets a service of its own: the clicks a test sends to judge one ramp would
# otherwise be the logs the next candidate is evaluated on.
served = pytest.fixture(scope="module")(little_explored)
served_again = pytest.fixture(scope="module")(little_explored)


def summary_of(out) -> dict:
    return json.loads(Path(out.stdout.split("summary: ")[1].split(";")[0].strip()).read_text())


def ramp_state(http) -> dict:
    return http.get("/v1/admin/arms", headers=A).json()


def drive(http, clicks_on, until, seconds: float, prefix: str) -> tuple[dict, dict[str, int]]:
    """Rank for new staff ids and click the first banner with probability
    ``clicks_on[arm]`` until ``until(arms state)`` holds or ``seconds`` pass."""
    rng = np.random.default_rng(0)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        for _ in range(50):
            i += 1
            r = http.post("/v1/rank", json={"staff_id": f"{prefix}-{i}"}, headers=C).json()
            seen[r["arm"]] = seen.get(r["arm"], 0) + 1
            if rng.random() < clicks_on[r["arm"]]:
                ev = {"event_id": f"{prefix}-e-{i}", "request_id": r["request_id"],
                      "banner_id": r["ranking"][0]["banner_id"]}
                assert http.post("/v1/events", json={"events": [ev]}, headers=C).status_code == 200
        state = ramp_state(http)
        if until(state):
            return state, seen
    return ramp_state(http), seen


def test_undecided_without_a_ramp_keeps_production(served):
    out = retrain(served, "--promote", "--undecided", "keep", "--service", served["server"].url)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "decision: undecided" in out.stdout and "unreliable" in out.stdout and "action: kept" in out.stdout
    assert summary_of(out)["action"]["what"] == "kept"
    with httpx.Client(base_url=served["server"].url, timeout=10) as http:
        assert ramp_state(http)["ramp"] is None


def test_an_undecided_candidate_that_loses_online_is_stopped_at_the_first_step(served):
    out = retrain(served, "--promote", "--undecided-ramp", "10,50", "--ramp-every", "1h",
                  "--service", served["server"].url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "decision: undecided" in out.stdout and "action: ramping" in out.stdout
    candidate = out.stdout.split("candidate: ")[1].split(";")[0]
    summary = summary_of(out)
    assert summary["decision"] == "undecided" and summary["action"] == {
        "what": "ramping", "arm": "B", "detail": summary["action"]["detail"]}
    with httpx.Client(base_url=served["server"].url, timeout=10) as http:
        state = ramp_state(http)
        assert state["models"]["B"] == candidate and state["models"]["A"] == "fallback"
        assert state["ramp"]["status"] == "ramping" and state["shares"]["B"] == pytest.approx(0.1)
        # the candidate's rankings get no clicks, production's one in two
        state, seen = drive(http, {"A": 0.5, "B": 0.0}, lambda s: s["ramp"]["status"] != "ramping", 60, "lose")
        assert state["ramp"]["status"] == "stopped", state
        assert state["ramp"]["high"] < 0 and "always-valid" in state["ramp"]["reason"]
        assert 0.04 < seen["B"] / (seen["A"] + seen["B"]) < 0.2  # it never went past its first step
        assert state["shares"]["B"] == 0.0 and state["models"]["A"] == "fallback"
        time.sleep(0.5)
        assert {http.post("/v1/rank", json={"staff_id": f"after-{i}"}, headers=C).json()["arm"]
                for i in range(50)} == {"A"}
    steps = [h for h in ModelRegistry(served["config"].parent / "models").state()["history"] if "ramp" in h]
    assert [h.get("status") for h in steps] == [None, "stopped"]


def test_an_undecided_candidate_that_holds_through_its_last_step_becomes_production(served_again):
    served = served_again
    out = retrain(served, "--promote", "--undecided-ramp", "50", "--ramp-every", "3s",
                  "--service", served["server"].url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "decision: undecided" in out.stdout and "action: ramping" in out.stdout
    candidate = out.stdout.split("candidate: ")[1].split(";")[0]
    with httpx.Client(base_url=served["server"].url, timeout=10) as http:
        state, seen = drive(http, {"A": 0.3, "B": 0.3}, lambda s: s["ramp"]["status"] != "ramping", 90, "hold")
        assert state["ramp"]["status"] == "done", state
        assert seen["B"] >= 100
        time.sleep(0.5)
        final = ramp_state(http)
        assert final["models"]["A"] == candidate and final["shares"] == {"A": 1.0, "B": 0.0}
        r = http.post("/v1/rank", json={"staff_id": "s-000001"}, headers=C).json()
        assert r["arm"] == "A" and r["model_version"] == candidate
