"""impressions: one row per banner shown (JSON Lines, or CSV with the same columns).

Loaded into a columnar ``ImpressionLog`` (numpy arrays plus id vocabularies) because
logs run to tens of millions of rows; ``iter_impression_rows`` streams validated rows
one at a time for tools that do not need the whole log in memory.
"""
from __future__ import annotations

import csv
import json
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import orjson

from ..domain import Catalog
from ..errors import ContractError, ErrorCollector, FieldError, RowError
from ..timeutil import format_ts, parse_ts
from ._json import write_json_lines
from ._text import not_utf8, text_lines

REQUIRED = ("request_id", "ts", "staff_id", "banner_id", "position", "propensity", "clicked")
CSV_COLUMNS = REQUIRED + ("policy", "candidates", "outcome")



@dataclass
class ImpressionLog:
    """Columnar impressions. Row arrays are aligned; ids are indices into vocabularies."""

    request_ids: list[str]
    staff_ids: list[str]
    banner_ids: list[str]
    policies: list[str]
    request: np.ndarray  # int64 per row, index into request_ids
    ts: np.ndarray  # float64 epoch seconds UTC
    staff: np.ndarray  # int64 index into staff_ids
    banner: np.ndarray  # int64 index into banner_ids
    position: np.ndarray  # int64, 1-based
    propensity: np.ndarray  # float64 in (0, 1]
    clicked: np.ndarray  # int8 0/1
    policy: np.ndarray  # int64 index into policies ("" = not given)
    candidates: dict[int, tuple[str, ...]] = field(default_factory=dict)  # request index -> explicit list
    source: str = ""
    # float64 in [0, 1] per row: the banner's outcome after the impression (a survey
    # answered, a sign-up; 0 when none or not logged); None is filled with zeros
    outcome: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.outcome is None:
            self.outcome = np.zeros(len(self.request), dtype=np.float64)

    @property
    def has_outcomes(self) -> bool:
        """Whether any row had an outcome (a log without the field has none)."""
        return bool(len(self.outcome) and self.outcome.max() > 0)

    def __len__(self) -> int:
        return int(self.request.shape[0])

    @property
    def n_requests(self) -> int:
        return len(self.request_ids)

    def click_rate(self) -> float:
        return float(self.clicked.mean()) if len(self) else 0.0

    def request_ts(self) -> np.ndarray:
        """Timestamp of each request (all rows of a request share it)."""
        out = np.full(self.n_requests, np.nan)
        out[self.request] = self.ts
        return out

    def request_staff(self) -> np.ndarray:
        out = np.zeros(self.n_requests, dtype=np.int64)
        out[self.request] = self.staff
        return out

    def subset(self, rows: np.ndarray) -> "ImpressionLog":
        """The log restricted to some rows (a boolean mask or indices). Requests are renumbered
        so that the subset holds exactly its own requests; staff, banner and policy
        vocabularies are kept."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        kept = np.unique(self.request[rows])
        new_of = {int(r): i for i, r in enumerate(kept)}
        return ImpressionLog(
            request_ids=[self.request_ids[r] for r in kept], staff_ids=self.staff_ids, banner_ids=self.banner_ids,
            policies=self.policies, request=np.searchsorted(kept, self.request[rows]), ts=self.ts[rows],
            staff=self.staff[rows], banner=self.banner[rows], position=self.position[rows],
            propensity=self.propensity[rows], clicked=self.clicked[rows], policy=self.policy[rows],
            candidates={new_of[r]: c for r, c in self.candidates.items() if r in new_of}, source=self.source,
            outcome=self.outcome[rows],
        )

    @classmethod
    def concat(cls, logs: "list[ImpressionLog]") -> "ImpressionLog":
        """One log of several (older files joined with a recent export, say): ids coded
        anew over the union of their vocabularies; a request id in two logs stays two
        requests."""
        logs = [log for log in logs if len(log)] or logs[:1]

        def union(vocabs: list[list[str]]) -> tuple[list[str], list[np.ndarray]]:
            index: dict[str, int] = {}
            maps = [np.array([index.setdefault(v, len(index)) for v in vocab], dtype=np.int64) for vocab in vocabs]
            return list(index), maps

        staff_ids, staff_maps = union([log.staff_ids for log in logs])
        banner_ids, banner_maps = union([log.banner_ids for log in logs])
        policies, policy_maps = union([log.policies for log in logs])
        offsets = np.cumsum([0] + [log.n_requests for log in logs])
        candidates = {int(off) + r: c for off, log in zip(offsets, logs) for r, c in log.candidates.items()}

        def cat(f) -> np.ndarray:
            return np.concatenate([f(i, log) for i, log in enumerate(logs)]) if logs else np.zeros(0)

        return cls(
            request_ids=[r for log in logs for r in log.request_ids], staff_ids=staff_ids, banner_ids=banner_ids,
            policies=policies, request=cat(lambda i, log: log.request + offsets[i]).astype(np.int64),
            ts=cat(lambda i, log: log.ts), staff=cat(lambda i, log: staff_maps[i][log.staff]).astype(np.int64),
            banner=cat(lambda i, log: banner_maps[i][log.banner]).astype(np.int64),
            position=cat(lambda i, log: log.position).astype(np.int64), propensity=cat(lambda i, log: log.propensity),
            clicked=cat(lambda i, log: log.clicked).astype(np.int8),
            policy=cat(lambda i, log: policy_maps[i][log.policy]).astype(np.int64), candidates=candidates,
            source=" + ".join(log.source for log in logs), outcome=cat(lambda i, log: log.outcome).astype(np.float64))

    def outside_catalog(self, catalog: Catalog) -> tuple[list[str], int]:
        """The banner ids the rows name (shown, or among their request's candidates) that
        the catalog itself does not hold, and how many rows name one: such banners are
        ranked with cold-start defaults, and users are told how much of a log they touch."""
        outside = np.array([not catalog.knows(b) for b in self.banner_ids], dtype=bool)
        rows = outside[self.banner]
        ids = dict.fromkeys(self.banner_ids[b] for b in np.unique(self.banner[rows]))
        by_list = {c: [b for b in c if not catalog.knows(b)] for c in set(self.candidates.values())}
        naming = np.zeros(self.n_requests, dtype=bool)
        for r, c in self.candidates.items():
            if by_list[c]:
                naming[r] = True
                ids.update(dict.fromkeys(by_list[c]))
        rows = rows | naming[self.request]
        return list(ids), int(rows.sum())

    def split(self, cut_ts: float) -> tuple["ImpressionLog", "ImpressionLog"]:
        """(the requests before ``cut_ts``, the requests from it on): a log's past, as
        history, and the part evaluated or held out."""
        before = self.ts < cut_ts
        return self.subset(before), self.subset(~before)

    def iter_rows(self) -> Iterator[dict]:
        for i in range(len(self)):
            r = int(self.request[i])
            row = {
                "request_id": self.request_ids[r],
                "ts": format_ts(float(self.ts[i])),
                "staff_id": self.staff_ids[self.staff[i]],
                "banner_id": self.banner_ids[self.banner[i]],
                "position": int(self.position[i]),
                "propensity": float(self.propensity[i]),
                "clicked": int(self.clicked[i]),
            }
            pol = self.policies[self.policy[i]]
            if pol:
                row["policy"] = pol
            if r in self.candidates:
                row["candidates"] = list(self.candidates[r])
            if self.outcome[i] > 0:
                row["outcome"] = float(self.outcome[i])
            yield row


def _validate(d: object, ts_cache: dict[str, float]) -> tuple:
    """Check one row; return its typed fields or raise FieldError(field, message)."""
    if type(d) is not dict:
        raise FieldError("<row>", f"expected a JSON object, got {type(d).__name__}")
    for name in REQUIRED:
        if name not in d:
            raise FieldError(name, "missing field")
    rid = d["request_id"]
    if type(rid) is not str or not rid:
        raise FieldError("request_id", "must be a non-empty string")
    sid = d["staff_id"]
    if type(sid) is not str or not sid:
        raise FieldError("staff_id", "must be a non-empty string")
    bid = d["banner_id"]
    if type(bid) is not str or not bid:
        raise FieldError("banner_id", "must be a non-empty string")
    raw_ts = d["ts"]
    ts = ts_cache.get(raw_ts) if type(raw_ts) is str else None
    if ts is None:
        try:
            ts = parse_ts(raw_ts)
        except ValueError as e:
            raise FieldError("ts", str(e)) from None
        if len(ts_cache) > 100_000:
            ts_cache.clear()
        ts_cache[raw_ts] = ts
    pos = d["position"]
    if type(pos) is not int:
        raise FieldError("position", f"must be an integer, got {pos!r}")
    if pos < 1:
        raise FieldError("position", f"must be 1 or more (1 = first), got {pos}")
    p = d["propensity"]
    if type(p) is not float and type(p) is not int:
        raise FieldError("propensity", f"must be a number, got {p!r}")
    if not (0.0 < p <= 1.0) or math.isnan(p):
        raise FieldError("propensity", f"must be in (0, 1], got {p!r}")
    c = d["clicked"]
    if c is True or c is False:
        c = int(c)
    elif type(c) is not int or (c != 0 and c != 1):
        raise FieldError("clicked", f"must be 0 or 1, got {c!r}")
    pol = d.get("policy")
    if pol is None:
        pol = ""
    elif type(pol) is not str:
        raise FieldError("policy", "must be a string")
    cands = d.get("candidates")
    if cands is not None:
        if type(cands) is not list or not all(type(x) is str and x for x in cands):
            raise FieldError("candidates", "must be a list of banner ids")
        if bid not in cands:
            raise FieldError("candidates", f"the shown banner {bid!r} is not among the candidates")
        if len(set(cands)) != len(cands):
            raise FieldError("candidates", "lists a banner more than once")
        cands = tuple(cands)
    o = d.get("outcome")
    if o is None:
        o = 0.0
    elif type(o) is not float and type(o) is not int or not 0.0 <= o <= 1.0:
        raise FieldError("outcome", f"must be a number from 0 to 1 (the banner's outcome after the impression), got {o!r}")
    return rid, ts, sid, bid, pos, float(p), c, pol, cands, float(o)


def _csv_rows(path: Path) -> Iterator[tuple[int, object]]:
    reader = csv.reader(text_lines(path))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ContractError([RowError(str(path), 1, missing[0], f"missing column(s) {', '.join(missing)} in the header")])
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            yield line, FieldError("<row>", f"expected {len(header)} fields, found {len(row)}")
            continue
        d: dict = {}
        try:
            for h, v in zip(header, row):
                if h in ("position", "clicked"):
                    try:
                        d[h] = int(v)
                    except ValueError:
                        raise FieldError(h, f"must be an integer, got {v!r}") from None
                elif h == "outcome":
                    if v.strip():
                        try:
                            d[h] = float(v)
                        except ValueError:
                            raise FieldError(h, f"must be a number from 0 to 1, got {v!r}") from None
                elif h == "propensity":
                    try:
                        d[h] = float(v)
                    except ValueError:
                        raise FieldError(h, f"must be a number, got {v!r}") from None
                elif h == "candidates":
                    if v.strip():
                        try:
                            d[h] = json.loads(v)
                        except json.JSONDecodeError:
                            raise FieldError(h, "must be a JSON list of banner ids") from None
                elif h == "policy":
                    if v:
                        d[h] = v
                else:
                    d[h] = v
        except FieldError as e:
            yield line, e
            continue
        yield line, d


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    # orjson parses a log line about five times faster than json; it also rejects
    # invalid UTF-8, which the contract forbids.
    loads = orjson.loads
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            if line == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some editors write
                raw = raw[3:]
            if raw.isspace() or not raw:
                continue
            try:
                yield line, loads(raw)
            except orjson.JSONDecodeError as e:
                yield line, not_utf8(raw) or FieldError("<row>", f"invalid JSON: {e}")


def _raw_rows(path: Path) -> Iterator[tuple[int, object]]:
    if path.suffix.lower() == ".csv":
        return _csv_rows(path)
    return _jsonl_rows(path)


def iter_impression_rows(path: str | Path) -> Iterator[tuple[int, tuple]]:
    """Stream validated rows as (line, (request_id, ts, staff_id, banner_id, position,
    propensity, clicked, policy, candidates, outcome)). Raises ContractError at the first bad row;
    cross-row rules (a request's consistency) are checked by ``load_impressions``."""
    path = Path(path)
    cache: dict[str, float] = {}
    for line, d in _raw_rows(path):
        if isinstance(d, FieldError):
            raise ContractError([RowError(str(path), line, d.field, d.message)])
        try:
            yield line, _validate(d, cache)
        except FieldError as e:
            raise ContractError([RowError(str(path), line, e.field, e.message)]) from None


def load_impressions(
    path: str | Path,
    catalog: Catalog | None = None,
    max_errors: int = 1,
    progress: bool = False,
) -> ImpressionLog:
    """Load and validate an impressions file into an ImpressionLog.

    Row rules: every field of the contract. Cross-row rules: all rows of a request share
    its ts, staff_id and candidates; a request shows a position at most once and a banner
    at most once. With a catalog, a banner's code is its index in the catalog; ids outside
    it are accepted (``ImpressionLog.outside_catalog`` names and counts them).
    """
    path = Path(path)
    col = ErrorCollector(str(path), max_errors)
    banner_index: dict[str, int] = dict(catalog.index) if catalog is not None else {}
    req_index: dict[str, int] = {}
    req_ids: list[str] = []
    req_first: list[tuple[float, int, int]] = []  # ts, staff, first line
    staff_index: dict[str, int] = {}
    pol_index: dict[str, int] = {"": 0}  # vocabularies: insertion order is code order
    candidates: dict[int, tuple[str, ...]] = {}
    # typed arrays, not lists: 10 M rows of Python ints and floats would cost gigabytes
    cols = {k: array(code) for k, code in (("request", "q"), ("ts", "d"), ("staff", "q"), ("banner", "q"), ("position", "q"),
                                           ("propensity", "d"), ("clicked", "b"), ("policy", "q"), ("line", "q"),
                                           ("outcome", "d"))}
    a_req, a_ts, a_staff, a_ban = cols["request"].append, cols["ts"].append, cols["staff"].append, cols["banner"].append
    a_pos, a_p, a_c, a_pol, a_line, a_o = (cols[k].append for k in ("position", "propensity", "clicked", "policy", "line",
                                                                    "outcome"))
    cache: dict[str, float] = {}
    rows = _raw_rows(path)
    if progress:
        from ..progress import progress_bar

        rows = progress_bar(rows, desc=f"load {path.name}", unit="rows")
    for line, d in rows:
        try:
            if isinstance(d, FieldError):  # the row could not be read
                raise d
            rid, ts, sid, bid, pos, p, c, pol, cands, o = _validate(d, cache)
        except FieldError as e:
            col.add(line, e.field, e.message)
            if col.full:
                break
            continue
        si = staff_index.setdefault(sid, len(staff_index))
        ri = req_index.get(rid)
        if ri is None:
            ri = req_index[rid] = len(req_ids)
            req_ids.append(rid)
            req_first.append((ts, si, line))
            if cands is not None:
                candidates[ri] = cands
        else:
            t0, s0, l0 = req_first[ri]
            if ts != t0:
                col.add(line, "ts", f"request {rid!r} has another ts on line {l0}")
            elif si != s0:
                col.add(line, "staff_id", f"request {rid!r} has another staff_id on line {l0}")
            elif candidates.get(ri) != cands:
                col.add(line, "candidates", f"request {rid!r} has other candidates on line {l0}")
            if col.full:
                break
        bi = banner_index.setdefault(bid, len(banner_index))
        pi = pol_index.setdefault(pol, len(pol_index))
        a_req(ri)
        a_ts(ts)
        a_staff(si)
        a_ban(bi)
        a_pos(pos)
        a_p(p)
        a_c(c)
        a_pol(pi)
        a_line(line)
        a_o(o)
    col.raise_if_any()
    staff_ids, banner_ids, policies = list(staff_index), list(banner_index), list(pol_index)
    arr = {k: np.frombuffer(v, dtype=v.typecode if v.typecode != "q" else np.int64) if len(v) else
           np.zeros(0, dtype=np.float64 if v.typecode == "d" else np.int64) for k, v in cols.items()}
    request, position, banner, lines = arr["request"], arr["position"], arr["banner"], arr["line"]
    _check_unique_within_request(col, request, position, lines, "position", "position {v} appears twice in request {r!r}", req_ids)
    _check_unique_within_request(col, request, banner, lines, "banner_id", "banner {v} appears twice in request {r!r}", req_ids, banner_ids)
    col.raise_if_any()
    return ImpressionLog(
        request_ids=req_ids,
        staff_ids=staff_ids,
        banner_ids=banner_ids,
        policies=policies,
        request=request.astype(np.int64),
        ts=arr["ts"].astype(np.float64),
        staff=arr["staff"].astype(np.int64),
        banner=banner.astype(np.int64),
        position=position.astype(np.int64),
        propensity=arr["propensity"].astype(np.float64),
        clicked=arr["clicked"].astype(np.int8),
        policy=arr["policy"].astype(np.int64),
        candidates=candidates,
        source=str(path),
        outcome=arr["outcome"].astype(np.float64),
    )


def _check_unique_within_request(col, request, values, lines, field, template, req_ids, vocab=None) -> None:
    if request.size == 0:
        return
    order = np.lexsort((lines, values, request))
    r, v = request[order], values[order]
    dup = np.flatnonzero((r[1:] == r[:-1]) & (v[1:] == v[:-1])) + 1
    for j in dup[: col.max_errors]:
        value = vocab[v[j]] if vocab is not None else int(v[j])
        col.add(int(lines[order][j]), field, template.format(v=repr(value) if vocab else value, r=req_ids[r[j]]))


def write_impressions(path: str | Path, rows: Iterable[dict]) -> int:
    """Write impression dicts as JSON Lines (UTF-8). Returns the number of rows."""
    return write_json_lines(path, rows)
