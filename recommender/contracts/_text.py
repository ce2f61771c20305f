"""Text files that must be UTF-8: a file in another encoding (a spreadsheet saved as
CP949 or EUC-KR, say) is one contract error naming its first line that is not UTF-8 and
what to do, never a decoding traceback."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import ContractError, FieldError, RowError

FIX = "save the file as UTF-8 (a spreadsheet's 'CSV UTF-8', or convert it from CP949/EUC-KR)"


def not_utf8(raw: bytes) -> FieldError | None:
    """The error of one line's bytes when they are not UTF-8, else None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return FieldError("<row>", f"not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line): {FIX}")
    return None


def not_utf8_error(path: Path) -> ContractError:
    """The ContractError of a file that failed to decode as UTF-8, at its first bad line."""
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            err = not_utf8(raw)
            if err is not None:
                return ContractError([RowError(str(path), line, err.field, err.message)])
    return ContractError([RowError(str(path), 1, "<row>", f"not UTF-8: {FIX}")])


def text_lines(path: Path, encoding: str = "utf-8-sig") -> Iterator[str]:
    """The lines of a UTF-8 text file, line endings kept (what ``csv.reader`` wants); a byte
    that is not UTF-8 raises the file's ContractError."""
    with open(path, "r", encoding=encoding, newline="") as f:
        try:
            yield from f
        except UnicodeDecodeError:
            raise not_utf8_error(path) from None
