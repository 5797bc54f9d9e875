"""The durable pull consumer of envelopes: pull → decode → handle → ack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX

from chorus_common import tracing
from chorus_common.aio import cancel_and_wait
from chorus_common.envelopes import Envelope
from chorus_common.errors import EnvelopeError

if TYPE_CHECKING:
    from chorus_common.bus.core import Bus

__all__ = ["EVENTS_STREAM", "Consumer", "Delivery", "Handler"]

log = logging.getLogger("chorus.bus")

EVENTS_STREAM = "CHORUS_EVENTS"
#: a consumer's pull request: how long it waits on the server for messages, how often
#: the server says it is still waiting, the silence after which the consumer asks again
#: (the request was lost), and the pause before asking again after a refusal
PULL_EXPIRES, PULL_HEARTBEAT = 5.0, 1.0
PULL_SILENCE, PULL_RETRY = 3 * PULL_HEARTBEAT, 0.5


@dataclass(frozen=True)
class Delivery:
    """Where an envelope came from, for handlers that care (replays, audits)."""

    subject: str
    stream_seq: int
    num_delivered: int
    headers: dict[str, str]


Handler = Callable[[Envelope, Delivery], Awaitable[None]]


class Consumer:
    """The pull → decode → handle → ack loop of one durable consumer.

    It keeps a pull request for ``batch`` messages open on the server and takes what
    arrives on its own inbox in a callback subscription, one message at a time. A
    message then costs a queue hand-off inside nats-py, where ``fetch`` started a
    ``wait_for`` task per message (a third of consuming an envelope). A new request
    goes out when the open one is used up or expires; silence for three heartbeats
    (the server restarted, a reconnect dropped the request) or a refusal sends
    another.
    """

    def __init__(
        self,
        bus: Bus,
        consumer: str,
        handler: Handler,
        name: str,
        batch: int,
        *,
        subject_filter: str | None = None,
        durable: str | None = None,
        stream: str = EVENTS_STREAM,
    ) -> None:
        self.bus = bus
        self.consumer = consumer
        self.handler = handler
        self.name = name
        self.batch = batch
        self.subject_filter = subject_filter or name
        self.durable = durable
        self.stream = stream
        self._next = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = ""
        self._sub: Subscription | None = None
        self._wanted = 0  # messages the open pull request may still deliver
        self._due = 0.0  # when to send another request if the server stays silent
        self._handling = False
        self._task: asyncio.Task[None] | None = None
        metrics = bus.metrics
        # bound once: a label lookup per envelope is measurable at thousands a second
        self._ok = metrics.consumed.labels(name, "ok") if metrics else None
        self._latency = metrics.handler_latency.labels(name) if metrics else None

    async def start(self) -> None:
        self._inbox = self.bus.client.new_inbox()
        self._sub = await self.bus.client.subscribe(self._inbox, cb=self._on_message)
        await self._pull()
        self._task = asyncio.create_task(self._watch(), name=f"consumer:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def kick(self) -> None:
        """Ask again soon: after a reconnect the open request may be gone with the old link."""
        self._due = 0.0

    async def _pull(self) -> None:
        if not self.bus.admit():  # no seat: ask nothing; the watchdog looks again
            self._wanted = 0
            self._due = time.monotonic() + PULL_RETRY
            return
        self._wanted = self.batch
        self._due = time.monotonic() + PULL_SILENCE
        request = {
            "batch": self.batch,
            "expires": int(PULL_EXPIRES * 1e9),
            "idle_heartbeat": int(PULL_HEARTBEAT * 1e9),
        }
        try:
            await self.bus.client.publish(
                self._next, json.dumps(request).encode(), reply=self._inbox
            )
        except Exception as exc:  # closed or not yet reconnected: the watchdog asks again
            log.debug("pull request on %s not sent: %s", self.name, exc)
            self._due = time.monotonic() + PULL_RETRY

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(max(self._due - time.monotonic(), 0.01), PULL_HEARTBEAT))
            if time.monotonic() >= self._due and not self._handling:
                await self._pull()

    async def _on_message(self, msg: Msg) -> None:
        self._due = time.monotonic() + PULL_SILENCE
        if not msg.data and msg.headers and "Status" in msg.headers:
            await self._on_status(msg.headers)
            return
        self._wanted -= 1
        if not self.bus.admit():
            # delivered on a pull sent while licensed: hand it back for after this pull
            # request has expired, so the closed gate costs it one delivery, not max_deliver
            with contextlib.suppress(Exception):
                await msg.nak(delay=PULL_EXPIRES + 1.0)
            return
        self._handling = True
        try:
            await self._handle(msg)
        finally:
            self._handling = False
        if self._wanted <= 0:
            await self._pull()

    async def _on_status(self, headers: dict[str, str]) -> None:
        status = headers.get("Status")
        if status == "100":  # idle heartbeat: the request is still open
            return
        if status == "408":  # the request expired (or was replaced): open the next
            await self._pull()
            return
        description = headers.get("Description", "")
        if (status == "409" and "Deleted" in description) or status in ("404", "503"):
            log.error(
                "consumer %s on %s does not answer pulls (%s %s); retrying",
                self.name,
                self.stream,
                status,
                description,
            )
        else:  # 409: a leader moved, the server shuts down, too many waiting requests
            log.debug("pull on %s ended: %s %s", self.name, status, description)
        self._due = time.monotonic() + PULL_RETRY

    async def _handle(self, msg: Msg) -> None:
        metrics = self.bus.metrics
        try:
            env = Envelope.decode(msg.data, self.bus.settings.max_message_bytes)
        except EnvelopeError as exc:
            # poison: redelivering it would fail the same way forever
            log.warning("terminating undecodable message on %s: %s", msg.subject, exc.detail)
            if metrics:
                metrics.poison.labels(self.name, exc.code).inc()
            with contextlib.suppress(Exception):
                await msg.term()
            return
        headers = dict(msg.headers or {})
        meta = msg.metadata
        delivery = Delivery(
            subject=msg.subject,
            stream_seq=meta.sequence.stream,
            num_delivered=meta.num_delivered,
            headers=headers,
        )
        started = time.perf_counter()
        with tracing.continue_trace(f"consume {msg.subject}", headers):
            try:
                await self.handler(env, delivery)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed on %s (delivery %d)", msg.subject, meta.num_delivered)
                if metrics:
                    metrics.consumed.labels(self.name, "error").inc()
                with contextlib.suppress(Exception):
                    await msg.nak(delay=min(0.1 * 2**meta.num_delivered, 5.0))
                return
        with contextlib.suppress(Exception):
            await msg.ack()
        if self._ok is not None and self._latency is not None:
            self._ok.inc()
            self._latency.observe(time.perf_counter() - started)
