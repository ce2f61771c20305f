"""The ramp's schedule and guardrail (recommender.ramps): its share steps up on time, it
finishes after a whole step at its last share, it stops only on a surely worse new arm
with enough requests, and it is never done before its schedule ends."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recommender.ramps import DONE, RAMPING, STOPPED, judge_ramp, ramp_finished, ramp_share
from recommender.sequential import ArmOutcome

steps_st = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4).map(sorted)


def ramp(steps, every=100.0, started=1000.0) -> dict:
    return {"steps": steps, "every_s": every, "started": started, "status": "ramping"}


@given(steps_st, st.floats(0, 1000))
def test_the_share_is_the_step_of_the_elapsed_time_and_the_last_is_held(steps, elapsed):
    r = ramp(steps)
    i = int(elapsed // 100.0)
    assert ramp_share(r, 1000.0 + elapsed) == steps[min(i, len(steps) - 1)]
    assert ramp_share(r, 0.0) == steps[0]  # before it started: its first step


@given(steps_st, st.floats(0, 1000))
def test_it_finishes_after_a_whole_step_at_the_last_share(steps, elapsed):
    assert ramp_finished(ramp(steps), 1000.0 + elapsed) == (elapsed >= 100.0 * len(steps))


def test_finished_at_exactly_the_end_of_the_last_step_and_not_before():
    r = ramp([0.1, 0.5])
    assert not ramp_finished(r, 1000.0 + 199.999)
    assert ramp_finished(r, 1000.0 + 200.0)


def outcome(n, mean):
    return ArmOutcome(n, mean, mean * (1 - mean))


@given(st.integers(0, 5000), st.integers(0, 5000), st.floats(0.01, 0.5), st.floats(0.01, 0.5), st.floats(0, 400))
def test_the_verdict_follows_the_rule(n_new, n_control, m_new, m_control, elapsed):
    r = ramp([0.1, 0.5])
    new, control = outcome(n_new, m_new), outcome(n_control, m_control)
    v = judge_ramp(r, new, control, 1000.0 + elapsed, alpha=0.05, min_requests=100)
    if v.status == STOPPED:
        assert v.high < 0 and min(n_new, n_control) >= 100
    elif v.status == DONE:
        assert elapsed >= 200.0 and n_new >= 100 and not (v.high < 0 and n_control >= 100)
    else:
        assert v.status == RAMPING
        assert elapsed < 200.0 or n_new < 100
    assert v.low <= v.difference <= v.high


def test_a_clearly_worse_arm_is_stopped_and_an_equal_one_is_done_at_the_end():
    r = ramp([0.1, 0.5])
    worse = judge_ramp(r, outcome(3000, 0.05), outcome(3000, 0.20), 1050.0, min_requests=500)
    assert worse.status == STOPPED
    equal = judge_ramp(r, outcome(3000, 0.20), outcome(3000, 0.20), 1050.0, min_requests=500)
    assert equal.status == RAMPING
    assert judge_ramp(r, outcome(3000, 0.20), outcome(3000, 0.20), 1200.0, min_requests=500).status == DONE
    assert judge_ramp(r, outcome(400, 0.20), outcome(0, 0.0), 1200.0, min_requests=500).status == RAMPING
