"""PostgreSQL event store (psycopg 3): the same schema and semantics as the SQLite store,
for a deployment that runs several service replicas against one database.

URL: ``postgresql://user@host:port/db[?schema=NAME]``; with ``schema`` the tables live in
that schema (created when missing), which is also how the tests isolate each run.
A commit returns after the WAL is flushed (PostgreSQL's default synchronous_commit).

Known limit: ``tail`` follows BIGSERIAL order, and PostgreSQL may make a lower seq visible
after a higher one (concurrent transactions), so a replica's online history can miss a
row another replica committed at the same instant; the row is still stored and exported.
"""
from __future__ import annotations

import json
import re
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from .base import (EVENT_COLUMNS, OK, RANKING_COLUMNS, ClickEvent, EventsOutcome, EventStore, RankingRecord,
                   click_status)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rankings (
    seq BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    ts DOUBLE PRECISION NOT NULL,
    staff_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    model_version TEXT NOT NULL,
    explored BOOLEAN NOT NULL,
    slots INTEGER NOT NULL,
    items TEXT NOT NULL,
    candidates TEXT NOT NULL,
    writer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rankings_ts ON rankings (ts);
CREATE TABLE IF NOT EXISTS events (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    request_id TEXT NOT NULL,
    banner_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL,
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
    ts DOUBLE PRECISION NOT NULL
);
"""

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def split_schema(url: str) -> tuple[str, str | None]:
    """The connection URL without the ``schema`` parameter, and the schema name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r} (letters, digits and _ only)")
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore(EventStore):
    def __init__(self, url: str):
        self.url = url
        conninfo, self.schema = split_schema(url)
        self._lock = threading.Lock()
        self._db = psycopg.connect(conninfo, autocommit=False)
        with self._lock, self._db.transaction():
            # several processes may create the schema at once: serialise on an advisory lock
            self._db.execute("SELECT pg_advisory_xact_lock(727401)")
            if self.schema:
                self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                self._db.execute(f'SET search_path TO "{self.schema}"')
            for stmt in filter(str.strip, SCHEMA.split(";")):
                self._db.execute(stmt)
        if self.schema:  # SET inside a committed transaction persists for the session
            self._db.commit()

    def _tx(self, fn):
        with self._lock:
            with self._db.transaction():
                with self._db.cursor() as cur:
                    return fn(cur)

    def _read(self, sql: str, args=()):
        with self._lock:
            with self._db.transaction():
                return self._db.execute(sql, args).fetchall()

    # -- writes -----------------------------------------------------------------------
    def log_rankings(self, records: list[RankingRecord]) -> None:
        if not records:
            return
        rows = [(r.request_id, r.ts, r.staff_id, r.arm, r.model_version, bool(r.explored), r.slots, r.items_json(),
                 r.candidates_json(), r.writer) for r in records]
        self._tx(lambda cur: cur.executemany(
            "INSERT INTO rankings (request_id, ts, staff_id, arm, model_version, explored, slots, items, candidates,"
            " writer) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (request_id) DO NOTHING", rows))

    def add_events(self, events: list[ClickEvent]) -> EventsOutcome:
        out = EventsOutcome()
        if not events:
            return out

        def work(cur):
            shown_cache: dict[str, list[str] | None] = {}
            for e in events:
                if e.request_id not in shown_cache:
                    row = cur.execute("SELECT items, slots FROM rankings WHERE request_id = %s", (e.request_id,)).fetchone()
                    shown_cache[e.request_id] = None if row is None else [x[0] for x in json.loads(row[0])[: row[1]]]
                e.status = click_status(shown_cache[e.request_id], e.banner_id)
                cur.execute(
                    "INSERT INTO events (event_id, type, request_id, banner_id, ts, received, status, writer)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (event_id) DO NOTHING",
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
        def work(cur):
            row = cur.execute(
                "INSERT INTO documents (name, version, body) VALUES (%s, 1, %s) ON CONFLICT (name) DO UPDATE"
                " SET version = documents.version + 1, body = EXCLUDED.body RETURNING version", (name, body)).fetchone()
            return int(row[0])

        return self._tx(work)

    def get_document(self, name: str) -> tuple[int, str] | None:
        rows = self._read("SELECT version, body FROM documents WHERE name = %s", (name,))
        return None if not rows else (int(rows[0][0]), rows[0][1])

    def upsert_staff(self, rows: list[tuple[str, dict]]) -> int:
        def work(cur):
            cur.executemany("INSERT INTO staff (staff_id, attributes) VALUES (%s, %s) ON CONFLICT (staff_id) DO UPDATE"
                            " SET attributes = EXCLUDED.attributes",
                            [(sid, json.dumps(a, ensure_ascii=False)) for sid, a in rows])
            row = cur.execute(
                "INSERT INTO documents (name, version, body) VALUES ('staff', 1, '') ON CONFLICT (name) DO UPDATE"
                " SET version = documents.version + 1 RETURNING version").fetchone()
            return int(row[0])

        return self._tx(work)

    def all_staff(self) -> list[tuple[str, dict]]:
        return [(sid, json.loads(a)) for sid, a in self._read("SELECT staff_id, attributes FROM staff ORDER BY staff_id")]

    # -- reads ------------------------------------------------------------------------
    def rankings_after(self, seq: int, limit: int = 10000, since_ts: float | None = None,
                       exclude_writer: str | None = None, upto: int | None = None) -> list[RankingRecord]:
        sql = f"SELECT {RANKING_COLUMNS} FROM rankings WHERE seq > %s"
        args: list = [seq]
        if since_ts is not None:
            sql += " AND ts >= %s"
            args.append(since_ts)
        if exclude_writer is not None:
            sql += " AND writer <> %s"
            args.append(exclude_writer)
        if upto is not None:
            sql += " AND seq <= %s"
            args.append(upto)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        rows = self._read(sql, args)
        return [RankingRecord.from_row(r) for r in rows]

    def events_after(self, seq: int, limit: int = 10000, exclude_writer: str | None = None,
                     upto: int | None = None) -> list[ClickEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > %s"
        args: list = [seq]
        if exclude_writer is not None:
            sql += " AND writer <> %s"
            args.append(exclude_writer)
        if upto is not None:
            sql += " AND seq <= %s"
            args.append(upto)
        sql += " ORDER BY seq LIMIT %s"
        args.append(limit)
        rows = self._read(sql, args)
        return [ClickEvent.from_row(r) for r in rows]

    def max_seq(self) -> tuple[int, int]:
        rows = self._read("SELECT (SELECT coalesce(max(seq), 0) FROM rankings), (SELECT coalesce(max(seq), 0) FROM events)")
        return int(rows[0][0]), int(rows[0][1])

    def counts(self) -> dict[str, int]:
        out = {"rankings": self._read("SELECT count(*) FROM rankings")[0][0],
               "events": self._read("SELECT count(*) FROM events")[0][0]}
        for status, n in self._read("SELECT status, count(*) FROM events GROUP BY status"):
            out[f"events_{status}"] = n
        return out

    def check_writable(self) -> None:
        self._tx(lambda cur: cur.execute(
            "INSERT INTO heartbeat (id, ts) VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET ts = EXCLUDED.ts",
            (time.time(),)))

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests)."""
        if not self.schema:
            raise ValueError("no schema to drop: this store uses the default search_path")
        with self._lock, self._db.transaction():
            self._db.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def close(self) -> None:
        with self._lock:
            self._db.close()
