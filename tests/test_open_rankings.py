"""The compact store of rankings open to clicks (service.open_rankings), against a plain
model of it, and through the online history that joins clicks to it."""
from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.online import OnlineHistory
from service import open_rankings
from service.open_rankings import OpenRankings

PAIRS = [("b-1", "info"), ("b-2", "survey"), ("b-3", "event"), ("b-4", "policy"), ("b-5", "custom"), ("b-6", "info")]

ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 40), st.integers(0, 5),
              st.lists(st.sampled_from(PAIRS), min_size=0, max_size=6, unique=True)),
    st.tuples(st.just("click"), st.integers(0, 40), st.integers(0, 5)),
    st.tuples(st.just("forget"), st.integers(0, 5)),
    st.tuples(st.just("drop"),),
), max_size=120)


def crowded_digest(request_id: str) -> tuple[int, int]:
    """Digests that share their low bits (the table's home slot) often: long probe runs."""
    n = int(request_id.split("-")[1])
    return n + 1, n % 3


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9), ops, st.booleans(), st.booleans())
def test_the_store_behaves_as_a_bounded_ordered_map_of_rankings(capacity, program, compact_often, crowded):
    """Whatever the order of adds, clicks, erasures and expiry, and however the hash table's
    probe runs and the ring wrap, the store answers as a dict of the newest ``capacity``
    rankings in arrival order would."""
    with pytest.MonkeyPatch.context() as mp:
        if crowded:
            mp.setattr(open_rankings, "_digest", crowded_digest)
        check_against_model(capacity, program, compact_often)


def check_against_model(capacity, program, compact_often):
    store = OpenRankings(capacity, width=2)
    if compact_often:
        store.COMPACT_SLACK = 0
    model: dict[str, dict] = {}  # request -> staff, shown, clicked; in arrival order
    evicted = 0
    for t, op in enumerate(program):
        if op[0] == "add":
            rid, staff, shown = f"r-{op[1]}", f"s-{op[2]}", op[3]
            added = store.add(rid, staff, float(t), shown) >= 0
            assert added == (rid not in model)
            if added:
                if len(model) == capacity:
                    del model[next(iter(model))]
                    evicted += 1
                model[rid] = {"staff": staff, "ts": float(t), "shown": shown, "clicked": set()}
        elif op[0] == "click":
            rid = f"r-{op[1]}"
            row = store.row(rid)
            assert (row >= 0) == (rid in model)
            if row >= 0 and op[2] < len(model[rid]["shown"]):
                banner = model[rid]["shown"][op[2]][0]
                assert store.click(row, op[2]) == (banner not in model[rid]["clicked"])
                model[rid]["clicked"].add(banner)
        elif op[0] == "forget":
            staff = f"s-{op[1]}"
            gone = [r for r, e in model.items() if e["staff"] == staff]
            assert store.forget([staff]) == len(gone)
            for r in gone:
                del model[r]
        else:
            store.drop_oldest()
            if model:
                del model[next(iter(model))]
        assert len(store) == len(model)
        assert store.oldest_ts() == (next(iter(model.values()))["ts"] if model else None)
    assert store.evicted <= evicted  # rows erased from a full ring make room without an eviction
    assert store.people() == {e["staff"] for e in model.values()}
    for i in range(41):
        rid = f"r-{i}"
        row = store.row(rid)
        assert (row >= 0) == (rid in model)
        if row >= 0:
            e = model[rid]
            assert (store.staff(row), store.ts(row), store.shown(row), store.clicked(row)) == (
                e["staff"], e["ts"], e["shown"], e["clicked"])


def test_forgotten_people_leave_no_id_behind():
    store = OpenRankings(8)
    store.add("r-1", "s-gone", 1.0, PAIRS[:2])
    store.add("r-2", "s-kept", 2.0, PAIRS[:2])
    assert store.forget(["s-gone", "s-unknown"]) == 1
    assert "s-gone" not in store._people.code and "s-gone" not in store._people.names
    assert store.people() == {"s-kept"} and store.row("r-1") == -1


def test_ids_no_ranking_uses_are_let_go_as_the_ring_turns():
    """A service sees new people and banner ids all day: the tables of ids stay about as
    large as what the open rankings hold."""
    store = OpenRankings(100)
    for i in range(10_000):
        store.add(f"r-{i}", f"s-{i}", float(i), [(f"b-{i}", "info")])
    assert len(store) == 100 and store.evicted == 9_900
    assert len(store._people.names) <= 2 * 100 + store.COMPACT_SLACK + 100 + 1
    assert len(store._pairs.names) <= 2 * 100 + store.COMPACT_SLACK + 100 + 1
    assert store.shown(store.row("r-9999")) == [("b-9999", "info")] and store.staff(store.row("r-9950")) == "s-9950"


def test_a_click_joins_its_ranking_after_the_ring_turned_many_times():
    h = OnlineHistory(max_open_rankings=50)
    for i in range(1_000):
        h.add_ranking(f"s-{i % 7}", f"r-{i}", 100.0 + i, [("b-1", "info"), ("b-2", "survey")])
    assert h.counts()["open_rankings"] == 50 and h.evicted == 950
    assert h.add_click("r-949", "b-2") is False  # let go: waits as an early click
    assert h.add_click("r-990", "b-2") is True and h.clicked_of("r-990") == {"b-2"}
    assert h.staff_of("r-990") == "s-3"
    q = h.query_person("s-3", ["b-1", "b-2"], ["info", "survey"], 2000.0)
    assert q["ever_clicked_banner"].tolist() == [0.0, 1.0]


def test_a_click_counts_once_however_often_it_or_its_ranking_arrives():
    h = OnlineHistory()
    shown = [("b-1", "info"), ("b-2", "survey")]
    h.add_ranking("s-1", "r-1", 100.0, shown)
    h.add_ranking("s-1", "r-1", 100.0, shown)  # the same ranking synced again
    assert [h.add_click("r-1", "b-1") for _ in range(3)] == [True] * 3
    assert h.add_click("r-1", "b-9") is False  # not shown on it
    assert h.counts()["impressions"] == 2
    q = h.query(["s-1", "s-1"], ["b-1", "b-2"], ["info", "survey"], [200.0, 200.0])
    assert q["ever_views_banner"].tolist() == [1.0, 1.0] and q["ever_clicked_banner"].tolist() == [1.0, 0.0]
    assert h._first.query_person("s-1", ["b-1"], ["info"], 200.0)["ever_clicked_banner"].tolist() == [1.0]


def test_rankings_expire_by_time_and_a_click_after_expiry_is_not_joined():
    h = OnlineHistory(click_window_days=1.0)
    h.add_ranking("s-1", "r-old", 0.0, [("b-1", "info")])
    h.add_ranking("s-1", "r-new", 86_000.0, [("b-1", "info")])
    h.add_ranking("s-2", "r-later", 86_401.0, [("b-1", "info")])
    assert h.counts()["open_rankings"] == 2
    assert h.add_click("r-old", "b-1") is False and h.add_click("r-new", "b-1") is True


@pytest.mark.parametrize("n_shown", [3, 5])
def test_an_open_ranking_costs_under_a_hundred_bytes(n_shown):
    """Arrays sized for the bound, plus what the Python heap takes per ranking (a new
    32-character request id each time, a staff id, ``n_shown`` banners)."""
    bound = 20_000
    h = OnlineHistory(max_open_rankings=bound)
    shown = PAIRS[:n_shown]
    h.add_ranking("s-warm", "warm-up", 1.0, shown)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(bound):
        h.add_ranking(f"s-{1 + i % 1:06d}", f"{i:032x}", 2.0 + i, shown)
    heap = (tracemalloc.get_traced_memory()[0] - before) / bound
    tracemalloc.stop()
    per = h._open.nbytes() / bound + heap
    assert per < 100, (per, heap)
