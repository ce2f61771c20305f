"""The catalog and the staff directory as the service holds them.

At start they come from the event store (what ``PUT /v1/banners`` and ``PUT /v1/staff``
last stored, so that every worker and every restart sees the same), else from the files
the config names, which are then stored: the store always holds what the service serves,
so that an export of its logs comes with the catalog and staff they were served with.
People forgotten (``recommender store forget``) are left out of the staff file.
Each is replaced as a whole object, so a request reads one consistent version;
``refresh`` picks up what another worker stored.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping

from recommender.contracts import load_banners, load_staff
from recommender.contracts.banners import banner_from_dict, banner_to_dict
from recommender.domain import UNKNOWN, Banner, Catalog, Staff, StaffDirectory
from recommender.store import CATALOG_DOC, STAFF_DOC, EventStore


class Directory:
    def __init__(self, store: EventStore, banners_file: Path | None = None, staff_file: Path | None = None):
        self.store = store
        self.banners_file = banners_file
        self.staff_file = staff_file
        self.catalog = Catalog([])
        self.staff = StaffDirectory([])
        self.catalog_version = 0
        self.staff_version = 0

    def load(self) -> None:
        doc = self.store.get_document(CATALOG_DOC)
        if doc is not None:
            self.catalog_version = doc[0]
            self.catalog = Catalog(banner_from_dict(o) for o in json.loads(doc[1]))
        elif self.banners_file is not None:
            self.put_catalog(list(load_banners(self.banners_file)))
        staff = [Staff(sid, attrs) for sid, attrs in self.store.all_staff()]
        if not staff and self.staff_file is not None:
            loaded = load_staff(self.staff_file)
            erased = self.store.erasures()
            if len(erased):  # the file predates their erasure: it must not bring them back
                loaded = StaffDirectory([s for s in loaded.by_id.values() if not erased.covers(s.staff_id, -math.inf)],
                                        loaded.attribute_names)
            self.store.upsert_staff([(s.staff_id, dict(s.attributes)) for s in loaded.by_id.values()])
            self.staff = loaded
        else:
            self.staff = StaffDirectory(staff)
        doc = self.store.get_document(STAFF_DOC)
        self.staff_version = doc[0] if doc else 0

    def refresh(self) -> None:
        """Take a catalog or staff directory another process stored."""
        doc = self.store.get_document(CATALOG_DOC)
        if doc is not None and doc[0] != self.catalog_version:
            self.catalog = Catalog(banner_from_dict(o) for o in json.loads(doc[1]))
            self.catalog_version = doc[0]
        doc = self.store.get_document(STAFF_DOC)
        if doc is not None and doc[0] != self.staff_version:
            self.staff = StaffDirectory([Staff(s, a) for s, a in self.store.all_staff()], self.staff.attribute_names)
            self.staff_version = doc[0]

    def put_catalog(self, banners: list[Banner]) -> int:
        catalog = Catalog(banners)
        version = self.store.put_document(CATALOG_DOC, json.dumps([banner_to_dict(b) for b in banners],
                                                                  ensure_ascii=False))
        self.catalog, self.catalog_version = catalog, version
        return version

    def put_staff(self, rows: list[tuple[str, dict]]) -> int:
        version = self.store.upsert_staff(rows)
        merged = dict(self.staff.by_id)
        for sid, attrs in rows:
            merged[sid] = Staff(sid, attrs)
        self.staff = StaffDirectory(merged.values(), self.staff.attribute_names)
        self.staff_version = version
        return version

    def drop(self, staff_ids: Iterable[str]) -> None:
        """Leave people out of the staff directory held (forgotten: their row in the store
        is already deleted), at once, before ``refresh`` reloads the whole directory."""
        gone = set(staff_ids) & self.staff.by_id.keys()
        if gone:
            self.staff = StaffDirectory([s for sid, s in self.staff.by_id.items() if sid not in gone],
                                        self.staff.attribute_names)

    def profile_for(self, staff_id: str, profile: Mapping[str, str] | None) -> Mapping[str, str]:
        """The request's own profile, else the staff directory's (empty when unknown)."""
        return profile if profile else self.staff.get(staff_id).attributes

    def category(self, banner_id: str) -> str:
        b = self.catalog.get(banner_id)
        return b.category if b is not None else UNKNOWN
