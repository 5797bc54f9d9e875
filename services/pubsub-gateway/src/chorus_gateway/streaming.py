"""Subscriptions for HTTP clients: envelope subjects only, each client behind a bounded queue.

The bus carries more than envelopes — JetStream API calls and replies
(``$JS.>``, ``_INBOX.>``), KV writes of leases and the registry (``$KV.>``),
service requests (``chorus.svc.>``), DHT RPC, election heartbeats — so a
client's filter must overlap the envelope subjects (:data:`ENVELOPE_SUBJECTS`)
and only messages on those subjects ever reach it, whatever its filter.

Live delivery goes through one :class:`SubscriberHub` per gateway: one NATS
subscription per envelope subject root, however many clients listen, fanned
out into each client's :class:`Subscriber` queue with a non-blocking put. A
client whose queue is full is dropped; nothing waits on it. With one NATS
subscription per client instead, 700 idle clients made the server send every
message 700 times to the gateway, whose connection then became a server-side
slow consumer and was cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.api import ConsumerConfig, DeliverPolicy
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from chorus_common.bus import EVENTS_STREAM, Bus
from chorus_common.errors import SubjectError
from chorus_common.http_protocols import text_frame, transport_extension
from chorus_common.subjects import STREAM_EVENTS_SUBJECTS, subject_matches, validate_filter
from chorus_gateway.metrics import GatewayMetrics

#: what HTTP clients may subscribe to: the subjects envelopes are routed to
ENVELOPE_SUBJECTS: tuple[str, ...] = STREAM_EVENTS_SUBJECTS
#: the hub's NATS subscriptions buffer this much in the client library before it drops (and
#: says so) rather than stop reading the socket, which would make the server cut us off
HUB_PENDING_MSGS = 1_000_000
HUB_PENDING_BYTES = 1024 * 1024 * 1024
#: how long a woken subscriber waits for more of a burst before writing (adds this to latency)
LINGER_SECONDS = 0.01
#: how long a dropped client has to take its close reason before its connection is aborted
DROP_GRACE_SECONDS = 2.0
#: bytes the kernel buffers for one subscriber's connection (it doubles the figure)
SUBSCRIBER_SEND_BUFFER = 64 * 1024
#: WebSocket close code for a client dropped for falling behind ("try again later")
WS_TRY_AGAIN_LATER = 1013


class SlowConsumer(Exception):
    """The client's queue overflowed; it is dropped."""


def filters_overlap(a: str, b: str) -> bool:
    """Whether some subject matches both NATS filters (``*`` one token, ``>`` the rest)."""
    a_tokens, b_tokens = a.split("."), b.split(".")
    for i in range(max(len(a_tokens), len(b_tokens))):
        x = a_tokens[i] if i < len(a_tokens) else None
        y = b_tokens[i] if i < len(b_tokens) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and "*" not in (x, y):
            return False
    return True


def envelope_filter(subject_filter: str) -> str:
    """A client's filter, checked to reach envelope subjects only, or a SubjectError (400)."""
    validate_filter(subject_filter)
    if subject_filter.split(".")[0] != "chorus" or not any(
        filters_overlap(subject_filter, root) for root in ENVELOPE_SUBJECTS
    ):
        raise SubjectError(
            f"subject filter {subject_filter!r} matches no envelope subject; subscribe to "
            f"chorus.> or a filter inside {', '.join(ENVELOPE_SUBJECTS)} (internal subjects "
            f"such as chorus.svc.>, chorus.dht.rpc.>, $JS.>, $KV.> and _INBOX.> are not served)",
            allowed=list(ENVELOPE_SUBJECTS),
        )
    return subject_filter


def in_events_stream(subject_filter: str) -> bool:
    """A replay needs a filter inside CHORUS_EVENTS (chorus.coord.>, chorus.hmmm.x.>, …)."""
    return any(
        subject_matches(stream_subject, subject_filter.replace("*", "x").replace(">", "x"))
        for stream_subject in STREAM_EVENTS_SUBJECTS
    )


@lru_cache(maxsize=8192)
def _matches(subject_filter: str, subject: str) -> bool:
    """Cached: a fan-out asks the same few (filter, subject) pairs for every message."""
    return subject_matches(subject_filter, subject)


class Delivered:
    """One message as clients get it, rendered once however many clients it goes to."""

    def __init__(self, subject: str, data: bytes, seq: int | None) -> None:
        self.subject = subject
        self.data = data
        self.seq = seq

    def document(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.data)
        except ValueError:
            body = self.data.decode(errors="replace")
        return {"subject": self.subject, "seq": self.seq, "envelope": body}

    @cached_property
    def text(self) -> str:
        """The WebSocket frame (and SSE data line): one JSON document, no newlines."""
        return json.dumps(self.document())

    @cached_property
    def frame(self) -> bytes:
        """The WebSocket frame carrying :attr:`text`."""
        return text_frame(self.text.encode())

    @cached_property
    def event(self) -> bytes:
        """The server-sent event."""
        ident = f"id: {self.seq}\n" if self.seq else ""
        return f"{ident}event: message\ndata: {self.text}\n\n".encode()


class Subscriber:
    """One HTTP client's bounded queue: the hub (or its replay) offers, the client's task takes.

    :meth:`offer` never blocks: when ``queue_size`` messages are already
    waiting the subscriber is dropped, its backlog discarded, and the client's
    task is woken to tell it why.
    """

    def __init__(self, subject_filter: str, queue_size: int, transport: str) -> None:
        self.filter = envelope_filter(subject_filter)
        self.queue_size = queue_size
        self.transport = transport
        self.dropped = asyncio.Event()
        self.reason: str | None = None
        self._items: deque[Delivered] = deque()
        self._ready = asyncio.Event()
        self._replay: Any = None
        #: the hub's hook to stop offering to this subscriber the moment it is dropped
        self.on_drop: Callable[[Subscriber], None] | None = None

    def offer(self, item: Delivered) -> None:
        if self.reason is not None:
            return
        if len(self._items) >= self.queue_size:
            self.drop(
                f"slow consumer: more than {self.queue_size} messages were waiting; "
                f"reconnect with from_seq to resume"
            )
            return
        self._items.append(item)
        self._ready.set()

    def drop(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._items.clear()
        self.dropped.set()
        self._ready.set()
        if self.on_drop is not None:
            self.on_drop(self)

    async def batches(self) -> AsyncIterator[list[Delivered]]:
        """Everything waiting, in order, in one list per write.

        After a wake-up the subscriber lingers a moment so that a burst (a
        published batch arrives as one) goes out in one write rather than one
        task switch and one send per message per client: with hundreds of
        clients that difference is most of a publish's latency.
        """
        while True:
            await self._ready.wait()
            if self.reason is None and len(self._items) < self.queue_size // 2:
                await asyncio.sleep(LINGER_SECONDS)
            if self.reason is not None:
                raise SlowConsumer(self.reason)
            items = list(self._items)
            self._items.clear()
            self._ready.clear()
            yield items

    async def start_replay(
        self, bus: Bus, from_seq: int | None = None, since: datetime | None = None
    ) -> None:
        """Deliver CHORUS_EVENTS from a sequence or time, then live, through an ordered consumer."""
        if not in_events_stream(self.filter):
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

        async def on_msg(msg: Msg) -> None:
            self.offer(Delivered(msg.subject, msg.data, msg.metadata.sequence.stream))

        self._replay = await bus.js.subscribe(
            self.filter,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=config,
            cb=on_msg,
            pending_msgs_limit=HUB_PENDING_MSGS,
            pending_bytes_limit=HUB_PENDING_BYTES,
        )

    async def close(self) -> None:
        if self._replay is not None:
            with contextlib.suppress(Exception):
                await self._replay.unsubscribe()
            self._replay = None


class SubscriberHub:
    """Every live subscriber of this gateway behind one NATS subscription per envelope root.

    A root (``chorus.coord.>``, …) is subscribed while some attached
    subscriber's filter overlaps it. Each message is matched against the
    distinct filters of the attached subscribers and put into each matching
    queue without waiting, so the NATS connection is read as fast as messages
    arrive whatever the clients do.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._by_filter: dict[str, set[Subscriber]] = {}
        self._roots: dict[str, NatsSubscription] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return sum(len(subs) for subs in self._by_filter.values())

    async def attach(self, sub: Subscriber) -> None:
        async with self._lock:
            self._by_filter.setdefault(sub.filter, set()).add(sub)
            sub.on_drop = self._forget
            for root in ENVELOPE_SUBJECTS:
                if root not in self._roots and filters_overlap(sub.filter, root):
                    self._roots[root] = await self.bus.nc.subscribe(
                        root,
                        cb=self._on_msg,
                        pending_msgs_limit=HUB_PENDING_MSGS,
                        pending_bytes_limit=HUB_PENDING_BYTES,
                    )

    def _forget(self, sub: Subscriber) -> None:
        subs = self._by_filter.get(sub.filter)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_filter[sub.filter]

    async def detach(self, sub: Subscriber) -> None:
        async with self._lock:
            self._forget(sub)
            for root in list(self._roots):
                if not any(filters_overlap(f, root) for f in self._by_filter):
                    with contextlib.suppress(Exception):
                        await self._roots.pop(root).unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        item = Delivered(msg.subject, msg.data, None)
        for subject_filter, subs in list(self._by_filter.items()):
            if _matches(subject_filter, msg.subject):
                for sub in list(subs):
                    sub.offer(item)

    async def close(self) -> None:
        async with self._lock:
            for root in list(self._roots):
                with contextlib.suppress(Exception):
                    await self._roots.pop(root).unsubscribe()
            self._by_filter.clear()


def _bound_send_buffer(scope: Scope) -> None:
    """Cap the kernel's send buffer of a subscriber's connection.

    Linux grows a loopback send buffer to 4 MiB: a client that never reads
    would take that much (thousands of envelopes, each written at a cost)
    before its queue even starts to fill and it can be told it is too slow.
    """
    sock = transport_extension(scope).get("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SUBSCRIBER_SEND_BUFFER)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first_of(*aws: Awaitable[Any]) -> list[bool]:
    """Run ``aws`` until one finishes, cancel and await the rest; which ones had finished."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [task in done for task in tasks]


async def _last_word(say: Awaitable[None], scope: Scope) -> None:
    """Tell a dropped client why, if it reads within the grace; otherwise abort its connection.

    A plain close would wait for the client to read what is already buffered,
    which a client that stopped reading never does: it would stay connected.
    """
    try:
        await asyncio.wait_for(say, DROP_GRACE_SECONDS)
        return
    except Exception:
        pass
    abort = transport_extension(scope).get("abort")
    if abort is not None:
        abort()
        await asyncio.sleep(0)  # let the server see the connection lost before we return


class SubscriberEvents(Response):
    """The server-sent events of one subscriber, written as they come, coalesced per wake-up.

    One ``message`` event per envelope; a client that falls behind gets
    ``event: error`` with the reason and the response ends (or, if it does not
    read even that, its connection is aborted).
    """

    media_type = "text/event-stream"

    def __init__(self, sub: Subscriber, hub: SubscriberHub, metrics: GatewayMetrics) -> None:
        super().__init__(
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type=self.media_type,
        )
        # a stream has no length: drop the content-length: 0 of the empty body
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.sub, self.hub, self.metrics = sub, hub, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub, m = self.sub, self.metrics
        _bound_send_buffer(scope)
        m.subscribers.labels("sse").inc()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

            async def pump() -> None:
                hello = f": subscribed to {sub.filter}\n\n".encode()
                await send({"type": "http.response.body", "body": hello, "more_body": True})
                async for batch in sub.batches():
                    body = b"".join(item.event for item in batch)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    m.delivered.labels("sse").inc(len(batch))

            _, left, _ = await _first_of(pump(), _until_disconnect(receive), sub.dropped.wait())
            if sub.reason is not None and not left:
                m.slow_consumers.labels("sse").inc()
                error = f"event: error\ndata: {json.dumps({'reason': sub.reason})}\n\n".encode()
                await _last_word(
                    send({"type": "http.response.body", "body": error, "more_body": False}), scope
                )
            else:
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            m.subscribers.labels("sse").dec()
            await self.hub.detach(sub)
            await sub.close()


async def serve_websocket(
    ws: WebSocket, sub: Subscriber, hub: SubscriberHub, metrics: GatewayMetrics
) -> None:
    """One JSON text frame per envelope; a client that falls behind is closed with 1013."""
    _bound_send_buffer(ws.scope)
    await ws.accept()
    metrics.subscribers.labels("ws").inc()
    try:
        send_frames = transport_extension(ws.scope).get("send_frames")

        async def pump() -> None:
            async for batch in sub.batches():
                if send_frames is not None:
                    await send_frames(b"".join(item.frame for item in batch))
                else:
                    for item in batch:
                        await ws.send_text(item.text)
                metrics.delivered.labels("ws").inc(len(batch))

        async def until_client_leaves() -> None:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass  # clients have nothing to say on this socket

        _, left, _ = await _first_of(pump(), until_client_leaves(), sub.dropped.wait())
        if sub.reason is not None and not left:
            metrics.slow_consumers.labels("ws").inc()
            await _last_word(ws.close(code=WS_TRY_AGAIN_LATER, reason=sub.reason[:123]), ws.scope)
    finally:
        metrics.subscribers.labels("ws").dec()
        await hub.detach(sub)
        await sub.close()
