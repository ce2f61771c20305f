"""requests (batch ranking input) and rankings (its answer), both JSON Lines."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..domain import Ranking, Request
from ..errors import ErrorCollector, FieldError
from ..timeutil import format_ts, parse_ts
from ._json import iter_json_objects, parse_unique, write_json_lines


def _nonempty_str(d: dict, name: str) -> str:
    if name not in d:
        raise FieldError(name, "missing field")
    v = d[name]
    if not isinstance(v, str) or not v:
        raise FieldError(name, "must be a non-empty string")
    return v


def _id_list(d: dict, name: str) -> tuple[str, ...]:
    v = d[name]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise FieldError(name, "must be a list of banner ids")
    if len(set(v)) != len(v):
        raise FieldError(name, "lists a banner more than once")
    return tuple(v)


def _request(d: object) -> Request:
    if not isinstance(d, dict):
        raise FieldError("<row>", "expected a JSON object")
    rid = _nonempty_str(d, "request_id")
    sid = _nonempty_str(d, "staff_id")
    if "ts" not in d:
        raise FieldError("ts", "missing field")
    try:
        ts = parse_ts(d["ts"])
    except ValueError as e:
        raise FieldError("ts", str(e)) from None
    cands = _id_list(d, "candidates") if d.get("candidates") is not None else None
    return Request(rid, ts, sid, cands)


def _ranking(d: object) -> Ranking:
    if not isinstance(d, dict):
        raise FieldError("<row>", "expected a JSON object")
    rid = _nonempty_str(d, "request_id")
    if "ranking" not in d:
        raise FieldError("ranking", "missing field")
    return Ranking(rid, _id_list(d, "ranking"))


def _load(path: str | Path, parse, max_errors: int) -> list:
    errors = ErrorCollector(str(path), max_errors)
    out = parse_unique(iter_json_objects(path), parse, "request_id", errors)
    errors.raise_if_any()
    return out


def load_requests(path: str | Path, max_errors: int = 1) -> list[Request]:
    return _load(path, _request, max_errors)


def load_rankings(path: str | Path, max_errors: int = 1) -> list[Ranking]:
    return _load(path, _ranking, max_errors)


def write_requests(path: str | Path, requests: Iterable[Request]) -> int:
    def objs():
        for r in requests:
            d = {"request_id": r.request_id, "ts": format_ts(r.ts), "staff_id": r.staff_id}
            if r.candidates is not None:
                d["candidates"] = list(r.candidates)
            yield d

    return write_json_lines(path, objs())


def write_rankings(path: str | Path, rankings: Iterable[Ranking]) -> int:
    return write_json_lines(path, ({"request_id": r.request_id, "ranking": list(r.ranking)} for r in rankings))
