"""SQLite event store in WAL mode: the embedded default.

WAL lets readers (export, tailing by other workers) run while the service writes;
``synchronous=FULL`` makes every commit durable (the WAL is synced) before the call
returns, which is what lets POST /v1/events answer only after the events are safe.
Several processes (uvicorn workers) may open the same file; writes are serialised by
SQLite's lock, with a busy timeout.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from .base import (EVENT_COLUMNS, OK, RANKING_COLUMNS, ClickEvent, EventsOutcome, EventStore, RankingRecord,
                   click_status)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rankings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    staff_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    model_version TEXT NOT NULL,
    explored INTEGER NOT NULL,
    slots INTEGER NOT NULL,
    items TEXT NOT NULL,
    candidates TEXT NOT NULL,
    writer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rankings_ts ON rankings (ts);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    request_id TEXT NOT NULL,
    banner_id TEXT NOT NULL,
    ts REAL NOT NULL,
    received REAL NOT NULL,
    status TEXT NOT NULL,
    writer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_request ON events (request_id);
CREATE TABLE IF NOT EXISTS documents (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staff (
    staff_id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL
);
"""


class SQLiteStore(EventStore):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(SCHEMA)

    def _tx(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def journal_mode(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    # -- writes -----------------------------------------------------------------------
    def log_rankings(self, records: list[RankingRecord]) -> None:
        if not records:
            return
        rows = [(r.request_id, r.ts, r.staff_id, r.arm, r.model_version, int(r.explored), r.slots, r.items_json(),
                 r.candidates_json(), r.writer) for r in records]
        self._tx(lambda db: db.executemany(
            "INSERT OR IGNORE INTO rankings (request_id, ts, staff_id, arm, model_version, explored, slots, items,"
            " candidates, writer) VALUES (?,?,?,?,?,?,?,?,?,?)", rows))

    def add_events(self, events: list[ClickEvent]) -> EventsOutcome:
        out = EventsOutcome()
        if not events:
            return out

        def work(db):
            shown_cache: dict[str, list[str] | None] = {}
            for e in events:
                if e.request_id not in shown_cache:
                    row = db.execute("SELECT items, slots FROM rankings WHERE request_id = ?", (e.request_id,)).fetchone()
                    shown_cache[e.request_id] = None if row is None else [x[0] for x in json.loads(row[0])[: row[1]]]
                e.status = click_status(shown_cache[e.request_id], e.banner_id)
                cur = db.execute(
                    "INSERT OR IGNORE INTO events (event_id, type, request_id, banner_id, ts, received, status, writer)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (e.event_id, e.type, e.request_id, e.banner_id, e.ts, e.received or time.time(), e.status, e.writer))
                if cur.rowcount == 1:
                    out.stored.append(e.event_id)
                    if e.status != OK:
                        out.flagged[e.event_id] = e.status
                else:
                    out.duplicates.append(e.event_id)
            return out

        return self._tx(work)

    def put_document(self, name: str, body: str) -> int:
        def work(db):
            row = db.execute("SELECT version FROM documents WHERE name = ?", (name,)).fetchone()
            version = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO documents (name, version, body) VALUES (?,?,?)", (name, version, body))
            return version

        return self._tx(work)

    def get_document(self, name: str) -> tuple[int, str] | None:
        with self._lock:
            row = self._db.execute("SELECT version, body FROM documents WHERE name = ?", (name,)).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def upsert_staff(self, rows: list[tuple[str, dict]]) -> int:
        def work(db):
            db.executemany("INSERT OR REPLACE INTO staff (staff_id, attributes) VALUES (?,?)",
                           [(sid, json.dumps(attrs, ensure_ascii=False)) for sid, attrs in rows])
            row = db.execute("SELECT version FROM documents WHERE name = 'staff'").fetchone()
            version = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO documents (name, version, body) VALUES ('staff', ?, '')", (version,))
            return version

        return self._tx(work)

    def all_staff(self) -> list[tuple[str, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT staff_id, attributes FROM staff ORDER BY staff_id").fetchall()
        return [(sid, json.loads(a)) for sid, a in rows]

    # -- reads ------------------------------------------------------------------------
    def rankings_after(self, seq: int, limit: int = 10000, since_ts: float | None = None,
                       exclude_writer: str | None = None, upto: int | None = None) -> list[RankingRecord]:
        sql = f"SELECT {RANKING_COLUMNS} FROM rankings WHERE seq > ?"
        args: list = [seq]
        if since_ts is not None:
            sql += " AND ts >= ?"
            args.append(since_ts)
        if exclude_writer is not None:
            sql += " AND writer <> ?"
            args.append(exclude_writer)
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [RankingRecord.from_row(r) for r in rows]

    def events_after(self, seq: int, limit: int = 10000, exclude_writer: str | None = None,
                     upto: int | None = None) -> list[ClickEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?"
        args: list = [seq]
        if exclude_writer is not None:
            sql += " AND writer <> ?"
            args.append(exclude_writer)
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [ClickEvent.from_row(r) for r in rows]

    def max_seq(self) -> tuple[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT (SELECT coalesce(max(seq), 0) FROM rankings), (SELECT coalesce(max(seq), 0) FROM events)").fetchall()
        return int(rows[0][0]), int(rows[0][1])

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {"rankings": self._db.execute("SELECT count(*) FROM rankings").fetchone()[0],
                   "events": self._db.execute("SELECT count(*) FROM events").fetchone()[0]}
            for status, n in self._db.execute("SELECT status, count(*) FROM events GROUP BY status"):
                out[f"events_{status}"] = n
        return out

    def check_writable(self) -> None:
        self._tx(lambda db: db.execute("INSERT OR REPLACE INTO heartbeat (id, ts) VALUES (1, ?)", (time.time(),)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
