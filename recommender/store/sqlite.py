"""SQLite event store in WAL mode: the embedded default.

WAL lets readers (export, tailing by other workers) run while the service writes;
``synchronous=FULL`` makes every commit durable (the WAL is synced) before the call
returns, which is what lets POST /v1/events answer only after the events are safe.
Several processes (uvicorn workers) may open the same file; writes are serialised by
SQLite's lock, with a busy timeout. The queries are shared with PostgreSQL (sql.py).
"""
from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from .sql import Dialect, SQLStore, T

# max_params: SQLite's default limit before 3.32; each store reads its connection's own
SQLITE = Dialect(mark="?", serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", boolean="INTEGER",
                 or_clause=True, max_params=999)


class SQLiteStore(SQLStore):
    dialect = SQLITE

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
        # the limit this build and connection actually have (SQLITE_MAX_VARIABLE_NUMBER)
        self.dialect = dataclasses.replace(SQLITE, max_params=self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        with self._lock:
            self._db.executescript(self.dialect.schema())
            for table, column, kind in self.dialect.added_columns():
                if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _tx(self, fn: Callable[[Any], T]) -> T:
        # IMMEDIATE takes the write lock up front: a click's lookup and insert see one state
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:
                # a COMMIT that fails (disk full, I/O error) may leave the transaction open:
                # close it, or the next autocommit statement would silently join it
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return out

    def _write_statement(self, sql: str, args: Sequence) -> None:
        # outside BEGIN, a statement is a transaction of its own (autocommit): atomic, and
        # durable on return (synchronous=FULL), in one driver call instead of three
        with self._lock:
            if self._db.in_transaction:
                raise sqlite3.OperationalError("the connection is inside a transaction: the statement would not commit")
            self._db.execute(sql, args)

    def _read(self, sql: str, args: Sequence = ()) -> list:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def journal_mode(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA journal_mode").fetchone()[0]
