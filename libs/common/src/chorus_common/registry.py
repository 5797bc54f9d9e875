"""The agent registry in the ``chorus-registry`` KV bucket: who an agent is and how to verify it.

One JSON document per agent under ``agent.<id>`` (public signing key, roles,
capabilities, availability: services add the fields they own) and one feed
head per agent under ``feed.<id>`` (sequence and digest of the last accepted
envelope), so every gateway replica, and a gateway after a restart, continues
each feed where it stood.

The head is a hint; what makes a feed single-writer is :class:`FeedIndex`, one
key per agent and ``feed_seq`` in ``chorus-feeds`` that only the first writer
can create, written *before* the entry is published and completed with the
entry's stream sequence after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue

from chorus_common.bus import Bus
from chorus_common.errors import ConflictError, NotFoundError, RequestInvalidError
from chorus_common.feeds import FeedState
from chorus_common.signing import b64decode
from chorus_common.topology import BUCKET_FEEDS, BUCKET_REGISTRY

__all__ = [
    "AgentDirectory",
    "FeedEntry",
    "FeedHead",
    "FeedIndex",
    "Reservation",
    "check_public_key",
]


@dataclass(frozen=True)
class FeedHead:
    state: FeedState
    revision: int | None  # None: no head stored yet


def check_public_key(public_key: str) -> None:
    """400 unless ``public_key`` is a 32-byte Ed25519 key in URL-safe base64."""
    try:
        if len(b64decode(public_key)) != 32:
            raise ValueError
    except ValueError:
        raise RequestInvalidError(
            "public_key must be a 32-byte Ed25519 key in URL-safe base64"
        ) from None


class AgentDirectory:
    """Reads and writes agent documents and feed heads, with a short read cache for keys."""

    def __init__(self, kv: KeyValue, cache_seconds: float = 5.0) -> None:
        self.kv = kv
        self.cache_seconds = cache_seconds
        self._keys: dict[str, tuple[float, str | None]] = {}

    @classmethod
    async def open(cls, bus: Bus | JetStreamContext, cache_seconds: float = 5.0) -> AgentDirectory:
        """On a connected :class:`~chorus_common.bus.Bus` (or, in chorus_common, a JetStream)."""
        js = bus.jetstream if isinstance(bus, Bus) else bus
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
        check_public_key(public_key)
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

    def forget(self, agent: str) -> None:
        """Drop the cached key of ``agent`` at once (this replica just rotated it)."""
        self._keys.pop(agent, None)

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
        """Move the head forward to ``state``, never back (compare-and-set, retried on races).

        Several gateways advance one head as their entries are reserved; the highest
        wins and a lower one is dropped, since :class:`FeedIndex` already holds it.
        """
        data = json.dumps({"seq": state.seq, "head": state.head}).encode()
        current = head
        for _ in range(20):
            if current.revision is not None and current.state.seq >= state.seq:
                return current
            try:
                if current.revision is None:
                    revision = await self.kv.create(f"feed.{agent}", data)
                else:
                    revision = await self.kv.update(f"feed.{agent}", data, last=current.revision)
            except KeyWrongLastSequenceError:
                current = await self.feed_head(agent)
                continue
            return FeedHead(state, revision)
        raise ConflictError(
            f"the feed head of {agent!r} is being moved concurrently; it catches up on the next entry"
        )


@dataclass(frozen=True)
class FeedEntry:
    """What ``chorus-feeds`` holds for one agent and ``feed_seq``.

    ``digest`` is the entry's (original, pre-redaction) digest. ``seq`` is ``None``
    while the entry is reserved but its publish not acknowledged (in flight, or its
    gateway died): the same envelope sent again completes it. ``written`` is the
    server's time of the record's last write (for a reservation: when it was made),
    so a search for a copy that was stored without its ack can start there.
    ``batch`` names the one acks record (:meth:`FeedIndex.record_acks`) that completes
    every entry reserved with it: a batch's acks cost one write, not one per entry.
    """

    digest: str
    revision: int
    written: datetime | None = None
    stream: str | None = None
    seq: int | None = None
    redacted: dict[str, int] | None = None
    batch: str | None = None

    @property
    def stored(self) -> bool:
        return self.seq is not None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"digest": self.digest}
        if self.seq is not None:
            doc.update(stream=self.stream, seq=self.seq, redacted=self.redacted)
        elif self.batch is not None:
            doc["batch"] = self.batch
        return json.dumps(doc).encode()


@dataclass(frozen=True)
class Reservation:
    """The answer of :meth:`FeedIndex.reserve` for one entry: ours, or who was there first."""

    entry: FeedEntry
    ours: bool


#: messages per atomic batch (nats-server refuses more than 1000 by default)
ATOMIC_BATCH_MAX = 1000


async def _atomic_batch(
    nc: Client, messages: list[tuple[str, bytes, dict[str, str]]], timeout: float = 10.0
) -> list[int] | None:
    """Publish ``messages`` as one JetStream atomic batch (ADR-50); their sequences, or None.

    All are stored with one fsync or none is: one refused consistency header
    (``Nats-Expected-Last-Subject-Sequence``) refuses the batch, as does a stream that
    takes no batches or a commit not acknowledged in time. None means "do it one by
    one": each message then meets its own header.
    """
    batch_id = uuid.uuid4().hex
    try:
        for n, (subject, data, headers) in enumerate(messages[:-1], start=1):
            batch = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n)}
            await nc.publish(subject, data, headers={**headers, **batch})
        subject, data, headers = messages[-1]
        commit = {
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(len(messages)),
            "Nats-Batch-Commit": "1",
        }
        reply = await nc.request(subject, data, headers={**headers, **commit}, timeout=timeout)
        answer = json.loads(reply.data)
    except Exception:
        return None
    if answer.get("error") is not None or answer.get("count") != len(messages):
        return None
    last = int(answer["seq"])
    return list(range(last - len(messages) + 1, last + 1))


class FeedIndex:
    """One record per agent and ``feed_seq`` in ``chorus-feeds``, created at most once.

    The create is a JetStream publish with ``Nats-Expected-Last-Subject-Sequence: 0``,
    so the server itself refuses a second entry at a seq, whichever gateway replica
    sends it. A record outlives the dedupe window of the stream: an exact re-send is
    answered from it with the original ack at any later time. A batch's records are
    written as one atomic batch (one fsync), falling back to one write per record
    when any of them is refused.
    """

    def __init__(self, nc: Client, js: JetStreamContext, kv: KeyValue) -> None:
        self.nc = nc
        self.js = js
        self.kv = kv
        self.stream = f"KV_{BUCKET_FEEDS}"

    @classmethod
    async def open(cls, bus: Bus | Client, js: JetStreamContext | None = None) -> FeedIndex:
        """On a connected :class:`~chorus_common.bus.Bus` (or a NATS client and JetStream)."""
        if isinstance(bus, Bus):
            nc, js = bus.client, bus.jetstream
        else:
            nc = bus
        assert js is not None, "a NATS client needs its JetStream beside it"
        return cls(nc, js, await js.key_value(BUCKET_FEEDS))

    @staticmethod
    def key(agent: str, seq: int) -> str:
        return f"{agent}.{seq}"

    def _subject(self, agent: str, seq: int) -> str:
        return f"$KV.{BUCKET_FEEDS}.{self.key(agent, seq)}"

    async def _read(self, subject: str) -> tuple[dict[str, Any], int, datetime | None] | None:
        try:
            msg = await self.js.get_msg(self.stream, subject=subject)
        except JsNotFoundError:
            return None
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None
        assert msg.seq is not None and msg.data is not None
        return json.loads(msg.data), msg.seq, msg.time

    async def get(self, agent: str, seq: int, *, resolve: bool = True) -> FeedEntry | None:
        """The record at ``seq``, read from the stream so its server time comes along.

        ``resolve`` looks up the ack of an entry completed by its batch's acks record;
        without it, such an entry reads as not (yet) stored.
        """
        found = await self._read(self._subject(agent, seq))
        if found is None:
            return None
        doc, revision, written = found
        entry = FeedEntry(
            digest=doc["digest"],
            revision=revision,
            written=written,
            stream=doc.get("stream"),
            seq=doc.get("seq"),
            redacted=doc.get("redacted"),
            batch=doc.get("batch"),
        )
        if entry.stored or entry.batch is None or not resolve:
            return entry
        acks = await self._read(self._acks_subject(agent, entry.batch))
        doc = acks[0] if acks is not None else {"acks": {}}
        ack = doc["acks"].get(str(seq))
        if ack is None:
            return entry  # the batch's acks were never recorded, or this one failed
        return replace(entry, stream=doc["stream"], seq=ack[0], redacted=ack[1])

    def _acks_subject(self, agent: str, batch: str) -> str:
        return f"$KV.{BUCKET_FEEDS}.{agent}.acks.{batch}"

    async def record_acks(
        self,
        agent: str,
        batch: str,
        stream: str,
        acks: dict[int, tuple[int, dict[str, int] | None]],
    ) -> None:
        """The acks of the entries reserved with ``batch``: ``{feed_seq: (stream seq, findings)}``."""
        doc = {"stream": stream, "acks": {str(k): list(v) for k, v in acks.items()}}
        await self.kv.put(f"{agent}.acks.{batch}", json.dumps(doc).encode())

    async def _written_together(
        self, agent: str, items: list[tuple[int, FeedEntry, int]]
    ) -> list[FeedEntry] | None:
        """Write ``(feed_seq, record, expected revision)`` in atomic batches.

        Returns the records written, in order, from the first: all of them, the chunks
        before one that was refused, or None when nothing was.
        """
        if len(items) < 2:
            return None  # a single write is as cheap as a batch of one
        out: list[FeedEntry] = []
        for i in range(0, len(items), ATOMIC_BATCH_MAX):
            chunk = items[i : i + ATOMIC_BATCH_MAX]
            messages = [
                (
                    self._subject(agent, seq),
                    entry.encode(),
                    {"Nats-Expected-Last-Subject-Sequence": str(expected)},
                )
                for seq, entry, expected in chunk
            ]
            revisions = await _atomic_batch(self.nc, messages)
            if revisions is None:
                return out or None  # what was written; the caller does the rest one by one
            out += [
                replace(entry, revision=r)
                for (_, entry, _), r in zip(chunk, revisions, strict=True)
            ]
        return out

    async def reserve(
        self, agent: str, entries: list[tuple[int, str]], batch: str | None = None
    ) -> list[Reservation]:
        """Create the record of each ``(feed_seq, digest)``; where one exists, return it instead.

        ``batch``: the acks record that will complete them (see :meth:`record_acks`).
        A caller that finds an entry taken by another must :meth:`release` its own
        reservations after it (they link to the loser).
        """
        records = [
            (seq, FeedEntry(digest=digest, revision=0, batch=batch), 0) for seq, digest in entries
        ]
        together = await self._written_together(agent, records)
        if together is not None and len(together) == len(entries):
            return [Reservation(entry, ours=True) for entry in together]
        done = len(together or [])

        async def one(seq: int, digest: str) -> Reservation:
            entry = FeedEntry(digest=digest, revision=0, batch=batch)
            for _ in range(5):
                try:
                    revision = await self.kv.create(self.key(agent, seq), entry.encode())
                    return Reservation(replace(entry, revision=revision), ours=True)
                except KeyWrongLastSequenceError:
                    existing = await self.get(agent, seq)
                    if existing is not None:
                        return Reservation(existing, ours=False)
            raise ConflictError(f"feed_seq {seq} of {agent!r} is contended; try again")

        rest = await asyncio.gather(*(one(seq, digest) for seq, digest in entries[done:]))
        return [Reservation(entry, ours=True) for entry in together or []] + list(rest)

    async def release(self, agent: str, seq: int, entry: FeedEntry) -> None:
        """Withdraw our unpublished reservation, unless someone changed it meanwhile."""
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.kv.delete(self.key(agent, seq), last=entry.revision)

    async def complete(
        self,
        agent: str,
        seq: int,
        entry: FeedEntry,
        stream: str,
        stream_seq: int,
        redacted: dict[str, int] | None,
    ) -> FeedEntry:
        """Record where the entry was stored; the first ack recorded stays the answer."""
        done = replace(entry, stream=stream, seq=stream_seq, redacted=redacted, batch=None)
        current: FeedEntry | None = entry
        for _ in range(5):
            if current is None or current.digest != entry.digest:
                break  # released and taken over: nothing of ours to complete
            if current.stored:
                return current
            try:
                revision = await self.kv.update(
                    self.key(agent, seq), done.encode(), last=current.revision
                )
                return replace(done, revision=revision)
            except KeyWrongLastSequenceError:
                current = await self.get(agent, seq)
        return done

    async def complete_many(
        self, agent: str, items: list[tuple[int, FeedEntry, PubAck, dict[str, int] | None]]
    ) -> list[FeedEntry]:
        """:meth:`complete` for many ``(feed_seq, record, ack, redaction findings)`` at once."""
        records = [
            (
                seq,
                replace(entry, stream=ack.stream, seq=ack.seq, redacted=redacted, batch=None),
                entry.revision,
            )
            for seq, entry, ack, redacted in items
        ]
        together = await self._written_together(agent, records)
        done = len(together or [])
        rest = await asyncio.gather(
            *(
                self.complete(agent, seq, entry, ack.stream, ack.seq, redacted)
                for seq, entry, ack, redacted in items[done:]
            )
        )
        return list(together or []) + list(rest)
