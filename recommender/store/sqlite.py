"""SQLite event store in WAL mode: the embedded default.

WAL lets readers (export, tailing by other workers) run while the service writes;
``synchronous=FULL`` makes every commit durable (the WAL is synced) before the call
returns, which is what lets POST /v1/events answer only after the events are safe.
Several processes (uvicorn workers) may open the same file; writes are serialised by
SQLite's lock, with a busy timeout. The queries are shared with PostgreSQL (sql.py).
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from .sql import Dialect, SQLStore, T

SQLITE = Dialect(mark="?", serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", boolean="INTEGER",
                 or_clause=True,
                 # SQLITE_MAX_VARIABLE_NUMBER's default: 32766 since SQLite 3.32, 999 before
                 max_params=32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999)


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
        with self._lock:
            self._db.executescript(self.dialect.schema())

    def _tx(self, fn: Callable[[Any], T]) -> T:
        # IMMEDIATE takes the write lock up front: a click's lookup and insert see one state
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def _write_statement(self, sql: str, args: Sequence) -> None:
        # outside BEGIN, a statement is a transaction of its own (autocommit): atomic, and
        # durable on return (synchronous=FULL), in one driver call instead of three
        with self._lock:
            self._db.execute(sql, args)

    def _read(self, sql: str, args: Sequence = ()) -> list:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def journal_mode(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA journal_mode").fetchone()[0]
