"""The event store interface: every served ranking and every click, durably.

The service logs each ranking at answer time (request, staff, the full ranked list with
scores and propensities, arm, model version, slots, candidates) and each click event
(idempotent by event_id). ``export_impressions`` joins the two into the impressions
contract of docs/data-contracts.md, so the service's own traffic feeds ``recommender train``.

Backends: SQLite in WAL mode (embedded default, ``recommender.store.sqlite``) and
PostgreSQL (``recommender.store.postgres``). Both run the same schema and queries from
``recommender.store.sql``, which leaves each only its dialect and connection handling;
the logic above the queries (joining, tailing) lives here.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import orjson

from ..timeutil import format_ts

# the documents the service keeps in the store: the catalog it serves (the staff
# directory is a table; its document holds only the directory's version)
CATALOG_DOC = "catalog"
STAFF_DOC = "staff"

# click status, stored with each event
OK = "ok"
UNKNOWN_REQUEST = "unknown_request"  # no ranking with this request_id was logged (yet)
NOT_SHOWN = "not_shown"  # the ranking exists but did not show this banner in its slots


@dataclass
class RankingRecord:
    """One served ranking. ``items`` are (banner_id, position, score, propensity) in
    position order, every candidate ranked; the first ``slots`` are the impressions."""

    request_id: str
    ts: float
    staff_id: str
    arm: str
    model_version: str
    explored: bool
    slots: int
    items: list[tuple[str, int, float, float]]
    candidates: list[str] = field(default_factory=list)
    writer: str = ""
    seq: int = 0  # set by the store
    slot_ids: list[str] = field(default_factory=list)  # names of the shown slots, when the caller named them

    def shown(self) -> list[tuple[str, int, float, float]]:
        return self.items[: self.slots]

    def items_json(self) -> str:
        return orjson.dumps(self.items).decode("utf-8")

    def candidates_json(self) -> str:
        return orjson.dumps(self.candidates).decode("utf-8")

    def slot_ids_json(self) -> str | None:
        return orjson.dumps(self.slot_ids).decode("utf-8") if self.slot_ids else None

    @classmethod
    def from_row(cls, row) -> "RankingRecord":
        (seq, request_id, ts, staff_id, arm, model_version, explored, slots, items, candidates, writer, slot_ids) = row
        return cls(request_id, float(ts), staff_id, arm, model_version, bool(explored), int(slots),
                   [tuple(x) for x in orjson.loads(items)], orjson.loads(candidates), writer, int(seq),
                   orjson.loads(slot_ids) if slot_ids else [])


RANKING_COLUMNS = ("seq, request_id, ts, staff_id, arm, model_version, explored, slots, items, candidates, writer, "
                   "slot_ids")


@dataclass
class ClickEvent:
    """An event on a shown banner: a click, or an outcome after it (``type`` "complete" or
    "convert", with its ``value`` in [0, 1]; None for a click)."""

    event_id: str
    request_id: str
    banner_id: str
    ts: float  # when it happened (client time, or receipt time when not given)
    type: str = "click"
    received: float = 0.0
    status: str = OK  # set by the store: ok, unknown_request or not_shown
    writer: str = ""
    seq: int = 0
    value: float | None = None

    @property
    def is_outcome(self) -> bool:
        return self.type != "click"

    @classmethod
    def from_row(cls, row) -> "ClickEvent":
        seq, event_id, type_, request_id, banner_id, ts, received, status, writer, value = row
        return cls(event_id, request_id, banner_id, float(ts), type_, float(received), status, writer, int(seq),
                   None if value is None else float(value))


EVENT_COLUMNS = "seq, event_id, type, request_id, banner_id, ts, received, status, writer, value"


@dataclass
class EventsOutcome:
    """What happened to a batch of events: stored (new) or duplicate, and flags."""

    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    flagged: dict[str, str] = field(default_factory=dict)  # event_id -> status, for stored events not ok


@dataclass
class PruneResult:
    """What a prune deleted: rankings (with their clicks) and further click events."""

    rankings: int = 0
    events: int = 0


@dataclass
class ForgetResult:
    """What forgetting one person deleted: their rankings, the click events on them, and
    their staff directory row (0 or 1)."""

    rankings: int = 0
    events: int = 0
    staff: int = 0


@dataclass(frozen=True)
class Erasure:
    """A record that a person was forgotten at ``ts``. It holds a keyed hash of the staff
    id, never the id: workers match it against the people they hold."""

    seq: int
    key: str
    ts: float


class Erasures:
    """The people forgotten so far, by keyed hash, and when: ``covers(staff_id, ts)``
    says whether a row of that person at that time was erased (rows logged after the
    erasure are new data). Hashes are remembered per staff id."""

    MAX_REMEMBERED = 20_000  # hashes kept per staff id (then forgotten all at once): a few MB

    def __init__(self, salt: str, records: Iterable[Erasure] = ()):
        self.salt = salt
        self.until: dict[str, float] = {}
        self._keys: dict[str, str] = {}
        self.add(records)

    def add(self, records: Iterable[Erasure]) -> None:
        for r in records:
            self.until[r.key] = max(r.ts, self.until.get(r.key, r.ts))

    def key(self, staff_id: str) -> str:
        k = self._keys.get(staff_id)
        if k is None:
            if len(self._keys) >= self.MAX_REMEMBERED:
                self._keys.clear()
            k = self._keys[staff_id] = erasure_key(self.salt, staff_id)
        return k

    def until_of(self, staff_id: str) -> float | None:
        """When the person was last forgotten, or None."""
        return self.until.get(self.key(staff_id)) if self.until else None

    def covers(self, staff_id: str, ts: float) -> bool:
        until = self.until_of(staff_id)
        return until is not None and ts <= until

    def checker(self) -> Callable[[str, float], bool]:
        """``covers`` with a memo of its own, unbounded, for one pass over many rows (the
        rankings loaded at start, an export): each staff id is hashed once."""
        if not self.until:
            return lambda staff_id, ts: False
        memo: dict[str, float | None] = {}

        def covers(staff_id: str, ts: float) -> bool:
            if staff_id in memo:
                until = memo[staff_id]
            else:
                until = memo[staff_id] = self.until.get(erasure_key(self.salt, staff_id))
            return until is not None and ts <= until

        return covers

    def matching(self, staff_ids: Iterable[str], keys: set[str]) -> list[str]:
        """The ids among ``staff_ids`` whose hash is one of ``keys`` (not remembered)."""
        return [s for s in staff_ids if erasure_key(self.salt, s) in keys]

    def __len__(self) -> int:
        return len(self.until)


def erasure_key(salt: str, staff_id: str) -> str:
    """The keyed hash an erasure record holds instead of the staff id."""
    return hashlib.sha256(f"{salt}:{staff_id}".encode("utf-8")).hexdigest()


class EventStore(ABC):
    """Durable log of rankings and click events, plus the catalog and staff directory the
    admin API sets (so that they survive a restart and reach every worker)."""

    url: str = ""

    # -- writes -----------------------------------------------------------------------
    @abstractmethod
    def log_rankings(self, records: list[RankingRecord]) -> None:
        """Append rankings (one transaction). A request_id already logged is ignored."""

    @abstractmethod
    def add_events(self, events: list[ClickEvent]) -> EventsOutcome:
        """Store new events durably (committed and synced before returning); an event_id
        already stored is a duplicate and is not stored again. Each stored click gets a
        status: ok, unknown_request or not_shown."""

    @abstractmethod
    def put_document(self, name: str, body: str) -> int:
        """Replace a named JSON document (the catalog); returns its new version number."""

    @abstractmethod
    def get_document(self, name: str) -> tuple[int, str] | None:
        """(version, body) of a named document, or None."""

    @abstractmethod
    def upsert_staff(self, rows: list[tuple[str, dict]]) -> int:
        """Insert or replace staff profiles; returns the staff directory's new version."""

    @abstractmethod
    def all_staff(self) -> list[tuple[str, dict]]: ...

    @abstractmethod
    def prune(self, before_ts: float, batch: int = 2000, pause: float = 0.0,
              stop: Callable[[], bool] | None = None) -> PruneResult:
        """Delete the rankings served before ``before_ts`` with every click on them, and
        the click events received before it, in transactions of at most ``batch`` rows
        (sleeping ``pause`` seconds between two, so other writers get the store). When
        ``stop`` answers True between two transactions, it stops there (a service that
        shuts down); the next prune goes on."""

    @abstractmethod
    def delete_rankings_of(self, staff_id: str, before_ts: float, batch: int = 2000) -> tuple[int, int]:
        """Delete one person's rankings served before ``before_ts`` and the clicks on them,
        without a new erasure record: the rankings of a forgotten person that a worker wrote
        after the erasure (queued when it happened); (rankings, events) deleted."""

    @abstractmethod
    def forget(self, staff_id: str, now: float, batch: int = 2000) -> ForgetResult:
        """Delete one person's rankings, the click events on them and their staff row
        (bumping the directory's version when there was one), then record the erasure at
        ``now`` (``erasures_after``), so every worker of a running service drops the
        person too, and finds the directory without them when it sees the record."""

    @abstractmethod
    def erasures_after(self, seq: int) -> list[Erasure]:
        """Erasure records with seq > seq, in seq order."""

    @abstractmethod
    def erasure_salt(self) -> str:
        """The store's own random salt of the erasure records' hashes (made once)."""

    def erasures(self) -> Erasures:
        """Every erasure so far (reading the salt only when there is one, so that a reader
        of a store nobody forgot anyone in never writes to it)."""
        records = self.erasures_after(0)
        return Erasures(self.erasure_salt() if records else "", records)

    # -- reads ------------------------------------------------------------------------
    @abstractmethod
    def rankings_after(self, seq: int, limit: int = 10000, since_ts: float | None = None,
                       exclude_writer: str | None = None, upto: int | None = None) -> list[RankingRecord]:
        """Rankings with seq > seq (and <= upto) in seq order, with ts >= since_ts and a
        writer other than exclude_writer when given."""

    @abstractmethod
    def events_after(self, seq: int, limit: int = 10000, exclude_writer: str | None = None,
                     upto: int | None = None) -> list[ClickEvent]: ...

    @abstractmethod
    def ranking(self, request_id: str) -> RankingRecord | None:
        """The logged ranking of a request id, None when none is stored."""

    def shown_of(self, request_id: str) -> list[str] | None:
        """The banners a logged ranking showed (its first ``slots``), None when no ranking
        with that request_id is stored."""
        r = self.ranking(request_id)
        return None if r is None else [b for b, *_ in r.shown()]

    @abstractmethod
    def max_seq(self) -> tuple[int, int]:
        """The last seq of rankings and of events (0 when empty)."""

    def tail(self, seq_rankings: int, seq_events: int, exclude_writer: str
             ) -> tuple[list[RankingRecord], list[ClickEvent], int, int]:
        """What other writers added after the cursors, and the new cursors. The cursors
        move to the current ends first, so a writer's own rows are never read back."""
        end_r, end_e = self.max_seq()
        rankings: list[RankingRecord] = []
        while True:
            part = self.rankings_after(seq_rankings, 10000, None, exclude_writer, end_r)
            rankings += part
            if len(part) < 10000:
                break
            seq_rankings = part[-1].seq
        events: list[ClickEvent] = []
        while True:
            part = self.events_after(seq_events, 10000, exclude_writer, end_e)
            events += part
            if len(part) < 10000:
                break
            seq_events = part[-1].seq
        return rankings, events, max(end_r, seq_rankings), max(end_e, seq_events)

    @abstractmethod
    def clicks_per_request(self, since_ts: float) -> dict[str, dict[int, int]]:
        """For the rankings served at or after ``since_ts``, per arm: {clicks on the shown
        banners (duplicates and flagged events excluded): number of rankings}."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Row counts: rankings, events, and events per status."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise if the store cannot take a write right now (readyz)."""

    @abstractmethod
    def close(self) -> None: ...

    # -- shared logic -----------------------------------------------------------------
    def iter_rankings(self, since_ts: float | None = None, batch: int = 5000) -> Iterator[RankingRecord]:
        seq = 0
        while True:
            rows = self.rankings_after(seq, batch, since_ts)
            if not rows:
                return
            yield from rows
            seq = rows[-1].seq

    def iter_events(self, batch: int = 5000) -> Iterator[ClickEvent]:
        seq = 0
        while True:
            rows = self.events_after(seq, batch)
            if not rows:
                return
            yield from rows
            seq = rows[-1].seq

    def clicked_pairs(self) -> set[tuple[str, str]]:
        """(request_id, banner_id) of every stored click, duplicates removed."""
        return self.event_pairs()[0]

    def event_pairs(self, counts: Callable[[str, str], bool] | None = None
                    ) -> tuple[set[tuple[str, str]], dict[tuple[str, str], float]]:
        """(request_id, banner_id) of every stored click, and the outcome of each pair that
        had one: the largest value of its outcome events that ``counts(banner_id, type)``
        (default: every outcome event)."""
        clicks: set[tuple[str, str]] = set()
        outcomes: dict[tuple[str, str], float] = {}
        for e in self.iter_events():
            key = (e.request_id, e.banner_id)
            if not e.is_outcome:
                clicks.add(key)
            elif counts is None or counts(e.banner_id, e.type):
                value = 1.0 if e.value is None else e.value
                outcomes[key] = max(value, outcomes.get(key, 0.0))
        return clicks, outcomes

    def stored_catalog(self) -> list:
        """The catalog the service stored (recommender.domain.Banner), [] when none."""
        from ..contracts.banners import banner_from_dict

        doc = self.get_document(CATALOG_DOC)
        return [] if doc is None else [banner_from_dict(o) for o in orjson.loads(doc[1])]

    def export_impressions(self, since_ts: float | None = None, policy_prefix: str = "") -> Iterator[dict]:
        """Impression rows (the impressions contract, docs/data-contracts.md): one per shown position (the request's
        first ``slots``), clicked when a click event names that request and banner, with
        the ``outcome`` of that impression when it had one (its largest value among the
        outcome events that count for the banner under the stored catalog,
        recommender.completion.counts_outcome). Each row carries the request's explicit
        candidate list, since the catalog changes. Rankings of a forgotten person from
        before their erasure are left out, even one a worker wrote just after the erasure."""
        from ..completion import counts_outcome

        banners = {b.banner_id: b for b in self.stored_catalog()}
        clicks, outcomes = self.event_pairs(lambda banner_id, kind: counts_outcome(banners.get(banner_id), kind))
        erased = self.erasures().checker()
        for r in self.iter_rankings(since_ts):
            if erased(r.staff_id, r.ts):
                continue
            ts = format_ts(r.ts)
            policy = f"{policy_prefix}{r.arm}:{r.model_version}" + (":explore" if r.explored else "")
            for banner_id, position, _score, propensity in r.shown():
                key = (r.request_id, banner_id)
                row = {"request_id": r.request_id, "ts": ts, "staff_id": r.staff_id, "banner_id": banner_id,
                       "position": int(position), "propensity": float(propensity), "clicked": int(key in clicks),
                       "policy": policy, "candidates": list(r.candidates)}
                if key in outcomes:
                    row["outcome"] = outcomes[key]
                yield row

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def click_status(shown_banners: Iterable[str] | None, banner_id: str) -> str:
    if shown_banners is None:
        return UNKNOWN_REQUEST
    return OK if banner_id in set(shown_banners) else NOT_SHOWN
