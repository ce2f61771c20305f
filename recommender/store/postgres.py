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

import re
import threading
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from .sql import Dialect, SQLStore, T

POSTGRES = Dialect(mark="%s", serial="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION", boolean="BOOLEAN",
                   or_clause=False, max_params=65535)  # the protocol's count of parameters is 16 bits

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


class PostgresStore(SQLStore):
    dialect = POSTGRES

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
            for stmt in filter(str.strip, self.dialect.schema().split(";")):
                self._db.execute(stmt)
            for table, column, kind in self.dialect.added_columns():
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        if self.schema:  # SET inside a committed transaction persists for the session
            self._db.commit()

    def _tx(self, fn: Callable[[Any], T]) -> T:
        with self._lock:
            with self._db.transaction():
                with self._db.cursor() as cur:
                    return fn(cur)

    def _read(self, sql: str, args: Sequence = ()) -> list:
        # in a transaction of its own: the connection is not in autocommit, and an open
        # one would hold its snapshot and locks until the next write
        with self._lock:
            with self._db.transaction():
                return self._db.execute(sql, args).fetchall()

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests)."""
        if not self.schema:
            raise ValueError("no schema to drop: this store uses the default search_path")
        with self._lock, self._db.transaction():
            self._db.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
