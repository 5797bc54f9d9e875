"""The agent registry in the ``chorus-registry`` KV bucket: who an agent is and how to verify it.

One JSON document per agent under ``agent.<id>`` (public signing key, roles,
capabilities, availability: services add the fields they own) and one feed
head per agent under ``feed.<id>`` (sequence and digest of the last accepted
envelope), so every gateway replica, and a gateway after a restart, continues
each feed where it stood.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from chorus_common.errors import ConflictError, NotFoundError
from chorus_common.feeds import FeedState
from chorus_common.signing import b64decode
from chorus_common.topology import BUCKET_REGISTRY


@dataclass(frozen=True)
class FeedHead:
    state: FeedState
    revision: int | None  # None: no head stored yet


class AgentDirectory:
    """Reads and writes agent documents and feed heads, with a short read cache for keys."""

    def __init__(self, kv: KeyValue, cache_seconds: float = 5.0) -> None:
        self.kv = kv
        self.cache_seconds = cache_seconds
        self._keys: dict[str, tuple[float, str | None]] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, cache_seconds: float = 5.0) -> AgentDirectory:
        return cls(await js.key_value(BUCKET_REGISTRY), cache_seconds)

    async def get(self, agent: str) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(f"agent.{agent}")
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        doc: dict[str, Any] = json.loads(entry.value)
        return doc

    async def update(self, agent: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the agent's document (compare-and-set, retried on races)."""
        key = f"agent.{agent}"
        for _ in range(20):
            try:
                entry = await self.kv.get(key)
                doc = json.loads(entry.value) if entry.value else {}
                revision: int | None = entry.revision
            except KeyNotFoundError:
                doc, revision = {"agent": agent}, None
            doc.update(fields)
            doc["updated_at"] = time.time()
            data = json.dumps(doc).encode()
            try:
                if revision is None:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=revision)
            except KeyWrongLastSequenceError:
                continue
            except Exception as exc:  # create() on a key that appeared meanwhile
                if "wrong last sequence" in str(exc).lower():
                    continue
                raise
            self._keys.pop(agent, None)
            return dict(doc)
        raise ConflictError(f"agent {agent!r} is being updated concurrently; try again")

    async def register_key(self, agent: str, public_key: str) -> dict[str, Any]:
        try:
            if len(b64decode(public_key)) != 32:
                raise ValueError
        except ValueError:
            from chorus_common.errors import RequestInvalidError

            raise RequestInvalidError(
                "public_key must be a 32-byte Ed25519 key in URL-safe base64"
            ) from None
        return await self.update(agent, public_key=public_key)

    async def public_key(self, agent: str) -> str | None:
        now = time.monotonic()
        cached = self._keys.get(agent)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        doc = await self.get(agent)
        key = doc.get("public_key") if doc else None
        self._keys[agent] = (now, key)
        return key

    async def require_public_key(self, agent: str) -> str:
        key = await self.public_key(agent)
        if key is None:
            raise NotFoundError(f"agent {agent!r} has no registered signing key")
        return key

    async def feed_head(self, agent: str) -> FeedHead:
        try:
            entry = await self.kv.get(f"feed.{agent}")
        except KeyNotFoundError:
            return FeedHead(FeedState(), None)
        assert entry.value is not None
        doc = json.loads(entry.value)
        return FeedHead(FeedState(seq=int(doc["seq"]), head=doc["head"]), entry.revision)

    async def advance_feed(self, agent: str, head: FeedHead, state: FeedState) -> FeedHead:
        """Store the new head if nobody moved it since ``head`` was read."""
        data = json.dumps({"seq": state.seq, "head": state.head}).encode()
        try:
            if head.revision is None:
                revision = await self.kv.create(f"feed.{agent}", data)
            else:
                revision = await self.kv.update(f"feed.{agent}", data, last=head.revision)
        except KeyWrongLastSequenceError:
            raise ConflictError(
                f"the feed of {agent!r} advanced concurrently elsewhere; resend from its head"
            ) from None
        return FeedHead(state, revision)
