"""Reading JSON Lines and JSON arrays with the line number of every object."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import ContractError, RowError

_decoder = json.JSONDecoder()


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, object]]:
    """Yield (line, value) for each object of a JSON array file or a JSON Lines file.

    Blank lines of a JSON Lines file are allowed and skipped (they hold no row). A line
    that is not valid JSON raises ContractError naming the line.
    """
    path = Path(path)
    with open(path, "r", encoding="utf-8") as f:
        head = f.read(4096)
        stripped = head.lstrip("\ufeff \t\r\n")
        f.seek(0)
        if stripped.startswith("["):
            yield from _iter_array(path, f.read())
            return
        lineno = 0
        for lineno, raw in enumerate(f, start=1):
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
