"""Frequency caps: the ledger against a brute-force count, the banner contract, the
service leaving a capped banner out, and the same rule in the simulator and offline
evaluation."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.caps import DAY, ExposureLedger
from recommender.contracts.banners import banner_from_dict, banner_to_dict
from recommender.domain import Banner, FrequencyCap
from recommender.errors import FieldError


def brute_force_capped(events, banner_id: str, cap: FrequencyCap, ts: float) -> bool:
    """The cap's definition, over every event of one person: (time, banner, clicked)."""
    seen = [t for t, b, _ in events if b == banner_id and t < ts]
    if cap.per_day is not None and sum(ts - DAY < t for t in seen) >= cap.per_day:
        return True
    if cap.unclicked_impressions is not None:
        clicks = [t for t, b, c in events if b == banner_id and c and t < ts]
        since = max([ts - cap.unclicked_days * DAY, *clicks])
        if sum(t > since for t in seen) >= cap.unclicked_impressions:
            return True
    return False


caps = st.builds(FrequencyCap, st.one_of(st.none(), st.integers(1, 4)),
                 st.one_of(st.none(), st.integers(1, 5)), st.sampled_from([0.5, 1.0, 3.0])).map(
    lambda c: FrequencyCap(c.per_day, c.unclicked_impressions, c.unclicked_days if c.unclicked_impressions else None))
events = st.lists(st.tuples(st.floats(0, 5 * DAY), st.sampled_from(["a", "b"]), st.booleans()), max_size=30)


@settings(max_examples=200, deadline=None)
@given(events, caps, st.floats(0, 6 * DAY), st.randoms(use_true_random=False))
def test_the_ledger_caps_exactly_as_the_definition_whatever_the_order_events_arrive(evs, cap, ts, rnd):
    """Offline (everything kept) at any time; online (kept only what the caps can read) at
    times after the events it holds, as the service asks."""
    offline, online = ExposureLedger(float("inf"), keep=None), ExposureLedger()
    online.fit_to([cap])
    arrival = list(evs)
    rnd.shuffle(arrival)  # another worker's rankings reach a worker late
    for ledger in (offline, online):
        for t, b, clicked in arrival:
            ledger.add_impression("p", b, t)
            if clicked:
                ledger.add_click("p", b, t)
    banners = [Banner("a", "info", cap=cap), Banner("b", "info")]
    later = max([ts, *(t + 1.0 for t, _, _ in evs)])
    for ledger, at in ((offline, ts), (online, later)):
        expected = {b for b in ("a", "b") if brute_force_capped(evs, b, cap, at)}
        assert ledger.capped("p", banners, at, default=cap) == expected
        assert ledger.capped("p", [Banner("b", "info")], at) == set()  # no cap, no default: never capped
        assert ledger.capped("someone else", banners, at, default=cap) == set()
    online.sweep(later + online.horizon + 1.0, budget=10)
    assert len(online) == 0  # nothing a cap can read any more: let go


def test_a_cap_counts_only_impressions_strictly_before_the_request():
    ledger = ExposureLedger()
    ledger.add_impression("p", "a", 100.0)
    cap = FrequencyCap(per_day=1)
    assert not ledger.is_capped("p", "a", cap, 100.0)
    assert ledger.is_capped("p", "a", cap, 100.5)
    assert not ledger.is_capped("p", "a", cap, 100.0 + DAY + 1)  # a rolling 24 hours


def test_banner_cap_contract_round_trips_and_names_the_bad_field():
    obj = {"banner_id": "b", "category": "info", "cap": {"per_day": 2, "unclicked": {"impressions": 5, "days": 7}}}
    b = banner_from_dict(obj)
    assert b.cap == FrequencyCap(2, 5, 7.0)
    assert banner_from_dict(banner_to_dict(b)) == b
    assert banner_from_dict({"banner_id": "b", "category": "info", "cap": None}).cap is None
    bad = [({"per_day": 0}, "cap.per_day"), ({"per_day": True}, "cap.per_day"), ({}, "cap"),
           ({"unclicked": {"impressions": 3}}, "cap.unclicked"), ({"per_dya": 3}, "cap.per_dya"),
           ({"unclicked": {"impressions": 3, "days": 0}}, "cap.unclicked.days"), ("3", "cap"),
           ({"unclicked": {"impressions": 101, "days": 2}}, "cap.unclicked.impressions")]
    for cap, field in bad:
        with pytest.raises(FieldError) as e:
            banner_from_dict({"banner_id": "b", "category": "info", "cap": cap})
        assert e.value.field == field, cap


def test_the_service_leaves_a_capped_banner_out_of_that_persons_ranking(tmp_path):
    from service_support import ADMIN_KEY, CLIENT_KEY, make_client

    client, engine = make_client(tmp_path, extra="default_cap = { per_day = 2 }\nslots = 2")
    C, A = {"X-API-Key": CLIENT_KEY}, {"X-API-Key": ADMIN_KEY}

    def ranked(staff_id: str = "s-1") -> list[str]:
        r = client.post("/v1/rank", json={"staff_id": staff_id}, headers=C)
        assert r.status_code == 200, r.text
        return [i["banner_id"] for i in r.json()["ranking"]]

    with client:
        first = ranked()
        assert ranked() == first  # shown once: under the default cap of 2 a day
        third = ranked()
        assert not set(first[:2]) & set(third)  # both shown twice: left out, pinned or not
        assert set(first[:2]) <= set(ranked("s-p"))  # another person is not affected
        # a banner's own cap wins over the default; the catalog's banners are replaced at runtime
        banners = client.get("/v1/banners", headers=A).json()
        for b in banners:
            b["cap"] = {"unclicked": {"impressions": 5, "days": 1}}
        assert client.put("/v1/banners", json=banners, headers=A).status_code == 200
        assert set(first[:2]) <= set(ranked())  # 2 unclicked impressions of 5: back in the ranking
        bad = [dict(banners[0], cap={"per_day": 0})]
        r = client.put("/v1/banners", json=bad, headers=A)
        assert r.status_code == 422 and "cap.per_day" in r.text
    engine.close()


def test_simulator_and_offline_evaluation_apply_the_same_caps(tmp_path):
    """The simulator's logging policy under a default cap never shows a capped banner, by
    offline evaluation's own reckoning from the log; target policies give capped rows no
    probability and spread each position over the others."""
    import numpy as np

    from recommender.contracts import load_banners, load_impressions, load_staff
    from simulator.run import SimulationConfig, simulate
    from training.ope.data import build_bandit
    from training.ope.evaluate import check_policy
    from training.ope.policies import operators_policy, uniform_policy

    cap = FrequencyCap(per_day=1, unclicked_impressions=2, unclicked_days=3.0)
    simulate(tmp_path, SimulationConfig(staff=400, days=4, seed=3, default_cap=cap))
    staff, catalog = load_staff(tmp_path / "staff.csv"), load_banners(tmp_path / "banners.json")
    log = load_impressions(tmp_path / "impressions.jsonl", catalog=catalog)
    rows = sorted(zip(log.staff.tolist(), log.banner.tolist(), log.ts.tolist()))
    assert all(not (a[:2] == b[:2] and b[2] - a[2] < DAY) for a, b in zip(rows, rows[1:]))  # once a day at most

    bandit = build_bandit(log, catalog, staff, 3, default_cap=cap)
    shown = bandit.shown[bandit.filled]
    assert bandit.capped is not None and bandit.capped.any()
    assert not bandit.capped[shown].any()  # what the simulator showed was never capped
    assert build_bandit(log, catalog, staff, 3).capped is None  # no caps, no default: nothing marked
    for policy in (operators_policy(bandit, epsilon=0.2), uniform_policy(bandit)):
        check_policy(bandit, policy)
        assert not policy.pi[bandit.capped].any()
        free = np.bincount(bandit.cand_request, weights=~bandit.capped, minlength=bandit.n)
        for k in range(3):
            mass = np.bincount(bandit.cand_request, weights=policy.pi[:, k], minlength=bandit.n)
            assert np.allclose(mass[free > k], 1.0)


def test_forgetting_a_person_forgets_their_impressions_under_caps():
    from service.online import OnlineHistory

    online = OnlineHistory()
    capped = Banner("a", "info", cap=FrequencyCap(per_day=1))
    online.set_caps([capped], None)
    online.add_ranking("p", "r-1", 100.0, [("a", "info")])
    assert online.capped("p", [capped], 200.0, None) == {"a"}
    online.forget(["p"])
    assert online.capped("p", [capped], 200.0, None) == set()


def test_an_explained_ranking_names_the_banners_a_cap_left_out(tmp_path):
    from service_support import ADMIN_KEY, CLIENT_KEY, make_client

    client, engine = make_client(tmp_path, extra="default_cap = { per_day = 1 }\nslots = 2",
                                 promote=None)  # no model: the operators' order
    with client:
        shown = [i["banner_id"] for i in client.post("/v1/rank", json={"staff_id": "s-1"},
                                                     headers={"X-API-Key": CLIENT_KEY}).json()["ranking"][:2]]
        r = client.post("/v1/rank", json={"staff_id": "s-1", "explain": True}, headers={"X-API-Key": ADMIN_KEY})
        assert r.status_code == 200, r.text
        out = r.json()
        assert not set(shown) & {i["banner_id"] for i in out["ranking"]}
        assert {x["banner_id"] for x in out["left_out"]} == set(shown)
        assert all(x["reason"] == "cap" and "once in the last 24 hours" in x["text"] for x in out["left_out"])
    engine.close()
