"""Domain types shared by every part of the engine."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

CATEGORIES: tuple[str, ...] = ("policy", "info", "custom", "survey", "event")
STAFF_BASE_ATTRIBUTES: tuple[str, ...] = ("role", "school_level", "region")
UNKNOWN = "__unknown__"
# ids and attribute values are free text, but never control characters: NUL cannot be
# stored by PostgreSQL, and tabs or newlines in an id are a client bug, not an id
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def control_characters_in(text: str) -> bool:
    return _CONTROL.search(text) is not None


@dataclass(frozen=True, slots=True)
class Staff:
    """One staff member. ``attributes`` holds role, school_level, region and any extras."""

    staff_id: str
    attributes: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.attributes.get(name, "") or ""


@dataclass(frozen=True)
class FrequencyCap:
    """How often one person may see a banner (recommender.caps): at most ``per_day``
    impressions in any 24 hours, and a rest once ``unclicked_impressions`` impressions in
    ``unclicked_days`` days went unclicked. None: that rule is off."""

    per_day: int | None = None
    unclicked_impressions: int | None = None
    unclicked_days: float | None = None


# outcome events after a click (POST /v1/events): a survey answered or a form finished,
# and a sign-up to an event
OUTCOME_TYPES: tuple[str, ...] = ("complete", "convert")
AFTER_COMPLETION: tuple[str, ...] = ("keep", "hide", "downweight")


@dataclass(frozen=True)
class OutcomeRule:
    """What counts as a banner's outcome and what follows it (recommender.completion):
    outcome events of ``type`` count, each worth ``value`` (in the objective's outcome
    units, training.objective); once a person has had the outcome, the banner is kept,
    hidden from them, or down-weighted (its odds times ``downweight``)."""

    type: str = "complete"
    value: float = 1.0
    after_completion: str = "keep"
    downweight: float = 0.5


@dataclass(frozen=True)
class DeliveryGoal:
    """What a banner must deliver by a time (recommender.goals): ``reach`` (distinct staff
    who had it in the shown slots at least once), ``clicks`` (clicks on it) or
    ``outcomes`` (distinct staff who had its outcome: a survey answered, a sign-up)."""

    metric: str  # "reach", "clicks" or "outcomes"
    target: int
    by: float  # epoch seconds UTC


@dataclass(frozen=True)
class Banner:
    banner_id: str
    category: str
    title: str = ""
    start: float | None = None  # epoch seconds UTC, None = open
    end: float | None = None
    target: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pinned: bool = False
    priority: int = 0
    tags: tuple[str, ...] = ()
    cap: FrequencyCap | None = None
    goal: DeliveryGoal | None = None
    outcome: OutcomeRule | None = None

    def is_targeted(self) -> bool:
        return any(len(v) > 0 for v in self.target.values())


@dataclass(frozen=True)
class Request:
    """One load of the banner space, for batch ranking."""

    request_id: str
    ts: float
    staff_id: str
    candidates: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Ranking:
    request_id: str
    ranking: tuple[str, ...]


def cold_start_banner(banner_id: str) -> Banner:
    """How a banner id the catalog does not know is ranked (the cold start): a banner of
    the unknown category, without tags, target or window."""
    return Banner(banner_id, UNKNOWN)


class Catalog:
    """The banners, in the catalog's own order, with lookup by id.

    ``cold_start`` adds, after the catalog's own banners, a cold-start banner for each id
    that logs name but the catalog does not hold, so that training and evaluation rank
    them as the service does. Only the catalog's own banners (``known``) are candidates
    of a request that gives no list of its own."""

    def __init__(self, banners: Iterable[Banner], cold_start: Iterable[str] = ()):
        self.banners: list[Banner] = list(banners)
        self.n_known = len(self.banners)
        self.index: dict[str, int] = {}
        for i, b in enumerate(self.banners):
            if b.banner_id in self.index:
                raise ValueError(f"duplicate banner_id {b.banner_id!r}")
            self.index[b.banner_id] = i
        for banner_id in cold_start:
            if banner_id not in self.index:
                self.index[banner_id] = len(self.banners)
                self.banners.append(cold_start_banner(banner_id))

    def __len__(self) -> int:
        return len(self.banners)

    def __iter__(self) -> Iterator[Banner]:
        return iter(self.banners)

    def __contains__(self, banner_id: object) -> bool:
        return banner_id in self.index

    def get(self, banner_id: str) -> Banner | None:
        i = self.index.get(banner_id)
        return None if i is None else self.banners[i]

    @property
    def ids(self) -> list[str]:
        return [b.banner_id for b in self.banners]

    @property
    def known(self) -> list[Banner]:
        """The catalog's own banners, without the cold-start ones."""
        return self.banners if self.n_known == len(self.banners) else self.banners[:self.n_known]

    def knows(self, banner_id: str) -> bool:
        """Whether the catalog itself holds the banner (a cold-start one is not known)."""
        i = self.index.get(banner_id)
        return i is not None and i < self.n_known

    def with_cold_start(self, banner_ids: Iterable[str]) -> "Catalog":
        """This catalog with a cold-start banner for each of ``banner_ids`` it does not know
        (itself when it has them all)."""
        new = [b for b in dict.fromkeys(banner_ids) if b not in self.index]
        if not new:
            return self
        return Catalog(self.known, [b.banner_id for b in self.banners[self.n_known:]] + new)


class StaffDirectory:
    """Staff members by id; an unknown id gets an empty profile (every attribute unknown)."""

    def __init__(self, staff: Iterable[Staff], attribute_names: Iterable[str] = STAFF_BASE_ATTRIBUTES):
        self.attribute_names: tuple[str, ...] = tuple(attribute_names)
        self.by_id: dict[str, Staff] = {}
        self._held: frozenset[str] | None = None
        # a province's 180,000 people have a few thousand distinct profiles: each is held
        # once (a dict per person would cost about 170 MB in every service worker)
        profiles: dict[tuple, Mapping[str, str]] = {}
        for s in staff:
            if s.staff_id in self.by_id:
                raise ValueError(f"duplicate staff_id {s.staff_id!r}")
            key = tuple(s.attributes.items())
            shared = profiles.setdefault(key, s.attributes)
            self.by_id[s.staff_id] = s if shared is s.attributes else Staff(s.staff_id, shared)

    def __len__(self) -> int:
        return len(self.by_id)

    def __contains__(self, staff_id: object) -> bool:
        return staff_id in self.by_id

    def get(self, staff_id: str) -> Staff:
        s = self.by_id.get(staff_id)
        return s if s is not None else Staff(staff_id, {})

    def attributes_held(self) -> frozenset[str]:
        """The attribute names some staff member has (a column of the staff file)."""
        if self._held is None:
            self._held = frozenset(self.attribute_names).union(*(s.attributes.keys() for s in self.by_id.values()))
        return self._held
