"""Typed KV buckets: one pydantic model per bucket (or key family), compare-and-set writes.

Leases, registry entries, tasks, feed heads and sessions are JSON documents in
JetStream KV. A :class:`Bucket` decodes and validates them in one place and
turns the bucket's errors into ChorusErrors: a write whose expected revision no
longer holds is a :class:`~chorus_common.errors.ConflictError` (409), a missing
key on ``update`` a :class:`~chorus_common.errors.NotFoundError`, a server that
is away an :class:`~chorus_common.errors.UnavailableError` (503).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from nats.js.kv import KeyValue
from pydantic import BaseModel

from chorus_common import kvscan
from chorus_common.bus.decoding import decode_as
from chorus_common.bus.errors import bus_errors
from chorus_common.errors import MalformedBodyError, NotFoundError

if TYPE_CHECKING:
    from chorus_common.bus.core import Bus

__all__ = ["Bucket", "Change", "Versioned"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Versioned(Generic[M]):
    """A document and the revision it was read at (what a compare-and-set write names)."""

    value: M
    revision: int


@dataclass(frozen=True)
class Change(Generic[M]):
    """One change a watch sees: the key (without the bucket's prefix), the revision, and
    the document — None when the key was deleted or purged (``deleted``) or when what
    was written there is not a document of the bucket's model (``deleted`` false)."""

    key: str
    revision: int
    value: M | None
    deleted: bool


#: the KV operations that leave a key without a value
_GONE = frozenset({"DEL", "PURGE"})


class Bucket(Generic[M]):
    """One KV bucket whose values (under ``prefix``) are ``model`` documents."""

    def __init__(self, bus: Bus, name: str, model: type[M], prefix: str = "") -> None:
        self.bus, self.name, self.model, self.prefix = bus, name, model, prefix
        self._kv: KeyValue | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            with bus_errors(f"open bucket {self.name}"):
                self._kv = await self.bus.jetstream.key_value(self.name)
        return self._kv

    def _decode(self, key: str, data: bytes) -> M:
        return decode_as(self.model, data, f"{self.name}/{key}")

    async def get(self, key: str) -> Versioned[M] | None:
        """The document at ``key`` and its revision, or None when there is none."""
        kv = await self.kv()
        full = self.prefix + key
        try:
            with bus_errors(f"read {self.name}/{full}"):
                entry = await kv.get(full)
        except NotFoundError:  # never written, or deleted
            return None
        if not entry.value or entry.revision is None:
            return None
        return Versioned(self._decode(full, entry.value), entry.revision)

    async def create(self, key: str, value: M, *, ttl: float | None = None) -> int:
        """Write ``value`` only if ``key`` holds nothing (409 otherwise); its revision.

        ``ttl``: the server drops the document that many seconds later (the bucket must
        allow per-message TTLs)."""
        kv = await self.kv()
        full = self.prefix + key
        data = value.model_dump_json().encode()
        with bus_errors(f"create {self.name}/{full}"):
            if ttl is None:
                return int(await kv.create(full, data))
            return int(await kv.create(full, data, msg_ttl=ttl))

    async def update(self, key: str, value: M, revision: int) -> int:
        """Write ``value`` only if ``key`` is still at ``revision`` (409 otherwise)."""
        kv = await self.kv()
        full = self.prefix + key
        with bus_errors(f"update {self.name}/{full}"):
            return int(await kv.update(full, value.model_dump_json().encode(), last=revision))

    async def put(self, key: str, value: M) -> int:
        """Write ``value`` whatever ``key`` holds (last writer wins: for one owner's keys)."""
        kv = await self.kv()
        full = self.prefix + key
        with bus_errors(f"write {self.name}/{full}"):
            return int(await kv.put(full, value.model_dump_json().encode()))

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Delete ``key`` (only at ``revision`` when given: 409 if it moved on)."""
        kv = await self.kv()
        full = self.prefix + key
        with bus_errors(f"delete {self.name}/{full}"):
            await kv.delete(full, last=revision)

    async def scan(self, pattern: str = ">") -> dict[str, M]:
        """Every live document under ``prefix + pattern``, by key without the prefix, in one
        pass (see :mod:`chorus_common.kvscan`); one that does not decode is left out."""
        with bus_errors(f"scan {self.name}/{self.prefix}{pattern}"):
            raw = await kvscan.scan(self.bus.client, self.name, self.prefix + pattern)
        out: dict[str, M] = {}
        for key, data in raw.items():
            try:
                out[key.removeprefix(self.prefix)] = self._decode(key, data)
            except MalformedBodyError:
                continue
        return out

    async def watch(self) -> AsyncGenerator[Change[M] | None, None]:
        """Every live document under the prefix, then ``None`` once those are all
        delivered, then every later change, as long as the caller iterates; the
        server's consumer is stopped when the iteration ends."""
        kv = await self.kv()
        with bus_errors(f"watch {self.name}/{self.prefix}>"):
            watcher = await (kv.watch(self.prefix + ">") if self.prefix else kv.watchall())
        try:
            async for entry in watcher:
                if entry is None:
                    yield None
                    continue
                if entry.revision is None:
                    continue
                deleted = (entry.operation or "") in _GONE
                value: M | None = None
                if not deleted and entry.value:
                    with contextlib.suppress(MalformedBodyError):
                        value = self._decode(entry.key, entry.value)
                yield Change(entry.key.removeprefix(self.prefix), entry.revision, value, deleted)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
