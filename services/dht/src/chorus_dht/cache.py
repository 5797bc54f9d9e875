"""SPEC's local cache with a TTL in front of a node's storage.

Every read of a value costs a FIND_VALUE on up to 2R nodes, each a storage lookup; the
cache answers repeated lookups of the same key (a copy or its absence) from memory for
``ttl`` seconds. It stays right because every change to this node's records goes
through the wrapper (STORE, repair, quarantine) and drops the key; a change made
behind the node's back (a disk going bad) is seen by repair, which reads the storage
itself, and by readers once the entry's TTL is over.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from chorus_dht.storage import OnQuarantine, Storage

__all__ = ["CachedStorage", "TtlCache"]

_ABSENT: dict[str, Any] = {}  # a cached "not held" (a real record is never empty)


class TtlCache:
    """A bounded LRU map whose entries lapse ``ttl`` seconds after they were put.

    Pure: the clock is passed in, so tests drive time themselves.
    """

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.ttl, self.clock = size, ttl, clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, value) while ``key`` is cached and fresh, else (False, None)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self.clock():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        self._entries[key] = (self.clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class CachedStorage:
    """A :class:`Storage` whose single-key reads go through a :class:`TtlCache`.

    Bulk paths (``get_many``, ``page``, ``all``) read the storage itself: they are
    repair's and the listings', which must see the bytes on disk to find damage.
    """

    def __init__(
        self,
        inner: Storage,
        cache: TtlCache,
        *,
        on_hit: Callable[[], None] = lambda: None,
        on_miss: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner, self.cache = inner, cache
        self.engine = inner.engine
        self.on_hit, self.on_miss = on_hit, on_miss
        self._told: OnQuarantine = lambda key, reason: None
        #: bumped by every change: a read that saw it move while it was reading the
        #: storage does not cache what it read (it may be the copy just replaced)
        self._changes = 0
        inner.on_quarantine = self._quarantined

    def _changed(self, key: str) -> None:
        self._changes += 1
        self.cache.drop(key)

    def _quarantined(self, key: str, reason: str) -> None:
        self._changed(key)
        self._told(key, reason)

    @property
    def on_quarantine(self) -> OnQuarantine:
        return self._told

    @on_quarantine.setter
    def on_quarantine(self, callback: OnQuarantine) -> None:
        self._told = callback

    async def open(self) -> None:
        self.cache.clear()
        await self.inner.open()

    async def close(self) -> None:
        self.cache.clear()
        await self.inner.close()

    async def put(self, key: str, record: dict[str, Any]) -> None:
        self._changed(key)
        try:
            await self.inner.put(key, record)
        finally:
            self._changed(key)

    async def get(self, key: str) -> dict[str, Any] | None:
        found, value = self.cache.get(key)
        if found:
            expires = value.get("expires_at")
            if value is _ABSENT:
                self.on_hit()
                return None
            if not expires or expires >= time.time():
                self.on_hit()
                return dict(value)
            self.cache.drop(key)
        self.on_miss()
        changes = self._changes
        record = await self.inner.get(key)
        if changes == self._changes:
            self.cache.put(key, _ABSENT if record is None else dict(record))
        return record

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return await self.inner.get_many(keys)

    async def delete(self, key: str) -> None:
        self._changed(key)
        try:
            await self.inner.delete(key)
        finally:
            self._changed(key)

    async def all(self) -> list[dict[str, Any]]:
        return await self.inner.all()

    async def page(self, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str]:
        return await self.inner.page(cursor, limit)

    async def stats(self) -> tuple[int, int]:
        return await self.inner.stats()

    async def raw_dump(self) -> bytes:
        return await self.inner.raw_dump()

    async def quarantine(self, key: str, reason: str) -> bool:
        self._changed(key)
        return await self.inner.quarantine(key, reason)

    async def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self.inner.quarantined(limit)

    async def quarantine_pending(self) -> list[str]:
        return await self.inner.quarantine_pending()
