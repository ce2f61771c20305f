"""Reading and writing JSON Lines and JSON arrays, with the line number of every object,
and the validation loop the object files share."""
from __future__ import annotations

import json
from itertools import chain
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import ContractError, ErrorCollector, FieldError, RowError
from ._text import text_lines

T = TypeVar("T")

_decoder = json.JSONDecoder()


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, object]]:
    """Yield (line, value) for each object of a JSON array file or a JSON Lines file.

    Blank lines of a JSON Lines file are allowed and skipped (they hold no row). A line
    that is not valid JSON raises ContractError naming the line.
    """
    path = Path(path)
    lines = text_lines(path, "utf-8")
    head: list[str] = []
    for raw in lines:  # up to the first line with text: "[" starts an array
        head.append(raw)
        if raw.strip("\ufeff \t\r\n"):
            break
    if "".join(head).lstrip("\ufeff \t\r\n").startswith("["):
        yield from _iter_array(path, "".join(chain(head, lines)))
        return
    for lineno, raw in enumerate(chain(head, lines), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ContractError([RowError(str(path), lineno, "<row>", f"invalid JSON: {e.msg}")]) from None
        yield lineno, value


def _iter_array(path: Path, text: str) -> Iterator[tuple[int, object]]:
    text = text.lstrip("\ufeff")
    i = text.index("[") + 1
    n = len(text)

    def skip_ws(j: int) -> int:
        while j < n and text[j] in " \t\r\n":
            j += 1
        return j

    def line_of(j: int) -> int:
        return text.count("\n", 0, j) + 1

    i = skip_ws(i)
    if i < n and text[i] == "]":
        return
    while True:
        try:
            value, end = _decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ContractError([RowError(str(path), line_of(e.pos), "<row>", f"invalid JSON: {e.msg}")]) from None
        yield line_of(i), value
        i = skip_ws(end)
        if i < n and text[i] == ",":
            i = skip_ws(i + 1)
            continue
        if i < n and text[i] == "]":
            rest = text[i + 1 :].strip()
            if rest:
                raise ContractError([RowError(str(path), line_of(i + 1), "<row>", "unexpected text after the JSON array")])
            return
        raise ContractError([RowError(str(path), line_of(i), "<row>", "expected ',' or ']' in the JSON array")])


def parse_unique(objects: Iterable[tuple[int, object]], parse: Callable[[object], T], key: str,
                 errors: ErrorCollector, place: str = "line") -> list[T]:
    """Validate each (place, object) with ``parse`` (which raises FieldError); an object
    whose ``key`` attribute repeats an earlier one's is an error too. Errors go to
    ``errors`` (up to its limit); the valid objects are returned."""
    out: list[T] = []
    seen: dict[str, int] = {}
    for at, obj in objects:
        try:
            item = parse(obj)
        except FieldError as e:
            errors.add(at, e.field, e.message)
        else:
            value = getattr(item, key)
            if value in seen:
                errors.add(at, key, f"duplicate {key} {value!r} (first on {place} {seen[value]})")
            else:
                seen[value] = at
                out.append(item)
        if errors.full:
            break
    return out


def write_json_lines(path: str | Path, objects: Iterable[dict]) -> int:
    """Write dicts as JSON Lines (UTF-8, Korean text kept as is); returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for obj in objects:
            f.write(json.dumps(obj, ensure_ascii=False))
            f.write("\n")
            n += 1
    return n
