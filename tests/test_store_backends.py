"""The event store contract, run against SQLite (WAL) and the local PostgreSQL server."""
from __future__ import annotations

import dataclasses
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.contracts import write_impressions
from recommender.contracts.impressions import load_impressions
from recommender.store import NOT_SHOWN, OK, UNKNOWN_REQUEST, ClickEvent, RankingRecord, open_store
from recommender.store.sql import statement_sizes


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
        yield s
        s.close()
        return
    s = open_store(request.getfixturevalue("pg_url"))
    try:
        yield s
    finally:
        s.close()


def _ranking(rid: str, staff: str = "s-1", ts: float = 1_700_000_000.0, slots: int = 2) -> RankingRecord:
    items = [("b-1", 1, 0.9, 0.9), ("b-2", 2, 0.5, 0.85), ("b-3", 3, 0.1, 0.05)]
    return RankingRecord(rid, ts, staff, "A", "v1", False, slots, items, ["b-1", "b-2", "b-3"], writer="w")


def test_events_are_idempotent_and_flagged(store):
    store.log_rankings([_ranking("r-1")])
    first = store.add_events([ClickEvent("e-1", "r-1", "b-1", 1.7e9 + 5),
                              ClickEvent("e-2", "r-unknown", "b-1", 1.7e9 + 6),
                              ClickEvent("e-3", "r-1", "b-3", 1.7e9 + 7)])
    assert first.stored == ["e-1", "e-2", "e-3"] and first.duplicates == []
    assert first.flagged == {"e-2": UNKNOWN_REQUEST, "e-3": NOT_SHOWN}
    again = store.add_events([ClickEvent("e-1", "r-1", "b-1", 1.7e9 + 5), ClickEvent("e-4", "r-1", "b-2", 1.7e9 + 8)])
    assert again.stored == ["e-4"] and again.duplicates == ["e-1"]
    counts = store.counts()
    assert counts["events"] == 4 and counts["rankings"] == 1
    assert counts[f"events_{OK}"] == 2 and counts[f"events_{UNKNOWN_REQUEST}"] == 1
    statuses = {e.event_id: e.status for e in store.iter_events()}
    assert statuses == {"e-1": OK, "e-2": UNKNOWN_REQUEST, "e-3": NOT_SHOWN, "e-4": OK}


def test_ranking_logged_twice_is_kept_once(store):
    store.log_rankings([_ranking("r-1"), _ranking("r-2", staff="s-2")])
    store.log_rankings([_ranking("r-1")])
    got = list(store.iter_rankings())
    assert [r.request_id for r in got] == ["r-1", "r-2"]
    assert got[0].items[0] == ("b-1", 1, 0.9, 0.9) and got[0].candidates == ["b-1", "b-2", "b-3"]
    assert store.rankings_after(got[0].seq)[0].request_id == "r-2"


@pytest.mark.parametrize("max_params", [None, 25])
def test_a_batch_of_rankings_is_stored_whole_and_once(store, max_params):
    """The writer's batch goes in one statement when its size is a power of two that fits
    (None: the backend's limit), else in a few statements of one transaction (101 rows:
    64 + 32 + 4 + 1; 25 parameters: at most 2 rows each)."""
    if max_params is not None:
        store.dialect = dataclasses.replace(store.dialect, max_params=max_params)
    calls = []
    for name in ("_write_statement", "_tx"):  # count the backend's write calls
        method = getattr(store, name)
        setattr(store, name, lambda *a, _m=method, _n=name: calls.append(_n) or _m(*a))
    batch = [_ranking(f"r-{i:03d}", staff=f"s-{i}", ts=1.7e9 + i) for i in range(101)]
    store.log_rankings(batch[:64])
    assert calls[0] == ("_write_statement" if max_params is None else "_tx") and len(calls) <= 2
    calls.clear()
    store.log_rankings(batch)
    assert calls[0] == "_tx" and len(calls) <= 2  # one transaction of several statements; never a call per row
    store.log_rankings(batch[50:] + [_ranking("r-new")])  # a retry of half of it, and one more
    got = list(store.iter_rankings())
    assert [r.request_id for r in got] == [r.request_id for r in batch] + ["r-new"]
    assert [r.staff_id for r in got[:101]] == [r.staff_id for r in batch]
    assert got[100].items == batch[100].items and got[100].ts == batch[100].ts


@given(st.integers(0, 5000), st.integers(1, 5000))
def test_statement_sizes_are_few_powers_of_two_that_add_up(n, most):
    sizes = statement_sizes(n, most)
    assert sum(sizes) == n and all(0 < x <= most and x & (x - 1) == 0 for x in sizes)
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) <= most.bit_length()


def test_batches_of_every_size_run_few_distinct_statements(tmp_path):
    """The driver keeps every distinct statement prepared (about 150 KB for a few hundred
    rows): batches of each size from 1 to 120 must not make 120 of them."""
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    seen: set[str] = set()
    store._db.set_trace_callback(lambda sql: seen.add(sql.split("VALUES")[0] + str(sql.count("("))))
    k = 0
    for n in range(1, 121):
        store.log_rankings([_ranking(f"r-{k + i}") for i in range(n)])
        k += n
    store._db.set_trace_callback(None)
    assert len(list(store.iter_rankings())) == k
    assert len({s for s in seen if s.startswith("INSERT INTO rankings")}) <= 7  # 1, 2, 4, ..., 64 rows
    store.close()


def test_sqlite_refuses_to_log_inside_an_open_transaction(tmp_path):
    """A lone statement would join it and never commit: an error, not silent loss."""
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        assert s.dialect.max_params == s._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        s._db.execute("BEGIN")
        with pytest.raises(sqlite3.OperationalError, match="inside a transaction"):
            s.log_rankings([_ranking("r-1")])
        s._db.execute("ROLLBACK")
        s.log_rankings([_ranking("r-1")])
        assert [r.request_id for r in s.iter_rankings()] == ["r-1"]
    finally:
        s.close()


def test_export_writes_the_impressions_contract(store, tmp_path):
    store.log_rankings([_ranking("r-1"), _ranking("r-2", staff="s-2", ts=1.7e9 + 60, slots=3)])
    store.add_events([ClickEvent("e-1", "r-1", "b-2", 1.7e9 + 1), ClickEvent("e-1b", "r-1", "b-2", 1.7e9 + 2),
                      ClickEvent("e-2", "r-1", "b-3", 1.7e9 + 3)])  # b-3 is past r-1's 2 slots
    out = tmp_path / "imp.jsonl"
    n = write_impressions(out, store.export_impressions())
    assert n == 5  # 2 slots + 3 slots
    log = load_impressions(out)
    rows = list(log.iter_rows())
    assert [(r["request_id"], r["banner_id"], r["clicked"]) for r in rows] == [
        ("r-1", "b-1", 0), ("r-1", "b-2", 1), ("r-2", "b-1", 0), ("r-2", "b-2", 0), ("r-2", "b-3", 0)]
    assert rows[1]["propensity"] == 0.85 and rows[0]["candidates"] == ["b-1", "b-2", "b-3"]


def test_documents_and_staff(store):
    assert store.get_document("catalog") is None
    assert store.put_document("catalog", "[1]") == 1
    assert store.put_document("catalog", "[2]") == 2
    assert store.get_document("catalog") == (2, "[2]")
    v1 = store.upsert_staff([("s-1", {"role": "teacher"}), ("s-2", {"role": "principal"})])
    v2 = store.upsert_staff([("s-1", {"role": "head_teacher", "region": "Suwon"})])
    assert v2 == v1 + 1
    assert store.all_staff() == [("s-1", {"role": "head_teacher", "region": "Suwon"}), ("s-2", {"role": "principal"})]
    store.check_writable()


def test_document_versions_are_unique_across_writers(store):
    """Two connections (replicas) bumping one document concurrently never get the same version."""
    other = open_store(store.url)
    try:
        with ThreadPoolExecutor(4) as pool:
            versions = list(pool.map(lambda i: (store, other)[i % 2].put_document("catalog", f"[{i}]"), range(40)))
    finally:
        other.close()
    assert sorted(versions) == list(range(1, 41))
    assert store.get_document("catalog")[0] == 40


ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(ids, st.sampled_from(["r-1", "r-x"]), st.sampled_from(["b-1", "b-2", "b-3"])),
                      min_size=1, max_size=15))
def test_any_batch_stores_each_event_id_once(store, batch):
    store.log_rankings([_ranking("r-1")])
    before = {e.event_id for e in store.iter_events()}
    events = [ClickEvent(eid, rid, bid, 1.7e9) for eid, rid, bid in batch]
    out = store.add_events(events)
    new_ids = list(dict.fromkeys(eid for eid, _, _ in batch if eid not in before))
    assert out.stored == new_ids
    assert len(out.stored) + len(out.duplicates) == len(batch)
    after = [e.event_id for e in store.iter_events()]
    assert len(after) == len(set(after)) == len(before) + len(new_ids)


def test_sqlite_runs_in_wal_mode(tmp_path):
    s = open_store(str(tmp_path / "x.db"))
    try:
        assert s.journal_mode() == "wal"
    finally:
        s.close()


def test_tail_returns_other_writers_rows_once(store):
    mine = _ranking("r-mine")
    theirs = _ranking("r-theirs", staff="s-2")
    mine.writer, theirs.writer = "me", "them"
    store.log_rankings([mine, theirs])
    e_mine = ClickEvent("e-mine", "r-mine", "b-1", 1.7e9, writer="me")
    e_theirs = ClickEvent("e-theirs", "r-theirs", "b-1", 1.7e9, writer="them")
    store.add_events([e_mine, e_theirs])
    rankings, events, sr, se = store.tail(0, 0, "me")
    assert [r.request_id for r in rankings] == ["r-theirs"] and [e.event_id for e in events] == ["e-theirs"]
    assert (sr, se) == store.max_seq()
    assert store.tail(sr, se, "me")[:2] == ([], [])  # nothing new: nothing read again
    later = _ranking("r-later")
    later.writer = "them"
    store.log_rankings([later])
    rankings, events, sr2, _ = store.tail(sr, se, "me")
    assert [r.request_id for r in rankings] == ["r-later"] and sr2 > sr


def test_clicks_per_request_by_arm(store):
    records = [_ranking(f"r-{i}", ts=1_700_000_000.0 + i) for i in range(4)]
    records[3] = dataclasses.replace(records[3], arm="B")
    store.log_rankings(records)
    store.add_events([ClickEvent("e-1", "r-0", "b-1", 1.7e9 + 5, received=1.7e9 + 5),
                      ClickEvent("e-2", "r-0", "b-2", 1.7e9 + 6, received=1.7e9 + 6),
                      ClickEvent("e-3", "r-0", "b-2", 1.7e9 + 7, received=1.7e9 + 7),  # the same banner again
                      ClickEvent("e-4", "r-1", "b-3", 1.7e9 + 8, received=1.7e9 + 8),  # not shown: flagged
                      ClickEvent("e-5", "r-3", "b-1", 1.7e9 + 9, received=1.7e9 + 9)])
    assert store.clicks_per_request(1_700_000_000.0) == {"A": {2: 1, 0: 2}, "B": {1: 1}}
    assert store.clicks_per_request(1_700_000_002.0) == {"A": {0: 1}, "B": {1: 1}}
