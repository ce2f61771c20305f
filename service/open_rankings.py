"""The rankings open to clicks, held in flat arrays of a fixed capacity.

A service keeps hundreds of thousands of served rankings to join each click to the
ranking (who, when, which banner at which position) it was made on. As one Python
object per ranking (an id string, a dict slot, an object, a tuple) each cost about
0.4 KB, and memory grew with traffic until the bound; here each costs a row of arrays
(about 60 bytes with three banners shown): a 128-bit digest of its request id, its
time, its person (an index into a table of ids), its shown (banner, category) pairs
(indices too) and their clicks. Rows form a ring in arrival order: the oldest is let go
when its click window ends or when the ring is full. A request id is found through an
open-addressing hash table of row numbers (linear probing, deletions by backward shift,
so that expiry leaves no tombstones behind).

With ``reserve`` every page of the arrays is written at start, so that the store's
memory is what it will ever be from the first request on; without it the arrays take
memory as rows are first used.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np


def _digest(request_id: str) -> tuple[int, int]:
    """A request id's key in the table (a caller that looks an id up and then adds it
    computes it once: ``key``)."""
    d = hashlib.blake2b(request_id.encode(), digest_size=16).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")


class _Names:
    """Strings by small integer code (1-based; 0 is none), compacted by the caller."""

    __slots__ = ("code", "names")

    def __init__(self):
        self.code: dict = {}
        self.names: list = [None]

    def intern(self, name) -> int:
        c = self.code.get(name)
        if c is None:
            c = self.code[name] = len(self.names)
            self.names.append(name)
        return c

    def keep(self, used: np.ndarray) -> np.ndarray:
        """Keep only the codes in ``used`` (sorted, unique, > 0); the map old -> new code."""
        remap = np.zeros(len(self.names), dtype=np.int32)
        remap[used] = np.arange(1, len(used) + 1, dtype=np.int32)
        self.names = [None, *(self.names[c] for c in used.tolist())]
        self.code = {n: i for i, n in enumerate(self.names) if i}
        return remap


class OpenRankings:
    """At most ``capacity`` rankings, each a request id, a person, a time and its shown
    (banner, category) pairs in position order, with the banners clicked on it."""

    COMPACT_SLACK = 1024  # ids kept beyond twice the ones in use before the tables are compacted

    def __init__(self, capacity: int, reserve: bool = False, width: int = 4):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._mask = (1 << max(2 * capacity - 1, 1).bit_length()) - 1  # table size: a power of 2 >= 2 x capacity
        self._table = np.zeros(self._mask + 1, dtype=np.int32)  # row + 1; 0: empty
        self._hi = np.zeros(capacity, dtype=np.uint64)
        self._lo = np.zeros(capacity, dtype=np.uint64)
        self._ts = np.zeros(capacity, dtype=np.float64)
        self._staff = np.zeros(capacity, dtype=np.int32)  # staff code; 0: no ranking in this row
        self._shown = np.zeros((capacity, width), dtype=np.int32)  # (banner, category) codes; 0: none
        self._clicked = np.zeros((capacity, width), dtype=bool)
        self._reserve = reserve
        if reserve:
            for a in (self._table, self._hi, self._lo, self._ts, self._staff, self._shown, self._clicked):
                a.fill(0)  # write every page now: resident from the start
        self._head = 0  # the oldest row still in the ring
        self._used = 0  # rows from head to the newest (some may have been removed since)
        self._live = 0
        self._added = 0
        self.evicted = 0  # rankings let go because the ring was full
        self._people = _Names()
        self._pairs = _Names()

    def __len__(self) -> int:
        return self._live

    # the hash table
    def _find(self, hi: int, lo: int) -> int:
        i = lo & self._mask
        table, his, los = self._table, self._hi, self._lo
        while True:
            r = int(table[i]) - 1
            if r < 0:
                return -1
            if int(los[r]) == lo and int(his[r]) == hi:
                return r
            i = (i + 1) & self._mask

    def _unlink(self, row: int) -> None:
        """Take ``row`` out of the table, moving later entries of its probe run back."""
        mask, table, los = self._mask, self._table, self._lo
        i = int(los[row]) & mask
        while int(table[i]) != row + 1:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            r = int(table[j]) - 1
            if r < 0:
                break
            home = int(los[r]) & mask
            if (i < home <= j) if i <= j else (home > i or home <= j):
                continue  # its home lies after the hole: it stays where it is
            table[i] = r + 1
            i = j
        table[i] = 0

    def _remove(self, row: int) -> None:
        self._unlink(row)
        self._staff[row] = 0
        self._shown[row] = 0
        self._clicked[row] = False
        self._live -= 1

    # the ring
    @staticmethod
    def key(request_id: str) -> tuple[int, int]:
        """The key ``row`` and ``add`` look ``request_id`` up by."""
        return _digest(request_id)

    def add(self, request_id: str, staff_id: str, ts: float, shown: list[tuple[str, str]],
            key: tuple[int, int] | None = None) -> int:
        """Open a ranking: its row, or -1 (nothing changed) when its request is already
        open. When the ring is full the oldest ranking makes room (counted in
        ``evicted``). ``key``: ``key(request_id)``, if the caller has it already."""
        hi, lo = key if key is not None else _digest(request_id)
        if self._find(hi, lo) >= 0:
            return -1
        if self._used == self.capacity:
            self._skip_removed()
            if self._used == self.capacity and self._live < self.capacity:
                self._repack()
            if self._used == self.capacity:
                self.drop_oldest()
                self.evicted += 1
        if len(shown) > self._shown.shape[1]:
            self._widen(len(shown))
        row = (self._head + self._used) % self.capacity
        self._used += 1
        self._live += 1
        self._hi[row], self._lo[row], self._ts[row] = hi, lo, ts
        self._staff[row] = self._people.intern(staff_id)
        self._shown[row, :len(shown)] = [self._pairs.intern(p) for p in shown]
        i = lo & self._mask
        while self._table[i]:
            i = (i + 1) & self._mask
        self._table[i] = row + 1
        self._added += 1
        if self._added % self.capacity == 0:
            self._compact_names()  # once per turn of the ring: the ids no row uses are let go
        return row

    def _widen(self, width: int) -> None:
        w = max(width, 2 * self._shown.shape[1])
        shown = np.zeros((self.capacity, w), dtype=np.int32)
        clicked = np.zeros((self.capacity, w), dtype=bool)
        shown[:, :self._shown.shape[1]] = self._shown
        clicked[:, :self._clicked.shape[1]] = self._clicked
        self._shown, self._clicked = shown, clicked

    def oldest_ts(self) -> float | None:
        """The time of the oldest ranking in the ring (None when it is empty)."""
        self._skip_removed()
        return float(self._ts[self._head]) if self._used else None

    def drop_oldest(self) -> None:
        """Let the oldest ranking go."""
        self._skip_removed()
        if self._used:
            self._remove(self._head)
            self._advance()

    def _advance(self) -> None:
        self._head = (self._head + 1) % self.capacity
        self._used -= 1

    def _skip_removed(self) -> None:
        while self._used and not self._staff[self._head]:
            self._advance()

    def _repack(self) -> None:
        """Move the rankings to the front of the arrays, in order, leaving out the rows
        erased people left in the ring; then index them again. O(capacity), and only
        needed when the ring is full of rows some of which were erased."""
        order = (self._head + np.arange(self._used)) % self.capacity
        order = order[self._staff[order] > 0]
        n = len(order)
        for a in (self._hi, self._lo, self._ts, self._staff, self._shown, self._clicked):
            a[:n] = a[order]
            a[n:] = 0
        self._head, self._used = 0, n
        self._table[:] = 0
        for row, lo in enumerate(self._lo[:n].tolist()):
            i = lo & self._mask
            while self._table[i]:
                i = (i + 1) & self._mask
            self._table[i] = row + 1

    def _compact_names(self) -> None:
        live = self._staff[self._staff > 0]
        if len(self._people.names) > 2 * len(live) + self.COMPACT_SLACK:
            remap = self._people.keep(np.unique(live))
            self._staff[:] = remap[self._staff]
        pairs = self._shown[self._shown > 0]
        if len(self._pairs.names) > 2 * len(pairs) + self.COMPACT_SLACK:
            remap = self._pairs.keep(np.unique(pairs))
            self._shown[:] = remap[self._shown]

    # what a click or an outcome needs
    def row(self, request_id: str, key: tuple[int, int] | None = None) -> int:
        """The row of an open ranking, -1 when it is not open."""
        return self._find(*(key if key is not None else _digest(request_id)))

    def staff(self, row: int) -> str:
        return self._people.names[int(self._staff[row])]

    def ts(self, row: int) -> float:
        return float(self._ts[row])

    def shown(self, row: int) -> list[tuple[str, str]]:
        """The (banner, category) pairs shown, in position order."""
        names = self._pairs.names
        return [names[c] for c in self._shown[row].tolist() if c]

    def click(self, row: int, position: int) -> bool:
        """Mark the banner at ``position`` (0-based) clicked; False when it already was."""
        if self._clicked[row, position]:
            return False
        self._clicked[row, position] = True
        return True

    def clicked(self, row: int) -> set[str]:
        names = self._pairs.names
        return {names[c][0] for c, k in zip(self._shown[row].tolist(), self._clicked[row].tolist()) if k}

    def people(self) -> set[str]:
        """Everyone with an open ranking."""
        names = self._people.names
        return {names[c] for c in np.unique(self._staff[self._staff > 0]).tolist()}

    def forget(self, staff_ids: Iterable[str]) -> int:
        """Close the rankings of these people and let their ids go; how many were closed."""
        codes = [c for c in (self._people.code.get(s) for s in staff_ids) if c is not None]
        if not codes:
            return 0
        rows = np.flatnonzero(np.isin(self._staff, codes))
        for r in rows.tolist():
            self._remove(r)
        for s in [self._people.names[c] for c in codes]:
            del self._people.code[s]
        for c in codes:
            self._people.names[c] = None
        self._skip_removed()
        return len(rows)

    def nbytes(self) -> int:
        """The arrays' size (the tables of ids come on top)."""
        return sum(a.nbytes for a in (self._table, self._hi, self._lo, self._ts, self._staff, self._shown,
                                      self._clicked))
