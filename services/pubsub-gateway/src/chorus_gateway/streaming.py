"""Subscriptions for HTTP clients: live (core NATS) or replayed (JetStream), each with a bounded queue.

A client that cannot keep up is disconnected with a clear reason when its
queue fills; it never slows the bus or other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from chorus_common.bus import EVENTS_STREAM, Bus
from chorus_common.errors import SubjectError
from chorus_common.subjects import STREAM_EVENTS_SUBJECTS, subject_matches, validate_filter


class SlowConsumer(Exception):
    """The client's queue overflowed; it is dropped."""


@dataclass(frozen=True)
class Delivered:
    subject: str
    data: bytes
    seq: int | None

    def document(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.data)
        except ValueError:
            body = self.data.decode(errors="replace")
        return {"subject": self.subject, "seq": self.seq, "envelope": body}


def _in_events_stream(subject_filter: str) -> bool:
    """A replay needs a filter inside CHORUS_EVENTS (chorus.coord.>, chorus.hmmm.x.>, …)."""
    return any(
        subject_matches(stream_subject, subject_filter.replace("*", "x").replace(">", "x"))
        for stream_subject in STREAM_EVENTS_SUBJECTS
    )


class Subscription:
    """One client's view of the bus: an async iterator of deliveries, or SlowConsumer."""

    def __init__(self, bus: Bus, subject_filter: str, queue_size: int) -> None:
        self.bus = bus
        self.filter = validate_filter(subject_filter)
        self.queue: asyncio.Queue[Delivered | None] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False
        self.dropped = asyncio.Event()
        self._sub: Any = None

    async def start(self, from_seq: int | None = None, since: datetime | None = None) -> None:
        if from_seq is None and since is None:
            self._sub = await self.bus.nc.subscribe(self.filter, cb=self._on_msg)
            return
        if not _in_events_stream(self.filter):
            raise SubjectError(
                f"replay (from_seq/since) needs a subject filter inside the CHORUS_EVENTS stream "
                f"({', '.join(STREAM_EVENTS_SUBJECTS)}); {self.filter!r} is not"
            )
        if from_seq is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq
            )
        else:
            assert since is not None
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since
            )
        self._sub = await self.bus.js.subscribe(
            self.filter, stream=EVENTS_STREAM, ordered_consumer=True, config=config, cb=self._on_msg
        )

    async def _on_msg(self, msg: Msg) -> None:
        if self.overflowed:
            return
        seq = None
        if msg.reply and msg.reply.startswith("$JS.ACK"):
            with contextlib.suppress(Exception):
                seq = msg.metadata.sequence.stream
        try:
            self.queue.put_nowait(Delivered(msg.subject, msg.data, seq))
        except asyncio.QueueFull:
            self.overflowed = True
            self.dropped.set()
            # wake the reader so it can tell its client why it is being dropped
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Delivered]:
        while True:
            item = await self.queue.get()
            if item is None:
                raise SlowConsumer(
                    f"slow consumer: more than {self.queue.maxsize} messages were waiting; "
                    f"reconnect with from_seq to resume"
                )
            yield item

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
