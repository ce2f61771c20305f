"""The click counters in flat arrays: the one definition of what the history features count.

Per person: their totals, their last click, and one row for the banners and one for the
categories they saw, each entry holding [views, growth-weighted views, clicks,
growth-weighted clicks]; per banner: everyone's views and clicks. Rows are CSR-like
(``start``, ``length``, ``capacity`` per person into flat ``key``/``value`` arrays, keys
sorted within a row), so a person's candidates cost one binary search each and a
province of 180,000 people is a handful of numpy arrays that the service's workers can
map from one file.

Decayed sums use growth weights: an event at t adds exp((t - t_ref) / tau) and a query at
t multiplies by exp(-(t - t_ref) / tau), so decaying everything costs nothing per event.

Three callers, one set of compiled functions (``add_events``, ``gather``):

- training (``features.history.History``) replays events in time order and reads each
  query row just before the events of its own time: point-in-time by construction;
- the service (``features.history.RunningHistory``) holds a read-only ``base`` built at
  start (shared between workers) and a growing ``delta`` of what happened since;
- the feature kernel (``features.kernel``) turns the gathered counters into the numeric
  features and, for a linear model, the score.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from numba import njit

VIEWS, VIEWS_W, CLICKS, CLICKS_W = range(4)

# what ``gather`` writes per query row, in this column order (the history features' inputs)
HIST_FIELDS = ("views_banner", "clicks_banner", "ever_clicked_banner", "ever_views_banner",
               "views_category", "ever_views_category", "ever_clicks_category", "clicks_category",
               "views_person", "clicks_person", "hours_since_click", "global_views", "global_clicks")
N_HIST = len(HIST_FIELDS)

# growth weights stay below exp(REBASE) in a growing delta: past that its origin moves up
REBASE = 50.0


class CounterArrays:
    """The arrays of one set of counters. ``person`` (P, 4), ``last_click`` (P,) (nan: no
    click), ``pb_*`` the person x banner rows and ``pc_*`` the person x category rows,
    ``glob`` (B, 2) everyone's views and clicks per banner, ``dropped`` (P,) people to read
    as empty (forgotten), ``used`` (2,) how much of the banner and category key arrays is
    taken. A fixed set (built once) has capacity == length; a growing one has room."""

    NAMES = ("person", "last_click", "pb_start", "pb_len", "pb_cap", "pb_key", "pb_val",
             "pc_start", "pc_len", "pc_cap", "pc_key", "pc_val", "glob", "dropped", "used")

    def __init__(self, n_people: int = 0, n_banners: int = 0, n_pairs: int = 0, n_cat_pairs: int = 0):
        self.person = np.zeros((n_people, 4))
        self.last_click = np.full(n_people, np.nan)
        self.pb_start = np.zeros(n_people, dtype=np.int64)
        self.pb_len = np.zeros(n_people, dtype=np.int64)
        self.pb_cap = np.zeros(n_people, dtype=np.int64)
        self.pb_key = np.zeros(n_pairs, dtype=np.int32)
        self.pb_val = np.zeros((n_pairs, 4))
        self.pc_start = np.zeros(n_people, dtype=np.int64)
        self.pc_len = np.zeros(n_people, dtype=np.int64)
        self.pc_cap = np.zeros(n_people, dtype=np.int64)
        self.pc_key = np.zeros(n_cat_pairs, dtype=np.int32)
        self.pc_val = np.zeros((n_cat_pairs, 4))
        self.glob = np.zeros((n_banners, 2))
        self.dropped = np.zeros(n_people, dtype=np.bool_)
        self.used = np.zeros(2, dtype=np.int64)

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        if name != "_tuple":
            object.__setattr__(self, "_tuple", None)  # an array replaced: the tuple is built again

    def as_tuple(self) -> tuple:
        """The arrays as the compiled functions take them (kept until one is replaced)."""
        t = self._tuple
        if t is None:
            t = tuple(getattr(self, n) for n in self.NAMES)
            object.__setattr__(self, "_tuple", t)
        return t

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in self.NAMES)

    # -- growth (a growing set: the service's delta) ------------------------------------
    def reserve(self, n_people: int, n_banners: int, pairs: int, cat_pairs: int) -> None:
        """Room for at least this many people and banners, and ``pairs`` / ``cat_pairs``
        more row entries past what is used (doubling, so growth is amortised)."""
        if n_people > len(self.person):
            size = max(n_people, 2 * len(self.person), 64)
            for name, fill in (("person", 0.0), ("last_click", np.nan), ("pb_start", 0), ("pb_len", 0),
                               ("pb_cap", 0), ("pc_start", 0), ("pc_len", 0), ("pc_cap", 0), ("dropped", False)):
                setattr(self, name, _grown(getattr(self, name), size, fill))
        if n_banners > len(self.glob):
            self.glob = _grown(self.glob, max(n_banners, 2 * len(self.glob), 64), 0.0)
        for prefix, k, need in (("pb", 0, pairs), ("pc", 1, cat_pairs)):
            key, val = f"{prefix}_key", f"{prefix}_val"
            if self.used[k] + need <= len(getattr(self, key)):
                continue
            # a row that outgrows its room moves to the end of the key arrays and leaves its
            # old room behind: take that back before growing, so that the arrays stay within
            # twice (at most four times) the rows' own room instead of growing with each move
            held = int(getattr(self, f"{prefix}_cap").sum())
            if held + need <= self.COMPACT_BELOW * len(getattr(self, key)):
                self._compact(prefix, k)
            if self.used[k] + need > len(getattr(self, key)):
                size = max(int(self.used[k] + need), 2 * len(getattr(self, key)), 256)
                setattr(self, key, _grown(getattr(self, key), size, 0))
                setattr(self, val, _grown(getattr(self, val), size, 0.0))

    COMPACT_BELOW = 0.75  # rows' room (and the room asked for) under this share of the arrays: compact

    def _compact(self, prefix: str, k: int) -> None:
        """Pack the rows of the ``prefix`` (pb or pc) key arrays back to back, in person
        order, each keeping its room; in place (the arrays keep their size)."""
        start, length, cap = (getattr(self, f"{prefix}_{n}") for n in ("start", "len", "cap"))
        keys, vals = getattr(self, f"{prefix}_key"), getattr(self, f"{prefix}_val")
        new_start = np.cumsum(cap) - cap
        owner = np.repeat(np.arange(len(length)), length)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(length) - length, length)
        moved_keys, moved_vals = keys[start[owner] + offset], vals[start[owner] + offset]
        keys[new_start[owner] + offset] = moved_keys
        vals[new_start[owner] + offset] = moved_vals
        start[:] = new_start
        self.used[k] = int(cap.sum())

    # -- a fixed set on disk (the service's base, mapped by every worker) ---------------
    def save(self, folder: Path) -> None:
        for name in self.NAMES:
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> "CounterArrays":
        """Memory-mapped, read-only: the pages are the operating system's, one copy for
        every process that maps the same files."""
        out = cls.__new__(cls)
        out._tuple = None
        for name in cls.NAMES:
            setattr(out, name, np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)))
        return out


# positions of the arrays in CounterArrays.as_tuple() (CounterArrays.NAMES)
(PERSON, LAST_CLICK, PB_START, PB_LEN, PB_CAP, PB_KEY, PB_VAL,
 PC_START, PC_LEN, PC_CAP, PC_KEY, PC_VAL, GLOB, DROPPED, USED) = range(15)


def _grown(a: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full((size, *a.shape[1:]), fill, dtype=a.dtype)
    out[:len(a)] = a
    return out


# -- the compiled functions -------------------------------------------------------------
@njit(cache=True, inline="always")
def _find(keys, start, length, k):
    """Index of key ``k`` in keys[start:start+length] (sorted), or -1."""
    lo = start
    hi = start + length
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    if lo < start + length and keys[lo] == k:
        return lo
    return -1


@njit(cache=True)
def _gather_set(s, p, bcodes, ccodes, decay, out):
    """Add one set's counters of person p's rows (banner bcodes[i], category ccodes[i]) to
    ``out`` (N_HIST columns, weighted sums decayed by ``decay``); -1 codes match nothing.
    Column 10 collects the last click time (nan: none)."""
    (person, last_click, pb_start, pb_len, pb_cap, pb_key, pb_val,
     pc_start, pc_len, pc_cap, pc_key, pc_val, glob, dropped, used) = s
    n_banners = glob.shape[0]
    for i in range(bcodes.shape[0]):
        b = bcodes[i]
        if 0 <= b < n_banners:
            out[i, 11] += glob[b, 0]
            out[i, 12] += glob[b, 1]
    if p < 0 or p >= person.shape[0] or dropped[p]:
        return
    vw = person[p, 1] * decay
    cw = person[p, 3] * decay
    last = last_click[p]
    b_start, b_len, c_start, c_len = pb_start[p], pb_len[p], pc_start[p], pc_len[p]
    for i in range(bcodes.shape[0]):
        row = out[i]
        b = bcodes[i]
        c = ccodes[i]
        if b >= 0 and b_len > 0:
            j = _find(pb_key, b_start, b_len, b)
            if j >= 0:
                row[0] += pb_val[j, 1] * decay
                row[1] += pb_val[j, 3] * decay
                row[2] += pb_val[j, 2]
                row[3] += pb_val[j, 0]
        if c >= 0 and c_len > 0:
            j = _find(pc_key, c_start, c_len, c)
            if j >= 0:
                row[4] += pc_val[j, 1] * decay
                row[5] += pc_val[j, 0]
                row[6] += pc_val[j, 2]
                row[7] += pc_val[j, 3] * decay
        row[8] += vw
        row[9] += cw
        if not math.isnan(last) and (math.isnan(row[10]) or last > row[10]):
            row[10] = last


@njit(cache=True)
def gather_person(base, base_tref, delta, delta_tref, tau, p, bcodes, ccodes, ts, out):
    """The history fields (N_HIST columns of ``out``) of one person's candidates at ``ts``:
    the sum of a fixed ``base`` and a growing ``delta`` (each with its own weights' origin)."""
    n = bcodes.shape[0]
    for i in range(n):
        for k in range(N_HIST):
            out[i, k] = 0.0
        out[i, 10] = np.nan
    _gather_set(base, p, bcodes, ccodes, math.exp(-(ts - base_tref) / tau), out)
    _gather_set(delta, p, bcodes, ccodes, math.exp(-(ts - delta_tref) / tau), out)
    for i in range(n):
        out[i, 2] = 1.0 if out[i, 2] > 0 else 0.0
        if not math.isnan(out[i, 10]):
            out[i, 10] = max(ts - out[i, 10], 0.0) / 3600.0


@njit(cache=True)
def _add_slotted(s, p, jb, jc, b, w, clicked, ts):
    """Count one impression (and its click) whose row entries are known."""
    person, last_click, pb_val, pc_val, glob = s[PERSON], s[LAST_CLICK], s[PB_VAL], s[PC_VAL], s[GLOB]
    for v in (person[p], pb_val[jb], pc_val[jc]):
        v[0] += 1.0
        v[1] += w
        if clicked:
            v[2] += 1.0
            v[3] += w
    glob[b, 0] += 1.0
    if clicked:
        glob[b, 1] += 1.0
        if math.isnan(last_click[p]) or ts > last_click[p]:
            last_click[p] = ts


@njit(cache=True)
def add_events(s, p, jb, jc, b, w, clicked, ts):
    """Count impressions whose row entries are known (a fixed set built from events)."""
    for i in range(p.shape[0]):
        _add_slotted(s, p[i], jb[i], jc[i], b[i], w[i], clicked[i], ts[i])


@njit(cache=True)
def sweep(s, tref, tau, e_p, e_jb, e_jc, e_b, e_w, e_clicked, e_ts, start,
          q_p, q_b, q_c, q_ts, q_order, empty, out):
    """Point-in-time replay: events (in time order, from index ``start``: the ones before
    are counted already) are counted one by one, and each query (taken in time order,
    ``q_order``) is read just before the first event at or after its time, so it sees
    exactly the events strictly before it. Returns the index of the first event not
    counted (where a later replay of later queries resumes)."""
    i = start
    n_events = e_ts.shape[0]
    one_b = np.empty(1, dtype=np.int64)
    one_c = np.empty(1, dtype=np.int64)
    for k in range(q_order.shape[0]):
        q = q_order[k]
        t = q_ts[q]
        while i < n_events and e_ts[i] < t:
            _add_slotted(s, e_p[i], e_jb[i], e_jc[i], e_b[i], e_w[i], e_clicked[i], e_ts[i])
            i += 1
        one_b[0] = q_b[q]
        one_c[0] = q_c[q]
        gather_person(s, tref, empty, tref, tau, q_p[q], one_b, one_c, t, out[q:q + 1])
    return i


@njit(cache=True)
def _insert(starts, lens, caps, keys, vals, used, which, p, k):
    """The entry of key k in person p's row of a growing set, inserted (sorted) if new; -1
    when the key arrays have no room left for moving the row (the caller grows them)."""
    start, length = starts[p], lens[p]
    j = _find(keys, start, length, k)
    if j >= 0:
        return j
    if length == caps[p]:
        cap = max(4, 2 * caps[p])
        if used[which] + cap > keys.shape[0]:
            return -1
        new = used[which]
        for t in range(length):
            keys[new + t] = keys[start + t]
            vals[new + t] = vals[start + t]
        starts[p] = new
        caps[p] = cap
        used[which] += cap
        start = new
    at = start + length
    while at > start and keys[at - 1] > k:
        keys[at] = keys[at - 1]
        vals[at] = vals[at - 1]
        at -= 1
    keys[at] = k
    vals[at] = 0.0
    lens[p] = length + 1
    return at


@njit(cache=True)
def add_online(s, p, b, c, w, clicked, ts, click_only):
    """Count impressions of person p (banners b, categories c, all at time ``ts`` with
    weight ``w``: one ranking's, so both are scalars) in a growing set; with
    ``click_only``, mark already counted impressions clicked. Returns False (nothing
    changed) when the set must grow first."""
    (person, last_click, pb_start, pb_len, pb_cap, pb_key, pb_val,
     pc_start, pc_len, pc_cap, pc_key, pc_val, glob, dropped, used) = s
    # room first, so that a call either counts everything or nothing
    need_b = 0
    need_c = 0
    for i in range(b.shape[0]):
        if _find(pb_key, pb_start[p], pb_len[p], b[i]) < 0:
            need_b += 1
        if _find(pc_key, pc_start[p], pc_len[p], c[i]) < 0:
            need_c += 1
    if need_b and used[0] + 2 * (pb_len[p] + need_b) + 4 > pb_key.shape[0]:
        return False
    if need_c and used[1] + 2 * (pc_len[p] + need_c) + 4 > pc_key.shape[0]:
        return False
    for i in range(b.shape[0]):
        jb = _insert(pb_start, pb_len, pb_cap, pb_key, pb_val, used, 0, p, b[i])
        jc = _insert(pc_start, pc_len, pc_cap, pc_key, pc_val, used, 1, p, c[i])
        if click_only:
            for v in (person[p], pb_val[jb], pc_val[jc]):
                v[2] += 1.0
                v[3] += w
            glob[b[i], 1] += 1.0
            if math.isnan(last_click[p]) or ts > last_click[p]:
                last_click[p] = ts
        else:
            _add_slotted(s, p, jb, jc, b[i], w, clicked[i] != 0, ts)
    return True


@njit(cache=True)
def rescale(s, f):
    """Multiply every weighted sum by f (the weights' origin moved)."""
    person, pb_val, pc_val, used = s[PERSON], s[PB_VAL], s[PC_VAL], s[USED]
    person[:, 1] *= f
    person[:, 3] *= f
    for j in range(used[0]):
        pb_val[j, 1] *= f
        pb_val[j, 3] *= f
    for j in range(used[1]):
        pc_val[j, 1] *= f
        pc_val[j, 3] *= f


# -- building a fixed set from events ---------------------------------------------------
def build_fixed(p: np.ndarray, b: np.ndarray, c: np.ndarray, n_people: int, n_banners: int,
                n_categories: int) -> tuple[CounterArrays, np.ndarray, np.ndarray]:
    """The row layout of events (person p, banner b, category c codes): one entry per
    distinct person x banner and person x category, rows in person order and keys sorted
    within a row; with each event's entries (to count it with ``add_events`` or ``sweep``)."""
    out = CounterArrays(n_people, n_banners)
    jb = _layout(p, b, n_banners, n_people, out, "pb")
    jc = _layout(p, c, n_categories, n_people, out, "pc")
    return out, jb, jc


def _layout(p: np.ndarray, k: np.ndarray, width: int, n_people: int, out: CounterArrays, prefix: str) -> np.ndarray:
    packed = p.astype(np.int64) * max(width, 1) + k
    uniq, inv = np.unique(packed, return_inverse=True)
    owner = uniq // max(width, 1)
    lens = np.bincount(owner, minlength=n_people).astype(np.int64)
    setattr(out, f"{prefix}_len", lens)
    setattr(out, f"{prefix}_cap", lens.copy())
    setattr(out, f"{prefix}_start", np.cumsum(lens) - lens)
    setattr(out, f"{prefix}_key", (uniq % max(width, 1)).astype(np.int32))
    setattr(out, f"{prefix}_val", np.zeros((len(uniq), 4)))
    out.used[0 if prefix == "pb" else 1] = len(uniq)
    return inv.reshape(-1).astype(np.int64)


# -- a fixed set with its vocabularies, on disk -------------------------------------------
def save_counters(folder: Path, arrays: CounterArrays, meta: dict) -> None:
    """Write a fixed set and its vocabularies into ``folder`` (created; a temporary
    sibling renamed into place, so a reader never sees half a folder)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True)
    arrays.save(tmp)
    (tmp / "vocabulary.json").write_text(json.dumps(meta), encoding="utf-8")
    os.replace(tmp, folder)


def load_counters(folder: Path) -> tuple[CounterArrays, dict]:
    folder = Path(folder)
    return CounterArrays.load(folder), json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))


class HistoryRows(dict):
    """The history fields of many rows: a dict of columns (by HIST_FIELDS name) that are
    views of one (n, N_HIST) ``matrix``, which the feature kernel reads without copying."""

    def __init__(self, matrix: np.ndarray):
        super().__init__(zip(HIST_FIELDS, matrix.T))  # the columns, as views
        self.matrix = matrix


def history_matrix(hist, n: int) -> np.ndarray:
    """``hist`` (history fields by name) as one (n, N_HIST) array."""
    matrix = getattr(hist, "matrix", None)
    if matrix is not None and matrix.shape == (n, N_HIST):
        return matrix
    out = np.empty((n, N_HIST))
    for j, name in enumerate(HIST_FIELDS):
        out[:, j] = hist[name]
    return out
