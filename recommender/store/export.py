"""What the service logged, as a training set: impressions.jsonl, with the catalog
(banners.json) and the staff directory (staff.csv) the service held, in the file
contracts, so that an export folder is complete on its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contracts import ImpressionLog, write_banners, write_impressions, write_staff
from ..domain import STAFF_BASE_ATTRIBUTES, Banner, Staff
from .base import Erasures, EventStore, erasure_key

IMPRESSIONS_FILE, BANNERS_FILE, STAFF_FILE = "impressions.jsonl", "banners.json", "staff.csv"


@dataclass
class ExportSummary:
    impressions: int
    rankings: int
    banners: int
    staff: int
    files: dict[str, Path]


def stored_catalog(store: EventStore) -> list[Banner]:
    return store.stored_catalog()


def stored_staff(store: EventStore) -> tuple[list[Staff], list[str]]:
    """The staff directory and its attribute columns (role, school_level, region first)."""
    staff = [Staff(sid, attrs) for sid, attrs in store.all_staff()]
    extra = sorted({a for s in staff for a in s.attributes} - set(STAFF_BASE_ATTRIBUTES))
    return staff, [*STAFF_BASE_ATTRIBUTES, *extra]


def without_erased(log: ImpressionLog, erased: Erasures) -> ImpressionLog:
    """An impressions log (an older export, a service's history file) less the rows of
    forgotten people up to their erasure: what the store would still hold of it."""
    if not len(erased) or not len(log):
        return log
    until = np.array([u if (u := erased.until.get(erasure_key(erased.salt, s))) is not None else -np.inf
                      for s in log.staff_ids])
    keep = log.ts > until[log.staff]
    return log if keep.all() else log.subset(keep)


def export_training_set(store: EventStore, folder: str | Path, since: float | None = None) -> ExportSummary:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"impressions": folder / IMPRESSIONS_FILE, "banners": folder / BANNERS_FILE, "staff": folder / STAFF_FILE}
    n = write_impressions(files["impressions"], store.export_impressions(since))
    banners = stored_catalog(store)
    write_banners(files["banners"], banners)
    staff, columns = stored_staff(store)
    write_staff(files["staff"], staff, columns)
    return ExportSummary(n, store.counts()["rankings"], len(banners), len(staff), files)
