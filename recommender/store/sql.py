"""The SQL both event stores share: the schema, every query and the logic around them
(idempotent inserts, click flagging, document versions), written once.

A backend supplies only what really differs: its ``Dialect`` (placeholder, column types,
how a conflicting insert is ignored or replaces the row) and its connection handling
(``_tx`` runs a function in one committed write transaction, ``_read`` runs a query).
Queries here are written with ``?`` placeholders; ``Dialect.sql`` turns them into the
driver's own.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from .base import (EVENT_COLUMNS, OK, RANKING_COLUMNS, STAFF_DOC, ClickEvent, Erasure, EventsOutcome, EventStore,
                   ForgetResult, PruneResult, RankingRecord, click_status, erasure_key)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rankings (
    seq {serial},
    request_id TEXT NOT NULL UNIQUE,
    ts {real} NOT NULL,
    staff_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    model_version TEXT NOT NULL,
    explored {boolean} NOT NULL,
    slots INTEGER NOT NULL,
    items TEXT NOT NULL,
    candidates TEXT NOT NULL,
    writer TEXT NOT NULL DEFAULT '',
    slot_ids TEXT
);
CREATE INDEX IF NOT EXISTS rankings_ts ON rankings (ts);
CREATE INDEX IF NOT EXISTS rankings_staff ON rankings (staff_id);
CREATE TABLE IF NOT EXISTS events (
    seq {serial},
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    request_id TEXT NOT NULL,
    banner_id TEXT NOT NULL,
    ts {real} NOT NULL,
    received {real} NOT NULL,
    status TEXT NOT NULL,
    writer TEXT NOT NULL DEFAULT '',
    value {real}
);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
CREATE INDEX IF NOT EXISTS events_received ON events (received);
CREATE TABLE IF NOT EXISTS documents (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staff (
    staff_id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    seq {serial},
    staff_key TEXT NOT NULL,
    ts {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY,
    ts {real} NOT NULL
);
"""

RANKING_INSERT = ("request_id", "ts", "staff_id", "arm", "model_version", "explored", "slots", "items",
                  "candidates", "writer", "slot_ids")
EVENT_INSERT = ("event_id", "type", "request_id", "banner_id", "ts", "received", "status", "writer", "value")
# columns added to a table after its first schema: a store made before gets them when opened
ADDED_COLUMNS = (("events", "value", "{real}"), ("rankings", "slot_ids", "TEXT"))
ERASURE_SALT_DOC = "erasure_salt"  # the documents row that holds the erasure records' salt


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of two backends."""

    mark: str  # the driver's placeholder
    serial: str  # an auto-increment primary key column
    real: str  # a float column
    boolean: str  # the explored flag's column type
    or_clause: bool  # SQLite's INSERT OR IGNORE / OR REPLACE rather than ON CONFLICT
    max_params: int  # bound parameters one statement may hold

    def sql(self, text: str) -> str:
        return text if self.mark == "?" else text.replace("?", self.mark)

    def added_columns(self) -> list[tuple[str, str, str]]:
        """(table, column, type) of ADDED_COLUMNS in this dialect."""
        return [(t, c, kind.format(real=self.real)) for t, c, kind in ADDED_COLUMNS]

    def schema(self) -> str:
        return SCHEMA.format(serial=self.serial, real=self.real, boolean=self.boolean)

    def insert(self, table: str, columns: Sequence[str], key: str, replace: bool = False, rows: int = 1) -> str:
        """An insert of ``rows`` rows that skips (or, with ``replace``, overwrites) a row
        whose ``key`` is already stored, instead of failing."""
        one = f"({','.join([self.mark] * len(columns))})"
        head = f"{table} ({', '.join(columns)}) VALUES {','.join([one] * rows)}"
        if self.or_clause:
            return f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO {head}"
        if not replace:
            return f"INSERT INTO {head} ON CONFLICT ({key}) DO NOTHING"
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
        return f"INSERT INTO {head} ON CONFLICT ({key}) DO UPDATE SET {updates}"


def statement_sizes(n: int, most: int) -> list[int]:
    """Row counts of the statements that write ``n`` rows, each a power of two and at
    most ``most`` (largest first): at most about log2(``most``) distinct statements ever."""
    top = 1 << (max(1, most).bit_length() - 1)  # the largest power of two <= most
    sizes = [top] * (n // top)
    rest = n % top
    sizes += [1 << b for b in range(rest.bit_length() - 1, -1, -1) if rest >> b & 1]
    return sizes


class SQLStore(EventStore):
    """An EventStore over one DB-API connection guarded by a lock."""

    dialect: Dialect
    _lock: threading.Lock
    _db: Any
    _salt: str | None = None  # the erasure records' salt, once read

    @abstractmethod
    def _tx(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(db)`` in one write transaction, committed (and durable) on return;
        ``db`` has ``execute`` and ``executemany`` returning cursors."""

    def _write_statement(self, sql: str, args: Sequence) -> None:
        """One write statement, committed (and durable) on return. A backend that can run
        a lone statement as its own transaction in one driver call overrides this."""
        self._tx(lambda db: db.execute(sql, args))

    @abstractmethod
    def _read(self, sql: str, args: Sequence = ()) -> list:
        """All rows of one query (driver placeholders)."""

    # -- writes -----------------------------------------------------------------------
    def log_rankings(self, records: list[RankingRecord]) -> None:
        """Every record in a few multi-row statements: each driver call hands the GIL over
        and takes it back, and a writer thread taking it back stalls the thread that
        serves requests far longer than the rows cost (measured with bench_service.py:
        row by row, executemany cost the requests ~125 us per ranking). Records already
        stored (same request_id) are skipped, so a retry is harmless.

        The statements hold a power of two of rows each (``statement_sizes``): the driver
        keeps each distinct statement it ran prepared (about 150 KB for a few hundred
        rows), so a statement per batch size grew a process logging batches of random
        sizes by about 17 MB, and was a 30-minute soak's steady growth (bench_soak.py)."""
        if not records:
            return
        rows = [(r.request_id, r.ts, r.staff_id, r.arm, r.model_version, bool(r.explored), r.slots, r.items_json(),
                 r.candidates_json(), r.writer, r.slot_ids_json()) for r in records]
        sizes = statement_sizes(len(rows), max(1, self.dialect.max_params // len(RANKING_INSERT)))

        def insert(chunk: list[tuple]) -> tuple[str, list]:
            return (self.dialect.insert("rankings", RANKING_INSERT, "request_id", rows=len(chunk)),
                    [v for row in chunk for v in row])

        if len(sizes) == 1:
            self._write_statement(*insert(rows))
            return

        def work(db):
            start = 0
            for n in sizes:
                db.execute(*insert(rows[start:start + n]))
                start += n

        self._tx(work)

    def add_events(self, events: list[ClickEvent]) -> EventsOutcome:
        out = EventsOutcome()
        if not events:
            return out
        find = self.dialect.sql("SELECT items, slots FROM rankings WHERE request_id = ?")
        insert = self.dialect.insert("events", EVENT_INSERT, "event_id")

        def work(db):
            shown_cache: dict[str, list[str] | None] = {}
            for e in events:
                if e.request_id not in shown_cache:
                    row = db.execute(find, (e.request_id,)).fetchone()
                    shown_cache[e.request_id] = None if row is None else [x[0] for x in json.loads(row[0])[: row[1]]]
                e.status = click_status(shown_cache[e.request_id], e.banner_id)
                cur = db.execute(insert, (e.event_id, e.type, e.request_id, e.banner_id, e.ts,
                                          e.received or time.time(), e.status, e.writer, e.value))
                if cur.rowcount == 1:
                    out.stored.append(e.event_id)
                    if e.status != OK:
                        out.flagged[e.event_id] = e.status
                else:
                    out.duplicates.append(e.event_id)
            return out

        return self._tx(work)

    def _bump_version(self, db, name: str, body: str | None) -> int:
        """Add one to a document's version (creating it at 1), atomically: the UPDATE
        holds the row until commit, so concurrent writers never hand out one version twice."""
        db.execute(self.dialect.insert("documents", ("name", "version", "body"), "name"), (name, 0, body or ""))
        if body is None:
            db.execute(self.dialect.sql("UPDATE documents SET version = version + 1 WHERE name = ?"), (name,))
        else:
            db.execute(self.dialect.sql("UPDATE documents SET version = version + 1, body = ? WHERE name = ?"),
                       (body, name))
        return int(db.execute(self.dialect.sql("SELECT version FROM documents WHERE name = ?"), (name,)).fetchone()[0])

    def put_document(self, name: str, body: str) -> int:
        return self._tx(lambda db: self._bump_version(db, name, body))

    def get_document(self, name: str) -> tuple[int, str] | None:
        rows = self._read(self.dialect.sql("SELECT version, body FROM documents WHERE name = ?"), (name,))
        return None if not rows else (int(rows[0][0]), rows[0][1])

    def upsert_staff(self, rows: list[tuple[str, dict]]) -> int:
        sql = self.dialect.insert("staff", ("staff_id", "attributes"), "staff_id", replace=True)

        def work(db):
            db.executemany(sql, [(sid, json.dumps(attrs, ensure_ascii=False)) for sid, attrs in rows])
            return self._bump_version(db, "staff", None)

        return self._tx(work)

    def all_staff(self) -> list[tuple[str, dict]]:
        """Every staff row; rows with the same attributes share one dict (a province has
        a few thousand distinct profiles among 180,000 people)."""
        parsed: dict[str, dict] = {}
        return [(sid, parsed.get(a) or parsed.setdefault(a, json.loads(a)))
                for sid, a in self._read("SELECT staff_id, attributes FROM staff ORDER BY staff_id")]

    # -- retention and erasure ----------------------------------------------------------
    def _in(self, n: int) -> str:
        return "(" + ",".join(["?"] * n) + ")"

    def _delete_rankings(self, db, where: str, args: tuple, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` rankings matching ``where`` (oldest seq first) and the
        click events on them, in the caller's transaction: (rankings, events) deleted."""
        rows = db.execute(self.dialect.sql(f"SELECT seq, request_id FROM rankings WHERE {where} ORDER BY seq LIMIT ?"),
                          (*args, batch)).fetchall()
        if not rows:
            return 0, 0
        step = max(1, self.dialect.max_params - 1)
        events = 0
        for i in range(0, len(rows), step):
            part = rows[i:i + step]
            cur = db.execute(self.dialect.sql(f"DELETE FROM events WHERE request_id IN {self._in(len(part))}"),
                             [r[1] for r in part])
            events += max(cur.rowcount, 0)
            db.execute(self.dialect.sql(f"DELETE FROM rankings WHERE seq IN {self._in(len(part))}"),
                       [r[0] for r in part])
        return len(rows), events

    def _batches(self, work: Callable[[Any], tuple[int, int]], batch: int, pause: float,
                 stop: Callable[[], bool] | None = None) -> tuple[int, int]:
        """Run ``work`` in transactions of its own until it deletes fewer than ``batch``
        rows (or ``stop`` answers True); the totals it deleted."""
        first = second = 0
        while True:
            a, b = self._tx(work)
            first, second = first + a, second + b
            if a < batch or (stop is not None and stop()):
                return first, second
            if pause:
                time.sleep(pause)

    def prune(self, before_ts: float, batch: int = 2000, pause: float = 0.0,
              stop: Callable[[], bool] | None = None) -> PruneResult:
        batch = max(1, int(batch))
        rankings, events = self._batches(lambda db: self._delete_rankings(db, "ts < ?", (before_ts,), batch),
                                         batch, pause, stop)
        orphan_sql = self.dialect.sql("DELETE FROM events WHERE seq IN "
                                      "(SELECT seq FROM events WHERE received < ? ORDER BY seq LIMIT ?)")

        def old_events(db) -> tuple[int, int]:
            n = max(db.execute(orphan_sql, (before_ts, batch)).rowcount, 0)
            return n, 0

        more, _ = self._batches(old_events, batch, pause, stop)
        return PruneResult(rankings, events + more)

    def delete_rankings_of(self, staff_id: str, before_ts: float, batch: int = 2000) -> tuple[int, int]:
        batch = max(1, int(batch))
        return self._batches(lambda db: self._delete_rankings(db, "staff_id = ? AND ts < ?", (staff_id, before_ts),
                                                              batch), batch, 0.0)

    def forget(self, staff_id: str, now: float, batch: int = 2000) -> ForgetResult:
        batch = max(1, int(batch))
        rankings, events = self._batches(lambda db: self._delete_rankings(db, "staff_id = ?", (staff_id,), batch),
                                         batch, 0.0)
        delete_staff = self.dialect.sql("DELETE FROM staff WHERE staff_id = ?")
        record = self.dialect.sql("INSERT INTO erasures (staff_key, ts) VALUES (?, ?)")
        key = erasure_key(self.erasure_salt(), staff_id)

        def staff_row_and_record(db) -> int:
            n = max(db.execute(delete_staff, (staff_id,)).rowcount, 0)
            if n:
                self._bump_version(db, STAFF_DOC, None)
            db.execute(record, (key, now))
            return n

        return ForgetResult(rankings, events, self._tx(staff_row_and_record))

    def erasure_salt(self) -> str:
        if self._salt is None:
            doc = self.get_document(ERASURE_SALT_DOC)
            if doc is None:  # the first to insert it wins: every process reads the same salt
                insert = self.dialect.insert("documents", ("name", "version", "body"), "name")
                self._tx(lambda db: db.execute(insert, (ERASURE_SALT_DOC, 1, secrets.token_hex(16))))
                doc = self.get_document(ERASURE_SALT_DOC)
            self._salt = doc[1]
        return self._salt

    def erasures_after(self, seq: int) -> list[Erasure]:
        sql = self.dialect.sql("SELECT seq, staff_key, ts FROM erasures WHERE seq > ? ORDER BY seq")
        rows = self._read(sql, (seq,))
        return [Erasure(int(q), k, float(t)) for q, k, t in rows]

    def check_writable(self) -> None:
        sql = self.dialect.insert("heartbeat", ("id", "ts"), "id", replace=True)
        self._tx(lambda db: db.execute(sql, (1, time.time())))

    # -- reads ------------------------------------------------------------------------
    def _after(self, table: str, columns: str, seq: int, limit: int, **where: Any) -> list:
        """Rows of ``table`` with seq > seq in seq order; ``where`` adds the conditions
        since_ts (ts >=), exclude_writer (writer <>) and upto (seq <=) that are not None."""
        sql = f"SELECT {columns} FROM {table} WHERE seq > ?"
        args: list = [seq]
        for name, condition in (("since_ts", "ts >= ?"), ("exclude_writer", "writer <> ?"), ("upto", "seq <= ?")):
            if where.get(name) is not None:
                sql += f" AND {condition}"
                args.append(where[name])
        return self._read(self.dialect.sql(sql + " ORDER BY seq LIMIT ?"), args + [limit])

    def rankings_after(self, seq: int, limit: int = 10000, since_ts: float | None = None,
                       exclude_writer: str | None = None, upto: int | None = None) -> list[RankingRecord]:
        rows = self._after("rankings", RANKING_COLUMNS, seq, limit, since_ts=since_ts, exclude_writer=exclude_writer,
                           upto=upto)
        return [RankingRecord.from_row(r) for r in rows]

    def events_after(self, seq: int, limit: int = 10000, exclude_writer: str | None = None,
                     upto: int | None = None) -> list[ClickEvent]:
        rows = self._after("events", EVENT_COLUMNS, seq, limit, exclude_writer=exclude_writer, upto=upto)
        return [ClickEvent.from_row(r) for r in rows]

    def ranking(self, request_id: str) -> RankingRecord | None:
        rows = self._read(self.dialect.sql(f"SELECT {RANKING_COLUMNS} FROM rankings WHERE request_id = ?"), (request_id,))
        return None if not rows else RankingRecord.from_row(rows[0])

    def max_seq(self) -> tuple[int, int]:
        rows = self._read("SELECT (SELECT coalesce(max(seq), 0) FROM rankings), (SELECT coalesce(max(seq), 0) FROM events)")
        return int(rows[0][0]), int(rows[0][1])

    def clicks_per_request(self, since_ts: float) -> dict[str, dict[int, int]]:
        sql = self.dialect.sql(
            "SELECT r.arm, coalesce(c.n, 0) AS clicks, count(*) FROM rankings r "
            "LEFT JOIN (SELECT request_id, count(DISTINCT banner_id) AS n FROM events "
            f"WHERE type = 'click' AND status = '{OK}' AND received >= ? GROUP BY request_id) c "
            "ON c.request_id = r.request_id WHERE r.ts >= ? GROUP BY r.arm, coalesce(c.n, 0)")
        out: dict[str, dict[int, int]] = {}
        for arm, clicks, n in self._read(sql, (since_ts, since_ts)):
            out.setdefault(arm, {})[int(clicks)] = int(n)
        return out

    def counts(self) -> dict[str, int]:
        out = {"rankings": self._read("SELECT count(*) FROM rankings")[0][0],
               "events": self._read("SELECT count(*) FROM events")[0][0]}
        for status, n in self._read("SELECT status, count(*) FROM events GROUP BY status"):
            out[f"events_{status}"] = n
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
