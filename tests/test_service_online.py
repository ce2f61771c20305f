"""The online history and exploration inside the engine (no HTTP)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.exploration import position_propensities
from recommender.ordering import greedy_keys
from recommender.store import ClickEvent
from service.engine import RankingEngine
from service.online import OnlineHistory

from service_support import FakeRegistry, add_fake_model, config_from, started_engine, write_config


def engine_with_fake_model(tmp_path, arms: str | None = None) -> RankingEngine:
    """An engine (no background threads) serving the fake model m1 from a fresh config."""
    cfg = config_from(write_config(tmp_path) if arms is None else write_config(tmp_path, arms=arms))
    reg = FakeRegistry(cfg.models)
    add_fake_model(cfg.models, "m1")
    reg.promote("m1", verify=False)
    return started_engine(cfg, reg)


def test_click_before_its_ranking_is_applied_when_the_ranking_arrives():
    h = OnlineHistory()
    assert h.add_click("r-1", "b-2") is False  # another worker's ranking, not synced yet
    h.add_ranking("s-1", "r-1", 100.0, [("b-1", "info"), ("b-2", "survey")])
    q = h.query(["s-1", "s-1"], ["b-1", "b-2"], ["info", "survey"], [200.0, 200.0])
    assert q["ever_clicked_banner"].tolist() == [0.0, 1.0]
    assert q["ever_views_banner"].tolist() == [1.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 3599.0, 3600.0, 43200.0, 86399.0, 86400.0, 86401.0]) | st.floats(0, 3 * 86400.0),
                min_size=1, max_size=60),
       st.sampled_from([0.5, 1.0, 2.0]))
def test_rankings_open_to_clicks_are_those_of_the_click_window(gaps, window_days):
    """Clicks attribute to the rankings of the last ``click_window_days`` (by the latest
    ranking's time); older ones are forgotten, in order, however many have expired."""
    h = OnlineHistory(click_window_days=window_days)
    ts = np.cumsum(gaps).tolist()
    for i, t in enumerate(ts):
        h.add_ranking("s-1", f"r-{i}", t, [("b-1", "info")])
    open_ = [i for i, t in enumerate(ts) if t >= ts[-1] - window_days * 86400.0]
    assert h.counts()["open_rankings"] == len(open_)
    assert [h.add_click(f"r-{i}", "b-1") for i in range(len(ts))] == [i in open_ for i in range(len(ts))]


def test_early_clicks_are_bounded_oldest_dropped_first():
    h = OnlineHistory()
    h.max_early = 3
    for i in range(5):
        assert h.add_click(f"r-{i}", "b-1") is False
    for i in range(5):
        h.add_ranking("s-1", f"r-{i}", 100.0 + i, [("b-1", "info")])
    q = h.query(["s-1"], ["b-1"], ["info"], [200.0])
    assert q["ever_views_banner"].tolist() == [5.0]
    assert h.query_person("s-1", ["b-1"], ["info"], 200.0)["ever_clicked_banner"].tolist() == [1.0]
    clicked = [h.clicked_of(f"r-{i}") for i in range(5)]
    assert clicked == [set(), set(), {"b-1"}, {"b-1"}, {"b-1"}]  # r-0 and r-1's clicks were dropped


def test_online_rows_equal_what_export_writes(tmp_path):
    """The online layer and the exported impressions describe the same events."""
    engine = engine_with_fake_model(tmp_path)
    try:
        outs = [engine.rank("s-1", slots=2) for _ in range(3)]
        engine.record_events([ClickEvent("e1", outs[0].request_id, outs[0].result.items[1].banner_id, 0.0)])
        rows = list(engine.store.export_impressions())
        assert sum(r["clicked"] for r in rows) == 1
        banners = sorted({r["banner_id"] for r in rows})
        cats = [engine.catalog.get(b).category for b in banners]
        q = engine.online.query(["s-1"] * len(banners), banners, cats, np.full(len(banners), engine.clock() + 1))
        assert q["ever_views_banner"].tolist() == [sum(r["banner_id"] == b for r in rows) for b in banners]
        assert q["ever_clicked_banner"].tolist() == [float(any(r["banner_id"] == b and r["clicked"] for r in rows))
                                                     for b in banners]
    finally:
        engine.close()


@pytest.mark.parametrize("epsilon", [0.3])
def test_exploration_logs_exact_propensities(tmp_path, epsilon):
    arms = f'[arms]\nsalt = "s"\n[arms.A]\nshare = 1.0\nepsilon = {epsilon}\n'
    engine = engine_with_fake_model(tmp_path, arms)
    try:
        n = 3000
        counts: dict[tuple[str, int], int] = {}
        logged: dict[tuple[str, int], float] = {}
        explored = 0
        for i in range(n):
            out = engine.rank(f"x-{i}")  # new people: no history, the same greedy order
            explored += out.result.explored
            for it in out.result.items:
                counts[(it.banner_id, it.position)] = counts.get((it.banner_id, it.position), 0) + 1
                logged[(it.banner_id, it.position)] = it.propensity
            if i % 500 == 0:
                engine.flush()
        assert abs(explored / n - epsilon) < 0.04
        # the logged propensity is the one exploration.py computes for the same order...
        cands = [b for b in engine.catalog if b.banner_id not in ("b-heads", "b-old")]
        table = {"b-survey": 3.0, "b-event": 2.0, "b-info": 1.0, "b-policy": 0.5}
        keys = greedy_keys(np.array([table.get(b.banner_id, 0.0) for b in cands]),
                           np.array([b.pinned for b in cands]), np.array([b.priority for b in cands]))
        P = position_propensities(np.ones((1, len(cands)), bool), keys, np.array([b.pinned for b in cands]),
                                  epsilon, len(cands))[0]
        for (bid, pos), p in logged.items():
            assert p == pytest.approx(P[[b.banner_id for b in cands].index(bid), pos - 1])
            # ...and matches how often it actually happened (4 sd of a binomial)
            freq = counts[(bid, pos)] / n
            assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9
        # every position's propensities over the banners add up to 1
        for pos in range(1, len(cands) + 1):
            assert sum(p for (b, q), p in logged.items() if q == pos) == pytest.approx(1.0)
    finally:
        engine.close()


def test_seeded_exploration_is_reproducible(tmp_path):
    arms = '[arms]\nsalt = "s"\n[arms.A]\nshare = 1.0\nepsilon = 0.5\n'
    runs = []
    for k in range(2):
        d = tmp_path / str(k)
        d.mkdir()
        engine = engine_with_fake_model(d, arms)
        runs.append([tuple(engine.rank(f"p{i}").result.banner_ids) for i in range(50)])
        engine.close()
    assert runs[0] == runs[1] and len(set(runs[0])) > 1


def test_restart_loads_the_stored_history(tmp_path):
    """After a restart, the store's rankings and clicks are the base history."""
    engine = engine_with_fake_model(tmp_path)
    out = engine.rank("s-1")
    assert out.result.banner_ids[1] == "b-survey"
    engine.record_events([ClickEvent("e1", out.request_id, "b-survey", 0.0)])
    engine.close()
    engine = started_engine(engine.config, engine.models.registry)
    try:
        assert len(engine.online) == len(out.result.items[:out.slots])  # the stored ranking's impressions
        assert engine.rank("s-1").result.banner_ids[-1] == "b-survey"
    finally:
        engine.close()


def test_worker_started_between_a_ranking_and_its_click_applies_the_click(tmp_path):
    """The second uvicorn worker may start after the first served a ranking and before the
    click on it: the click, read from the store, must still change that person's ranking."""
    cfg = config_from(write_config(tmp_path))
    add_fake_model(cfg.models, "m1")
    FakeRegistry(cfg.models).promote("m1", verify=False)
    workers: list[RankingEngine] = []

    def start() -> RankingEngine:
        workers.append(started_engine(cfg, FakeRegistry(cfg.models)))
        return workers[-1]

    try:
        first = start()
        out = first.rank("s-1")
        first.flush()
        late = start()  # reads the store after the ranking was logged, before the click
        assert late.rank("s-1").result.banner_ids[1] == "b-survey"
        first.record_events([ClickEvent("e1", out.request_id, "b-survey", 0.0)])
        late.sync()
        assert late.rank("s-1").result.banner_ids[-1] == "b-survey"
    finally:
        for w in workers:
            w.close()


def test_readiness_reports_the_click_history_held(tmp_path):
    engine = engine_with_fake_model(tmp_path)
    try:
        assert engine.readiness.report()["history"] == {"impressions": 0, "people": 0, "open_rankings": 0}
        out = engine.rank("s-1", slots=2)
        engine.rank("s-2", slots=2)
        assert engine.readiness.report()["history"] == {"impressions": 4, "people": 2, "open_rankings": 2}
        assert out.slots == 2
    finally:
        engine.close()


def test_a_refused_ranking_does_not_stall_the_log_or_take_its_batch_with_it(tmp_path):
    """A row the store refuses (as PostgreSQL refuses a NUL) is dropped at once, the rest
    of its batch written: the log does not retry it with backoff while clicks wait for the
    flush before them."""
    import time

    engine = engine_with_fake_model(tmp_path)
    write = engine.store.log_rankings
    dropped = []
    engine.ranking_log.on_dropped = dropped.append

    def refuse_one(records):
        if any(r.staff_id == "refused" for r in records):
            raise ValueError("the store refuses this record")
        write(records)

    engine.store.log_rankings = refuse_one
    try:
        for staff in ("s-1", "refused", "s-2"):
            engine.rank(staff)
        t = time.perf_counter()
        engine.flush()  # one batch of three: the two the store takes are written
        assert time.perf_counter() - t < 0.3
        assert dropped == [1] and engine.ranking_log.error is None
        assert sorted(r.staff_id for r in engine.store.iter_rankings()) == ["s-1", "s-2"]
    finally:
        engine.store.log_rankings = write
        engine.close()


def test_rankings_wait_for_a_store_that_is_down_for_a_moment(tmp_path):
    engine = engine_with_fake_model(tmp_path)
    write = engine.store.log_rankings
    failures = [3]

    def down_at_first(records):
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError("database is locked")
        write(records)

    engine.store.log_rankings = down_at_first
    try:
        for staff in ("s-1", "s-2"):
            engine.rank(staff)
        engine.flush()
        assert sorted(r.staff_id for r in engine.store.iter_rankings()) == ["s-1", "s-2"]
        assert engine.ranking_log.error is None
    finally:
        engine.store.log_rankings = write
        engine.close()


def test_open_rankings_are_bounded_oldest_let_go_first():
    h = OnlineHistory(max_open_rankings=3)
    for i in range(5):
        h.add_ranking("s-1", f"r-{i}", 100.0 + i, [("b-1", "info")])
    assert h.counts()["open_rankings"] == 3 and h.evicted == 2
    assert [h.add_click(f"r-{i}", "b-1") for i in range(5)] == [False, False, True, True, True]
    assert h.counts()["impressions"] == 5  # the history itself keeps every impression


def test_an_open_ranking_costs_under_half_a_kilobyte():
    """What the bound is sized by (a 32-character request id, a staff id, three banners;
    the staff id a new string object each time, as each request's JSON gives one; the
    person's history counters are not part of it: one person here)."""
    import tracemalloc

    h = OnlineHistory()
    shown = [("b-policy-01", "policy"), ("b-survey-02", "survey"), ("b-event-03", "event")]
    h.add_ranking("s-warm", "warm-up", 1.0, shown)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(20_000):
        h.add_ranking(f"s-{1 + i % 1:06d}", f"{i:032x}", 2.0 + i, shown)
    per = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    tracemalloc.stop()
    assert per < 512, per


def test_the_reserved_click_counters_are_not_outgrown_by_traffic_that_fits(tmp_path):
    """The engine takes ``online_history_pairs`` entries of counters at start; traffic whose
    person x banner pairs fit in them (its rows moving as they outgrow their room) grows no
    array: the counters' memory stays what it was at start."""
    cfg = config_from(write_config(tmp_path, extra="online_history_pairs = 20000\n"))
    assert cfg.online_history_pairs == 20000
    reg = FakeRegistry(cfg.models)
    add_fake_model(cfg.models, "m1")
    reg.promote("m1", verify=False)
    engine = started_engine(cfg, reg)
    try:
        h = engine.online
        delta = h._first.delta
        assert len(delta.pb_key) >= 20000
        arrays = {n: getattr(delta, n) for n in delta.NAMES if n != "glob"}  # glob: per banner
        rng = np.random.default_rng(0)
        for i in range(40 * 200):  # 200 people, each shown 3 of 30 banners 40 times
            shown = rng.choice(30, size=3, replace=False)
            h.add_ranking(f"s-{i % 200}", f"r-{i}", 1000.0 + i, [(f"b-{b}", f"c-{b % 5}") for b in shown])
        assert all(getattr(delta, n) is a for n, a in arrays.items()), "an array was replaced (grown)"
        assert h._first.delta is delta and int(delta.pb_len.sum()) > 200 * 20
    finally:
        engine.close()
