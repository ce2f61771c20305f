"""Opening an event store from its URL: the one place that knows the backends."""
from __future__ import annotations

import re

from .base import EventStore


def shown_url(url: str) -> str:
    """The store's URL without its password, for messages and logs."""
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)


def open_store(url: str) -> EventStore:
    """``sqlite:///path/events.db`` (or a bare path) or ``postgresql://...[?schema=NAME]``."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    from .sqlite import SQLiteStore

    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    return SQLiteStore(path)
