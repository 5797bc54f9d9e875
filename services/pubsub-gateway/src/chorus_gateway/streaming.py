"""Subscriptions for HTTP clients: envelope subjects only, each client behind a bounded queue.

The bus carries more than envelopes — JetStream API calls and replies
(``$JS.>``, ``_INBOX.>``), KV writes of leases and the registry (``$KV.>``),
service requests (``chorus.svc.>``), DHT RPC, election heartbeats — so a
client's filter must overlap the envelope subjects (:data:`ENVELOPE_SUBJECTS`)
and only messages on those subjects ever reach it, whatever its filter.

Live delivery goes through one :class:`SubscriberHub` per gateway: one NATS
subscription per envelope subject root, however many clients listen, and one
:class:`FanoutLog` per subject filter that each message is appended to once;
every client's :class:`Subscriber` reads it at its own place. A client too far
behind is dropped; nothing waits on it. With one NATS
subscription per client instead, 700 idle clients made the server send every
message 700 times to the gateway, whose connection then became a server-side
slow consumer and was cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
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
#: at most this many subscriber tasks are woken (to write, or to hear they are dropped) per
#: turn of the event loop: hundreds woken at once made every await of a publish wait behind
#: all their writes
WAKE_PER_TURN = 32
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


class Staggered:
    """Callbacks run at most ``per_turn`` per turn of the event loop, in the order given.

    Whatever is woken through it takes turns with everything else the loop
    does, so waking many subscribers at once delays a publish by a few of
    their writes per await, not all of them.
    """

    def __init__(self, per_turn: int = WAKE_PER_TURN) -> None:
        self.per_turn = per_turn
        self._pending: deque[Callable[[], None]] = deque()
        self._scheduled = False

    def call(self, callback: Callable[[], None]) -> None:
        self._pending.append(callback)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        for _ in range(min(self.per_turn, len(self._pending))):
            self._pending.popleft()()
        if self._pending:
            asyncio.get_running_loop().call_soon(self._run)
        else:
            self._scheduled = False


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FanoutLog:
    """The messages for one subject filter, kept once and read by each subscriber at its own place.

    A message is appended once however many subscribers read it, and those
    waiting are woken together, once per burst: the cost of a message is
    independent of the number of subscribers, and a subscriber that has
    stopped reading (its task waits on its socket) costs nothing until it is
    dropped. The log keeps what its slowest live reader has not taken; a
    reader more than its ``queue_size`` behind is dropped, checked every
    ``queue_size // 8`` messages so a lagging reader is not re-examined on
    every append (it may fall up to that many further behind before it is).
    A replay is a log with one reader.
    """

    def __init__(self, queue_size: int, stagger: Staggered | None = None) -> None:
        self.queue_size = queue_size
        self.stagger = stagger or Staggered()
        self.slack = max(1, queue_size // 8)
        self.items: list[Delivered] = []
        self.base = 0  # the position of items[0]
        self.readers: set[Subscriber] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._waiting_since: int | None = None  # the head when the first waiter started
        self._wake: asyncio.Handle | None = None
        self._rendered: dict[tuple[int, int, str], bytes] = {}

    @property
    def head(self) -> int:
        return self.base + len(self.items)

    def join(self, sub: Subscriber) -> None:
        sub.position = self.head
        self.readers.add(sub)

    def leave(self, sub: Subscriber) -> None:
        self.readers.discard(sub)

    def append(self, item: Delivered) -> None:
        self.items.append(item)
        if len(self.items) > self.queue_size + self.slack:
            self._enforce()
        if self._waiting_since is not None and self._wake is None:
            loop = asyncio.get_running_loop()
            if self.head - self._waiting_since >= self.queue_size // 2:
                self._wake = loop.call_soon(self._wake_readers)  # no lingering with a backlog
            else:
                self._wake = loop.call_later(LINGER_SECONDS, self._wake_readers)

    def _enforce(self) -> None:
        """Drop the readers too far behind, then forget what every remaining reader has taken."""
        head = self.head
        for sub in list(self.readers):
            if head - sub.position > sub.queue_size:
                sub.drop(
                    f"slow consumer: more than {sub.queue_size} messages were waiting; "
                    f"reconnect with from_seq to resume"
                )
        oldest = min((sub.position for sub in self.readers), default=head)
        if oldest > self.base:
            del self.items[: oldest - self.base]
            self.base = oldest
            self._rendered.clear()

    def _wake_readers(self) -> None:
        self._wake, self._waiting_since = None, None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self.stagger.call(functools.partial(_resolve, waiter))

    async def wait(self, sub: Subscriber) -> None:
        """Until something past ``sub``'s position arrives (and a burst's linger is over)."""
        while sub.position >= self.head:
            if self._waiting_since is None:
                self._waiting_since = self.head
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def take(self, sub: Subscriber) -> Batch:
        """What ``sub`` has not taken yet; it has taken it now."""
        start, end = max(sub.position, self.base), self.head
        sub.position = end
        return Batch(self, start, end, self.items[start - self.base : end - self.base])

    def render(self, batch: Batch, kind: str) -> bytes:
        """``batch``'s items as one write (each one's ``frame`` or ``event``).

        Readers woken together take the same range: it is joined once, not once each.
        """
        key = (batch.start, batch.end, kind)
        body = self._rendered.get(key)
        if body is None:
            if len(self._rendered) >= 8:
                self._rendered.clear()
            body = self._rendered[key] = b"".join(getattr(item, kind) for item in batch.items)
        return body


class Batch:
    """What one subscriber takes in one write: a range of its log."""

    def __init__(self, log: FanoutLog, start: int, end: int, items: list[Delivered]) -> None:
        self.log, self.start, self.end, self.items = log, start, end, items

    def __len__(self) -> int:
        return len(self.items)

    def body(self, kind: str) -> bytes:
        """``kind`` is ``event`` (SSE) or ``frame`` (WebSocket)."""
        return self.log.render(self, kind)


class Subscriber:
    """One HTTP client's place in a :class:`FanoutLog`: the hub's shared one, or a replay's own.

    Nothing it does blocks the hub: when it falls more than ``queue_size``
    messages behind it is dropped, its place given up, and its ``dropped``
    event tells the client's task why.
    """

    def __init__(self, subject_filter: str, queue_size: int, transport: str) -> None:
        self.filter = envelope_filter(subject_filter)
        self.queue_size = queue_size
        self.transport = transport
        self.dropped = asyncio.Event()
        self.reason: str | None = None
        self.position = 0
        self.log = FanoutLog(queue_size)  # its own until the hub attaches it to a shared one
        self.log.join(self)
        self._replay: Any = None
        #: the hub's hook to stop offering to this subscriber the moment it is dropped
        self.on_drop: Callable[[Subscriber], None] | None = None

    def offer(self, item: Delivered) -> None:
        """A message for this subscriber alone (a replay's)."""
        if self.reason is None:
            self.log.append(item)

    def drop(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self.log.leave(self)
        self.log.stagger.call(self.dropped.set)  # hundreds may be dropped by one message
        if self.on_drop is not None:
            self.on_drop(self)

    async def batches(self) -> AsyncIterator[Batch]:
        """Everything waiting, in order, one batch per write.

        Waiting readers are woken a moment after a burst starts, so a burst (a
        published batch arrives as one) goes out in one write rather than one
        task switch and one send per message per client. The client's task
        learns of a drop from :attr:`dropped`.
        """
        while True:
            await self.log.wait(self)
            if self.reason is not None:
                raise SlowConsumer(self.reason)
            yield self.log.take(self)

    async def start_replay(
        self, bus: Bus, from_seq: int | None = None, since: datetime | None = None
    ) -> None:
        """Deliver CHORUS_EVENTS from a sequence or time, then live, through an ordered consumer."""
        if not in_events_stream(self.filter):
            raise SubjectError(
                f"replay (from_seq/since) needs a subject filter inside the CHORUS_EVENTS stream "
                f"({', '.join(STREAM_EVENTS_SUBJECTS)}); {self.filter!r} is not"
            )
        assert from_seq is not None or since is not None

        async def on_msg(msg: Msg) -> None:
            self.offer(Delivered(msg.subject, msg.data, msg.metadata.sequence.stream))

        self._replay = await bus.replay(
            self.filter,
            on_msg,
            stream=EVENTS_STREAM,
            start_seq=from_seq,
            start_time=since if from_seq is None else None,
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
    distinct filters of the attached subscribers and appended once to each
    matching filter's :class:`FanoutLog`, without waiting, so the NATS
    connection is read as fast as messages arrive whatever the clients do.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._logs: dict[tuple[str, int], FanoutLog] = {}
        self.stagger = Staggered()
        self._roots: dict[str, NatsSubscription] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return sum(len(log.readers) for log in self._logs.values())

    async def attach(self, sub: Subscriber) -> None:
        async with self._lock:
            log = self._logs.get((sub.filter, sub.queue_size))
            if log is None:
                log = FanoutLog(sub.queue_size, self.stagger)
                self._logs[(sub.filter, sub.queue_size)] = log
            sub.log.leave(sub)
            sub.log = log
            log.join(sub)
            sub.on_drop = self._forget
            for root in ENVELOPE_SUBJECTS:
                if root not in self._roots and filters_overlap(sub.filter, root):
                    self._roots[root] = await self.bus.tap(
                        root,
                        self._on_msg,
                        pending_msgs_limit=HUB_PENDING_MSGS,
                        pending_bytes_limit=HUB_PENDING_BYTES,
                    )

    def _forget(self, sub: Subscriber) -> None:
        sub.log.leave(sub)
        key = (sub.filter, sub.queue_size)
        if self._logs.get(key) is sub.log and not sub.log.readers:
            del self._logs[key]

    async def detach(self, sub: Subscriber) -> None:
        self._forget(sub)
        if all(any(filters_overlap(f, root) for (f, _) in self._logs) for root in self._roots):
            return  # every root still has a reader: nothing to unsubscribe, no lock to take
        async with self._lock:
            for root in list(self._roots):
                if not any(filters_overlap(f, root) for (f, _) in self._logs):
                    with contextlib.suppress(Exception):
                        await self._roots.pop(root).unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        item = Delivered(msg.subject, msg.data, None)
        for (subject_filter, _), log in list(self._logs.items()):
            if _matches(subject_filter, msg.subject):
                log.append(item)

    async def close(self) -> None:
        async with self._lock:
            for root in list(self._roots):
                with contextlib.suppress(Exception):
                    await self._roots.pop(root).unsubscribe()
            self._logs.clear()


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
        # spread over half the grace again: clients dropped together are not aborted together
        await asyncio.wait_for(say, DROP_GRACE_SECONDS * (1 + random.random() / 2))
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
                    body = batch.body("event")
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
                    await send_frames(batch.body("frame"))
                else:
                    for item in batch.items:
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
