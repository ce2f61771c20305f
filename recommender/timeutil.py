"""Timestamps: ISO 8601 with an offset in files, float seconds since the epoch (UTC) inside."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")


def parse_ts(value: object) -> float:
    """Parse an ISO 8601 timestamp that carries a UTC offset; return epoch seconds (UTC).

    Raises ValueError with a readable reason. A timestamp without an offset is refused:
    the logs come from clients in several places and a naive time is ambiguous.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp string, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"unparseable timestamp {value!r}") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset (write e.g. +09:00 or Z)")
    return dt.timestamp()


def format_ts(epoch: float, tz: timezone = timezone.utc) -> str:
    """Epoch seconds to ISO 8601 (UTC by default, with its offset)."""
    dt = datetime.fromtimestamp(epoch, tz)
    if dt.microsecond:
        return dt.isoformat()
    return dt.isoformat(timespec="seconds")
