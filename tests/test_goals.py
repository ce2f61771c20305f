"""Delivery goals: the plan and the pacing boost, the delivery counts, exact logged
propensities of paced rankings (against a brute-force enumeration of the policy), the
banner contract, and the service's goals endpoint, metrics and command."""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.contracts.banners import banner_from_dict, banner_to_dict
from recommender.domain import Banner, DeliveryGoal
from recommender.errors import FieldError
from recommender.goals import MAX_BOOST, DeliveryTracker, delivery_from_rankings, pacing_boost, planned
from recommender.ordering import greedy_order
from recommender.ranker import Ranker

DAY = 86400.0


def test_the_plan_is_even_and_the_boost_grows_with_the_deficit():
    goal = DeliveryGoal("reach", 1000, by=10 * DAY)
    assert planned(goal, 0.0, 0.0) == 0 and planned(goal, 0.0, 4.5 * DAY) == pytest.approx(500)
    assert planned(goal, 0.0, 9 * DAY) == pytest.approx(1000) and planned(goal, 0.0, 9.5 * DAY) == 1000
    assert pacing_boost(goal, 0.0, 500, 4.5 * DAY) == 0  # on plan
    assert pacing_boost(goal, 0.0, 600, 4.5 * DAY) == 0  # ahead
    assert pacing_boost(goal, 0.0, 475, 4.5 * DAY) == pytest.approx(MAX_BOOST / 2)  # 2.5% of the target behind
    assert pacing_boost(goal, 0.0, 100, 4.5 * DAY) == MAX_BOOST
    assert pacing_boost(goal, 0.0, 1000, 4.5 * DAY) == 0  # met
    assert pacing_boost(goal, 0.0, 999, 9.2 * DAY) == MAX_BOOST  # the plan is at the target: any shortfall
    assert pacing_boost(goal, 0.0, 0, 10 * DAY) == 0  # its time is up
    assert pacing_boost(goal, 0.0, 0, -1.0) == 0  # not started


def test_delivery_counts_distinct_reach_and_each_click_once_within_the_goal_window():
    reach = Banner("r", "policy", start=0.0, goal=DeliveryGoal("reach", 3, by=5 * DAY))
    clicks = Banner("c", "survey", start=0.0, goal=DeliveryGoal("clicks", 2, by=5 * DAY))
    t = DeliveryTracker()
    t.set_goals([reach, clicks, Banner("x", "info")])
    for staff, ts in [("a", 1.0), ("a", 2.0), ("b", 3.0), ("c", 6 * DAY), ("d", -1.0)]:
        t.add_impression(staff, "r", ts)
        t.add_impression(staff, "x", ts)  # no goal: not counted
    t.add_click("a", "c", 1.0)
    t.add_click("b", "c", 7 * DAY)  # after its deadline
    assert t.delivered("r") == 2 and t.delivered("c") == 1
    assert t.boosts("a", [reach], 4 * DAY) is None  # already reached: no boost for reach
    assert t.boosts("z", [reach], 4 * DAY)[0] == MAX_BOOST  # 2 of 3 with 80% of the plan due
    t.forget("a")
    assert t.delivered("r") == 1
    progress = {g.banner_id: g.to_dict() for g in t.progress(4 * DAY)}
    assert progress["r"]["behind_plan"] and not progress["r"]["met"] and set(progress) == {"r", "c"}


def _brute_force_marginals(order_scores, pinned, priority, epsilon):
    """P[b, k] of the served policy, by enumeration: the greedy order of the boosted scores
    with probability 1 - epsilon; with epsilon, the pinned block as greedy has it and the
    other banners in each of their orders, equally likely."""
    n = len(pinned)
    greedy = greedy_order(order_scores, pinned, priority).tolist()
    P = np.zeros((n, n))
    for k, b in enumerate(greedy):
        P[b, k] += 1 - epsilon
    n_pin = int(np.sum(pinned))
    free = greedy[n_pin:]
    perms = list(itertools.permutations(free))
    for perm in perms:
        for k, b in enumerate(greedy[:n_pin] + list(perm)):
            P[b, k] += epsilon / len(perms)
    return P


class _TableScorer:
    version = "table"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def score(self, rows, history):
        return self.scores


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-3, 3), min_size=n, max_size=n), st.lists(st.sampled_from([0.0, 0.0, 2.0, MAX_BOOST]), min_size=n,
                                                                 max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n), st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.integers(0, 2**31))))
def test_paced_rankings_log_the_exact_propensity_of_the_served_policy(case):
    scores, boost, pinned, epsilon, seed = case
    banners = [Banner(f"b{i}", "info", pinned=p, priority=i % 2) for i, p in enumerate(pinned)]
    ranker = Ranker(_TableScorer(scores), epsilon, np.random.default_rng(seed))
    P = _brute_force_marginals(np.asarray(scores) + np.asarray(boost), np.array(pinned),
                               np.array([b.priority for b in banners], dtype=float), epsilon)
    for _ in range(5):
        result = ranker.rank("p", {}, 0.0, banners, None, np.asarray(boost))
        assert result.scores == [scores[int(b[1:])] for b in result.banner_ids]  # the model's own scores
        for k, (bid, prop) in enumerate(zip(result.banner_ids, result.propensities)):
            assert math.isclose(prop, P[int(bid[1:]), k], abs_tol=1e-12)


def test_a_goal_in_the_banner_contract_and_its_errors():
    obj = {"banner_id": "b", "category": "policy", "start": "2026-03-02T00:00:00+09:00",
           "goal": {"metric": "reach", "target": 3000, "by": "2026-03-06T18:00:00+09:00"}}
    b = banner_from_dict(obj)
    assert b.goal.metric == "reach" and b.goal.target == 3000
    assert banner_from_dict(banner_to_dict(b)) == b
    bad = [({**obj["goal"], "metric": "views"}, "goal.metric"), ({**obj["goal"], "target": 0}, "goal.target"),
           ({**obj["goal"], "by": "2026-03-01T00:00:00+09:00"}, "goal.by"), ({"metric": "reach", "target": 5}, "goal.by"),
           ({**obj["goal"], "extra": 1}, "goal.extra")]
    for goal, field in bad:
        with pytest.raises(FieldError) as e:
            banner_from_dict({**obj, "goal": goal})
        assert e.value.field == field, goal
    with pytest.raises(FieldError) as e:
        banner_from_dict({**obj, "start": None})
    assert e.value.field == "goal"


def test_the_service_paces_a_banner_behind_its_goal_and_reports_its_progress(tmp_path):
    from service_support import ADMIN_KEY, CLIENT_KEY, make_client

    client, engine = make_client(tmp_path, extra="slots = 1")
    cfg = engine.config
    C, A = {"X-API-Key": CLIENT_KEY}, {"X-API-Key": ADMIN_KEY}
    with client:
        def first(staff_id):
            r = client.post("/v1/rank", json={"staff_id": staff_id}, headers=C)
            assert r.status_code == 200, r.text
            return r.json()["ranking"][0]["banner_id"]

        banners = [b for b in client.get("/v1/banners", headers=A).json() if b["banner_id"] != "b-pinned"]
        assert client.put("/v1/banners", json=banners, headers=A).status_code == 200
        assert first("s-2") == "b-survey"  # the best score, unpaced
        # b-policy (the lowest score) must reach 3 people; its plan is far ahead of that
        policy = next(b for b in banners if b["banner_id"] == "b-policy")
        from recommender.timeutil import format_ts

        now = time.time()  # the service's clock
        policy.update(start=format_ts(now - 10 * DAY), goal={"metric": "reach", "target": 3, "by": format_ts(now + DAY)})
        assert client.put("/v1/banners", json=banners, headers=A).status_code == 200
        assert [first(s) for s in ("s-3", "s-4", "s-5")] == ["b-policy"] * 3  # behind plan: paced to the top
        progress = client.get("/v1/goals", headers=A).json()["goals"]
        assert progress[0]["banner_id"] == "b-policy" and progress[0]["delivered"] == 3
        assert first("s-3") == "b-survey"  # reached already: the scores decide for them
        assert client.get("/v1/goals", headers=C).status_code == 403
        metrics = client.get("/metrics").text
        assert 'recommender_goal{banner_id="b-policy",metric="reach",value="delivered"} 3.0' in metrics
    engine.close()
    r = subprocess.run([sys.executable, "-m", "cli.main", "goals", "--config", str(cfg.source), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    goals = json.loads(r.stdout)["goals"]
    assert goals[0]["banner_id"] == "b-policy" and goals[0]["delivered"] == 3  # the store agrees with the service


def test_delivery_from_stored_rankings_counts_each_click_once():
    from recommender.store import RankingRecord

    b = Banner("c", "survey", start=0.0, goal=DeliveryGoal("clicks", 5, by=DAY))
    t = DeliveryTracker()
    t.set_goals([b])
    r = RankingRecord("q1", 10.0, "a", "A", "m", False, 1, [("c", 1, 0.0, 1.0), ("x", 2, 0.0, 1.0)])
    r2 = RankingRecord("q2", 10.0, "a", "A", "m", False, 1, [("x", 1, 0.0, 1.0), ("c", 2, 0.0, 1.0)])
    delivery_from_rankings(t, [r, r2], [("q1", "c"), ("q1", "c"), ("q2", "c"), ("q9", "c")])
    assert t.delivered("c") == 1  # a duplicate, a click on an unshown slot, an unknown request: not counted


def test_in_the_simulator_pacing_meets_the_goals_and_loses_fewer_clicks_than_pinning(tmp_path):
    from simulator.goals import GoalsConfig, run_goals

    no_goal, pinning, pacing = run_goals(tmp_path, GoalsConfig(staff=3000, seed=5))
    assert not (no_goal.goals_met["reach"] and no_goal.goals_met["clicks"])
    assert pinning.goals_met == pacing.goals_met == {"reach": True, "clicks": True}
    assert pinning.expected_clicks < pacing.expected_clicks < no_goal.expected_clicks
    assert pacing.requests == pinning.requests == no_goal.requests  # the same simulated traffic
