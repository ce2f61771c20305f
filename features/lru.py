"""A bounded least-recently-used map: the serving caches' eviction rule.

The service's caches are keyed on things like a candidate list or a profile, whose number
in production (roles x school levels x regions, each with its own eligible list) is in
the hundreds to thousands. Dropping a whole cache when it is full makes every entry
miss again as soon as the working set is one entry larger than the bound, which is
the case the cache exists for; evicting the least recently used entry does not.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``max_entries`` entries; ``get`` marks an entry used, ``put`` evicts the
    least recently used one when full. Not for concurrent use: its callers rank on one
    thread or hold a lock (the service's event loop, an arm's lock, the online history's)."""

    __slots__ = ("max_entries", "_entries")

    def __init__(self, max_entries: int):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        entries = self._entries
        entries[key] = value
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
