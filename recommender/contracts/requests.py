"""requests (batch ranking input) and rankings (its answer), both JSON Lines."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from ..domain import Ranking, Request
from ..errors import ErrorCollector
from ..timeutil import format_ts, parse_ts
from ._json import iter_json_objects


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        self.field, self.message = field, message


def _nonempty_str(d: dict, name: str) -> str:
    if name not in d:
        raise _Bad(name, "missing field")
    v = d[name]
    if not isinstance(v, str) or not v:
        raise _Bad(name, "must be a non-empty string")
    return v


def _id_list(d: dict, name: str) -> tuple[str, ...]:
    v = d[name]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _Bad(name, "must be a list of banner ids")
    if len(set(v)) != len(v):
        raise _Bad(name, "lists a banner more than once")
    return tuple(v)


def _request(d: object) -> Request:
    if not isinstance(d, dict):
        raise _Bad("<row>", "expected a JSON object")
    rid = _nonempty_str(d, "request_id")
    sid = _nonempty_str(d, "staff_id")
    if "ts" not in d:
        raise _Bad("ts", "missing field")
    try:
        ts = parse_ts(d["ts"])
    except ValueError as e:
        raise _Bad("ts", str(e)) from None
    cands = _id_list(d, "candidates") if d.get("candidates") is not None else None
    return Request(rid, ts, sid, cands)


def _ranking(d: object) -> Ranking:
    if not isinstance(d, dict):
        raise _Bad("<row>", "expected a JSON object")
    rid = _nonempty_str(d, "request_id")
    if "ranking" not in d:
        raise _Bad("ranking", "missing field")
    return Ranking(rid, _id_list(d, "ranking"))


def _load(path: str | Path, parse, max_errors: int) -> list:
    col = ErrorCollector(str(path), max_errors)
    out = []
    seen: dict[str, int] = {}
    for line, d in iter_json_objects(path):
        try:
            item = parse(d)
        except _Bad as e:
            col.add(line, e.field, e.message)
        else:
            if item.request_id in seen:
                col.add(line, "request_id", f"duplicate request_id {item.request_id!r} (first on line {seen[item.request_id]})")
            else:
                seen[item.request_id] = line
                out.append(item)
        if col.full:
            break
    col.raise_if_any()
    return out


def load_requests(path: str | Path, max_errors: int = 1) -> list[Request]:
    return _load(path, _request, max_errors)


def load_rankings(path: str | Path, max_errors: int = 1) -> list[Ranking]:
    return _load(path, _ranking, max_errors)


def _write_lines(path: str | Path, objs: Iterator[dict]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for o in objs:
            f.write(json.dumps(o, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def write_requests(path: str | Path, requests: Iterable[Request]) -> int:
    def objs():
        for r in requests:
            d = {"request_id": r.request_id, "ts": format_ts(r.ts), "staff_id": r.staff_id}
            if r.candidates is not None:
                d["candidates"] = list(r.candidates)
            yield d

    return _write_lines(path, objs())


def write_rankings(path: str | Path, rankings: Iterable[Ranking]) -> int:
    return _write_lines(path, ({"request_id": r.request_id, "ranking": list(r.ranking)} for r in rankings))
