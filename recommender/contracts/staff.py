"""staff.csv: ``staff_id,role,school_level,region`` then any extra attribute columns."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from ..domain import STAFF_BASE_ATTRIBUTES, Staff, StaffDirectory
from ..errors import ContractError, ErrorCollector, RowError
from ._text import text_lines

REQUIRED_COLUMNS = ("staff_id",) + STAFF_BASE_ATTRIBUTES


def load_staff(path: str | Path, max_errors: int = 1) -> StaffDirectory:
    """Load and validate a staff CSV. Attribute values are free strings; an empty value
    means unknown. A missing column or field, an empty or duplicate staff_id is an error."""
    path = Path(path)
    col = ErrorCollector(str(path), max_errors)
    staff: list[Staff] = []
    seen: dict[str, int] = {}
    reader = csv.reader(text_lines(path))
    try:
        header = next(reader)
    except StopIteration:
        raise ContractError([RowError(str(path), 1, "<header>", f"empty file: expected a header row ({','.join(REQUIRED_COLUMNS)}) and a row per staff member")]) from None
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ContractError([RowError(str(path), 1, missing[0], f"missing column(s) {', '.join(missing)} in the header")])
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ContractError([RowError(str(path), 1, dup[0], "column appears more than once in the header")])
    id_col = header.index("staff_id")
    attr_cols = [(i, h) for i, h in enumerate(header) if h != "staff_id"]
    width = len(header)
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            field = header[len(row)] if len(row) < width else "<row>"
            col.add(line, field, f"expected {width} fields, found {len(row)}")
        else:
            sid = row[id_col].strip()
            if not sid:
                col.add(line, "staff_id", "empty staff_id")
            elif sid in seen:
                col.add(line, "staff_id", f"duplicate staff_id {sid!r} (first on line {seen[sid]})")
            else:
                seen[sid] = line
                staff.append(Staff(sid, {h: row[i].strip() for i, h in attr_cols}))
        if col.full:
            break
    col.raise_if_any()
    return StaffDirectory(staff, attribute_names=[h for _, h in attr_cols])


def write_staff(path: str | Path, staff: Iterable[Staff], attribute_names: Iterable[str] = STAFF_BASE_ATTRIBUTES) -> None:
    names = list(attribute_names)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["staff_id", *names])
        for s in staff:
            w.writerow([s.staff_id, *(s.get(n) for n in names)])
