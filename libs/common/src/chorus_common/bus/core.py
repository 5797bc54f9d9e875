"""The connection to NATS: typed publish, durable typed consume, topology, trace headers.

Every service and the agent SDK reach the bus through :class:`Bus`, so that
routing (subjects), de-duplication (``Nats-Msg-Id``), tracing (``traceparent``)
and poison handling behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from chorus_common import tracing
from chorus_common.aio import cancel_and_wait
from chorus_common.bus.buckets import Bucket
from chorus_common.bus.consumer import EVENTS_STREAM, Consumer, Delivery, Handler
from chorus_common.bus.errors import bus_errors
from chorus_common.bus.retry import retry_until
from chorus_common.bus.topics import Topic, TopicSpec
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope
from chorus_common.errors import NotFoundError as ChorusNotFound
from chorus_common.errors import UnavailableError
from chorus_common.metrics import BusMetrics
from chorus_common.subjects import msg_id, routes
from chorus_common.topology import declare_topology

__all__ = [
    "ATOMIC_BATCH_MAX",
    "EVENTS_STREAM",
    "Bus",
    "Consumer",
    "Delivery",
    "Handler",
    "StoredMessage",
    "SubscriptionInfo",
]

log = logging.getLogger("chorus.bus")

M = TypeVar("M", bound=BaseModel)
#: messages per atomic batch of publish_many (nats-server refuses more than 1000 by default)
ATOMIC_BATCH_MAX = 1000
#: atomic batches awaiting their commit at once (the server allows 50 per stream in all)
ATOMIC_IN_FLIGHT = 4
#: JetStream error codes of a refused atomic batch
ATOMIC_DISABLED, ATOMIC_DUPLICATE = 10174, 10201
#: how long a bus probe's PING may wait for its PONG (see Bus.rtt)
PING_DEADLINE = 60


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a background probe's failure as seen (nobody may be waiting for it any more)."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True)
class _Outgoing:
    """One route of an encoded envelope, ready for the wire."""

    subject: str
    data: bytes
    headers: dict[str, str]


def _chunks(messages: dict[int, list[_Outgoing]], limit: int) -> list[list[int]]:
    """Envelope indices in order, grouped so no group carries more than ``limit`` messages."""
    chunks: list[list[int]] = [[]]
    size = 0
    for i, routed in messages.items():
        if chunks[-1] and size + len(routed) > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += len(routed)
    return [c for c in chunks if c]


@dataclass(frozen=True)
class StoredMessage:
    """One message read back from a stream."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    time: Any = None


@dataclass(frozen=True)
class SubscriptionInfo:
    """One subject a connection listens on (see :attr:`Bus.subscriptions`).

    ``kind`` is ``jetstream`` for the durable pull consumers of :meth:`Bus.subscribe`
    (acked, poison terminated and counted), ``jetstream-push`` for push consumers made
    directly on ``bus.jetstream`` (e.g. ordered replays), and ``core`` for plain NATS
    subscriptions: fan-out subjects and request/reply endpoints (NATS micro, DHT RPC).
    ``delivered`` and ``pending`` count the messages the client library handed to (or
    still holds for) the callback of a core or push subscription.
    """

    subject: str
    kind: Literal["jetstream", "jetstream-push", "core"]
    durable: str | None = None
    stream: str | None = None
    queue: str | None = None
    delivered: int | None = None
    pending: int | None = None


class Bus:
    """One NATS connection with JetStream, shared by everything in a process."""

    def __init__(
        self,
        settings: ChorusSettings,
        name: str,
        metrics: BusMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.metrics = metrics
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._consumers: list[Consumer] = []
        self._probe: asyncio.Future[float] | None = None
        self._closing = False
        self._atomic = True  # until a stream says it takes no atomic batches
        self.connected = asyncio.Event()
        #: whether consumers may take messages now; the service sets it to its license
        #: gate, so an unlicensed replica leaves the stream's messages for a licensed one
        self.admit: Callable[[], bool] = lambda: True

    @property
    def client(self) -> Client:
        """The NATS connection, for chorus_common's own modules (topics, buckets, the
        consumer, kvscan, the registry). Services use the typed API: :meth:`topic`,
        :meth:`bucket`, :meth:`publish`, :meth:`subscribe`."""
        if self._nc is None:
            raise UnavailableError("the bus is not connected yet")
        return self._nc

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context, for chorus_common's own modules (see :attr:`client`)."""
        if self._js is None:
            raise UnavailableError("the bus is not connected yet")
        return self._js

    def topic(self, spec: TopicSpec[M]) -> Topic[M]:
        """The declared topic ``spec`` on this connection."""
        return Topic(self, spec)

    def bucket(self, name: str, model: type[M], prefix: str = "") -> Bucket[M]:
        """KV bucket ``name`` holding ``model`` documents (under ``prefix``)."""
        return Bucket(self, name, model, prefix)

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every subject this connection consumes: its JetStream consumers and core subscriptions.

        Reply inboxes (``_INBOX.…``, including the delivery inboxes of pull consumers)
        are left out: nobody publishes to them but the server.
        """
        out = [
            SubscriptionInfo(c.subject_filter, "jetstream", c.durable, c.stream)
            for c in self._consumers
        ]
        subs = getattr(self._nc, "_subs", None) or {}
        for sub in list(subs.values()):
            jsi = getattr(sub, "_jsi", None)
            if jsi is not None:
                config = getattr(jsi, "_ccreq", None)
                out.append(
                    SubscriptionInfo(
                        getattr(config, "filter_subject", None) or sub.subject,
                        "jetstream-push",
                        getattr(config, "durable_name", None),
                        getattr(jsi, "_stream", None),
                        delivered=sub.delivered,
                        pending=sub.pending_msgs,
                    )
                )
            elif not sub.subject.startswith("_INBOX."):
                out.append(
                    SubscriptionInfo(
                        sub.subject,
                        "core",
                        queue=sub.queue or None,
                        delivered=sub.delivered,
                        pending=sub.pending_msgs,
                    )
                )
        return out

    async def connect(self, *, declare: bool = True, timeout: float | None = None) -> None:
        """Connect (retrying until ``timeout``), then declare streams and buckets."""
        tracing.configure_tracing(self.name, self.settings.otel_exporter)
        options = self._connect_options()
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)

        async def attempt() -> Client:
            # nats-py retries an unreachable first server forever when reconnects are
            # unlimited, so each attempt gets its own bound
            bound = max(0.1, min(deadline - time.monotonic(), 5.0))
            return await asyncio.wait_for(nats.connect(**options), timeout=bound)

        url = self.settings.nats_url
        self._nc = await retry_until(
            deadline,
            attempt,
            what=f"NATS at {url}",
            give_up=lambda exc: (
                f"cannot reach NATS at {url}: {exc!s} (set CHORUS_NATS_URL, or start a server)"
            ),
        )
        self._js = self._nc.jetstream()
        self.connected.set()
        if self.metrics:
            self.metrics.connected.set(1)
        if declare:
            await self._declare(deadline)

    async def _declare(self, deadline: float) -> None:
        """Declare streams and buckets, waiting out a JetStream that is still electing."""
        js = self.jetstream
        url = self.settings.nats_url
        await retry_until(
            deadline,
            lambda: declare_topology(js, self.settings.js_replicas),
            what="JetStream streams and buckets",
            give_up=lambda exc: (
                f"JetStream at {url} did not accept the CHORUS streams and buckets: {exc!s}"
            ),
        )

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "servers": [u.strip() for u in s.nats_url.split(",")],
            "name": self.name,
            "connect_timeout": s.nats_connect_timeout_seconds,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.25,
            "allow_reconnect": True,
            "disconnected_cb": self._on_disconnect,
            "reconnected_cb": self._on_reconnect,
            "error_cb": self._on_error,
            "closed_cb": self._on_closed,
        }
        if s.nats_user:
            options["user"] = s.nats_user
        if s.nats_password:
            options["password"] = s.nats_password.get_secret_value()
        if s.nats_token:
            options["token"] = s.nats_token.get_secret_value()
        if s.nats_creds:
            options["user_credentials"] = str(s.nats_creds)
        if s.nats_tls_ca or s.nats_tls_cert:
            context = ssl.create_default_context(
                cafile=str(s.nats_tls_ca) if s.nats_tls_ca else None
            )
            if s.nats_tls_cert and s.nats_tls_key:
                context.load_cert_chain(str(s.nats_tls_cert), str(s.nats_tls_key))
            options["tls"] = context
        return options

    async def _on_disconnect(self) -> None:
        self.connected.clear()
        if self.metrics:
            self.metrics.connected.set(0)
            self.metrics.disconnects.inc()
        if not self._closing:
            log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnect(self) -> None:
        self.connected.set()
        if self.metrics:
            self.metrics.connected.set(1)
            self.metrics.reconnects.inc()
        log.info("reconnected to NATS at %s", self._nc.connected_url if self._nc else "?")
        for consumer in self._consumers:
            consumer.kick()

    async def _on_error(self, exc: Exception) -> None:
        if self.metrics:
            self.metrics.errors.inc()
        log.debug("NATS client error: %s", exc)

    async def _on_closed(self) -> None:
        self.connected.clear()
        if self.metrics:
            self.metrics.connected.set(0)

    async def rtt(self, timeout: float = 2.0) -> float:
        """Measured round trip to the server (the active bus probe).

        The PING itself is never abandoned: nats-py's read loop stops for good when
        the PONG of a flush that timed out (or was cancelled) arrives later, which
        would leave the process deaf to NATS. So one probe at a time runs shielded,
        with a deadline far beyond ``timeout``, and only the wait for it is bounded.
        """
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._ping(self.client))
            self._probe.add_done_callback(_retrieve)
        elapsed = await asyncio.wait_for(asyncio.shield(self._probe), timeout)
        if self.metrics:
            self.metrics.rtt.set(elapsed)
        return elapsed

    @staticmethod
    async def _ping(nc: Client) -> float:
        started = time.perf_counter()
        await nc.flush(timeout=PING_DEADLINE)
        return time.perf_counter() - started

    def _headers(
        self, env: Envelope, index: int, trace: dict[str, str] | None = None
    ) -> dict[str, str]:
        """``trace``: the current trace headers, when the caller has them already."""
        headers = {"Nats-Msg-Id": msg_id(env, index), "Chorus-Type": env.type.value}
        if trace is None:
            tracing.inject(headers)
        else:
            headers.update(trace)
        return headers

    async def publish(self, env: Envelope, *, timeout: float = 5.0) -> list[PubAck]:
        """Publish to every route of the envelope with JetStream acknowledgement.

        Returns one ack per route, primary subject first.  Raises
        :class:`UnavailableError` if the bus does not acknowledge in time.
        """
        data = env.encode(self.settings.max_message_bytes)
        subjects = routes(env)
        started = time.perf_counter()
        with tracing.tracer().start_as_current_span(f"publish {subjects[0]}"):
            try:
                acks = [
                    await self.jetstream.publish(
                        subject, data, timeout=timeout, headers=self._headers(env, i)
                    )
                    for i, subject in enumerate(subjects)
                ]
            except Exception as exc:
                if self.metrics:
                    self.metrics.publish_failures.labels(env.type.value).inc()
                raise UnavailableError(
                    f"JetStream did not acknowledge {env.type.value} {env.id}: {exc!s}"
                ) from None
        if self.metrics:
            self.metrics.published.labels(env.type.value).inc()
            self.metrics.publish_latency.observe(time.perf_counter() - started)
            self.metrics.message_size.observe(len(data))
        return acks

    async def publish_many(
        self, envelopes: list[Envelope], *, timeout: float = 10.0
    ) -> list[list[PubAck] | Exception]:
        """Many envelopes, acknowledged per envelope; one failure never hides the others' acks.

        The envelopes travel in JetStream atomic batches (ADR-50): the server stores a
        batch with one fsync and answers it with one ack, several times faster than an
        ack per message and just as durable. A batch refused as a whole -- it holds an id
        already stored (a retry), the stream does not take batches, or the commit was not
        acknowledged in time -- is published again message by message, where
        de-duplication answers a retry with the original sequence.
        """
        results: list[list[PubAck] | Exception | None] = [None] * len(envelopes)
        messages: dict[int, list[_Outgoing]] = {}
        with tracing.tracer().start_as_current_span("publish batch"):
            trace: dict[str, str] = {}
            tracing.inject(trace)  # one trace context for the whole batch
            for i, env in enumerate(envelopes):
                try:
                    data = env.encode(self.settings.max_message_bytes)
                except Exception as exc:
                    results[i] = exc
                    continue
                messages[i] = [
                    _Outgoing(subject, data, self._headers(env, r, trace))
                    for r, subject in enumerate(routes(env))
                ]
            resend: list[int] = []
            in_flight: list[tuple[list[int], asyncio.Task[list[PubAck] | None]]] = []
            try:
                for chunk in _chunks(messages, ATOMIC_BATCH_MAX):
                    if not self._atomic or sum(len(messages[i]) for i in chunk) < 2:
                        resend.extend(chunk)
                        continue
                    if len(in_flight) >= ATOMIC_IN_FLIGHT:
                        oldest, commit = in_flight.pop(0)
                        self._settle(oldest, await commit, messages, results, resend)
                    try:
                        in_flight.append((chunk, await self._send_batch(chunk, messages, timeout)))
                    except Exception:  # the connection went while staging: each gets its answer
                        resend.extend(chunk)
                while in_flight:
                    chunk, commit = in_flight.pop(0)
                    self._settle(chunk, await commit, messages, results, resend)
            finally:
                await cancel_and_wait([commit for _, commit in in_flight])  # only if cancelled
            await self._publish_each(sorted(resend), envelopes, messages, results, timeout)
        for i, env in enumerate(envelopes):
            outcome = results[i]
            if self.metrics and not isinstance(outcome, Exception):
                self.metrics.published.labels(env.type.value).inc()
            elif self.metrics and i in messages:
                self.metrics.publish_failures.labels(env.type.value).inc()
        return [r if r is not None else UnavailableError("not published") for r in results]

    async def _send_batch(
        self, chunk: list[int], messages: dict[int, list[_Outgoing]], timeout: float
    ) -> asyncio.Task[list[PubAck] | None]:
        """Stage a chunk's messages and send the commit; the task answers with their acks."""
        batch_id = uuid.uuid4().hex
        flat = [m for i in chunk for m in messages[i]]
        for n, m in enumerate(flat[:-1], start=1):
            headers = {**m.headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n)}
            await self.client.publish(m.subject, m.data, headers=headers)
        last = flat[-1]
        headers = {
            **last.headers,
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(len(flat)),
            "Nats-Batch-Commit": "1",
        }
        return asyncio.create_task(self._commit(last, headers, len(flat), timeout))

    async def _commit(
        self, last: _Outgoing, headers: dict[str, str], count: int, timeout: float
    ) -> list[PubAck] | None:
        """The commit's ack as one ack per message, or None when the batch must be resent."""
        try:
            reply = await self.client.request(
                last.subject, last.data, headers=headers, timeout=timeout
            )
            answer = json.loads(reply.data)
        except Exception as exc:
            log.warning("atomic batch of %d not acknowledged (%s); resending each", count, exc)
            return None
        error = answer.get("error")
        if error is not None:
            if error.get("err_code") == ATOMIC_DISABLED:
                self._atomic = False  # an older stream: publish message by message from now on
            elif error.get("err_code") != ATOMIC_DUPLICATE:
                log.warning("atomic batch of %d refused: %s", count, error.get("description"))
            return None
        if "count" not in answer:
            # a server before 2.12 stored the batch as plain messages: resend them (each
            # de-duplicates to its stored copy) and stop batching on this connection
            self._atomic = False
            return None
        if answer["count"] != count or not isinstance(answer.get("seq"), int):
            return None
        first = answer["seq"] - count + 1
        return [PubAck(stream=answer["stream"], seq=first + n) for n in range(count)]

    def _settle(
        self,
        chunk: list[int],
        acks: list[PubAck] | None,
        messages: dict[int, list[_Outgoing]],
        results: list[list[PubAck] | Exception | None],
        resend: list[int],
    ) -> None:
        """Hand a committed chunk's acks to its envelopes, or queue the chunk for resending."""
        if self.metrics:
            self.metrics.batches.labels("committed" if acks else "resent").inc()
        if acks is None:
            resend.extend(chunk)
            return
        n = 0
        for i in chunk:
            results[i] = acks[n : n + len(messages[i])]
            n += len(messages[i])

    async def _publish_each(
        self,
        indices: list[int],
        envelopes: list[Envelope],
        messages: dict[int, list[_Outgoing]],
        results: list[list[PubAck] | Exception | None],
        timeout: float,
    ) -> None:
        """Pipelined publish with one ack per message (what retries and old streams get)."""
        futures: dict[int, list[asyncio.Future[PubAck]] | Exception] = {}
        for i in indices:
            try:
                futures[i] = [
                    await self.jetstream.publish_async(m.subject, m.data, headers=m.headers)
                    for m in messages[i]
                ]
            except Exception as exc:
                futures[i] = exc
        waiting = [f for item in futures.values() if not isinstance(item, Exception) for f in item]
        if waiting:  # one deadline for all: a dead bus costs ``timeout``, not one per envelope
            await asyncio.wait(waiting, timeout=timeout)
        for i, item in futures.items():
            if isinstance(item, Exception):
                results[i] = UnavailableError(f"JetStream did not take {envelopes[i].id}: {item!s}")
                continue
            if all(f.done() and not f.cancelled() and f.exception() is None for f in item):
                results[i] = [f.result() for f in item]
                continue
            problem = "no acknowledgement in time"
            for f in item:
                if f.done() and not f.cancelled() and f.exception() is not None:
                    problem = str(f.exception())
            for f in item:
                f.cancel()
            results[i] = UnavailableError(
                f"JetStream did not acknowledge {envelopes[i].id}: {problem}"
            )

    async def record(
        self,
        subject: str,
        document: BaseModel | bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> PubAck:
        """Store a document that is not an envelope (an audit event, a signed beat frame)
        in the stream its subject belongs to, with ``headers`` (a detached signature, a
        ``Nats-Msg-Id`` the stream de-duplicates on); 503 when JetStream does not
        acknowledge it."""
        data = document if isinstance(document, bytes) else document.model_dump_json().encode()
        headers = dict(headers or {})
        tracing.inject(headers)
        with bus_errors(f"store on {subject}"):
            return await self.jetstream.publish(
                subject, data, timeout=timeout, headers=headers or None
            )

    async def stream_message(
        self, stream: str, seq: int, subject: str | None = None, *, next: bool = True
    ) -> StoredMessage | None:
        """The message at ``seq`` (with ``next``: the first at or after it, on ``subject``
        when given) in ``stream``, or None when there is none."""
        try:
            with bus_errors(f"read {stream} at {seq}"):
                msg = await self.jetstream.get_msg(stream, seq=seq, subject=subject, next=next)
        except ChorusNotFound:
            return None
        assert msg.seq is not None
        return StoredMessage(
            seq=msg.seq,
            subject=msg.subject or "",
            data=msg.data or b"",
            headers=dict(msg.headers or {}),
            time=msg.time,
        )

    async def stream_message_since(
        self, stream: str, subject: str, since: datetime
    ) -> StoredMessage | None:
        """The first message on ``subject`` stored at or after ``since``, or None."""
        request = {"start_time": since.isoformat(), "next_by_subj": subject}
        with bus_errors(f"search {stream} for {subject}"):
            reply = await self.client.request(
                f"{DEFAULT_PREFIX}.STREAM.MSG.GET.{stream}", json.dumps(request).encode(), timeout=5
            )
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is not None:
            if error.get("code") == 404:
                return None
            raise UnavailableError(f"cannot search {stream}: {error.get('description')}")
        return await self.stream_message(stream, int(answer["message"]["seq"]), next=False)

    async def stream_last_seq(self, stream: str) -> int:
        """The sequence of the last message ``stream`` holds (0 when empty)."""
        with bus_errors(f"read the state of {stream}"):
            return int((await self.jetstream.stream_info(stream)).state.last_seq)

    async def replay(
        self,
        subject_filter: str,
        cb: Callable[[Msg], Awaitable[None]] | None = None,
        *,
        stream: str = EVENTS_STREAM,
        start_seq: int | None = None,
        start_time: Any = None,
        pending_msgs_limit: int | None = None,
        pending_bytes_limit: int | None = None,
    ) -> Subscription:
        """Deliver ``stream``'s messages on ``subject_filter`` in order to ``cb`` — all of
        them, from ``start_seq`` or from ``start_time`` — then live ones, through an
        ordered consumer the server forgets when the subscription ends. Without ``cb``
        the caller takes them one by one with ``next_msg``."""
        if start_seq is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
            )
        elif start_time is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        options: dict[str, Any] = {}
        if cb is not None:
            options["cb"] = cb
        if pending_msgs_limit is not None:
            options["pending_msgs_limit"] = pending_msgs_limit
        if pending_bytes_limit is not None:
            options["pending_bytes_limit"] = pending_bytes_limit
        with bus_errors(f"replay {subject_filter} from {stream}"):
            return await self.jetstream.subscribe(
                subject_filter,
                stream=stream,
                ordered_consumer=True,
                config=config,
                **options,
            )

    async def tap(
        self,
        subject_filter: str,
        cb: Callable[[Msg], Awaitable[None]],
        *,
        pending_msgs_limit: int | None = None,
        pending_bytes_limit: int | None = None,
    ) -> Subscription:
        """Envelope traffic as it passes, undecoded (fan-out to HTTP clients, live views):
        a core subscription on ``subject_filter``, which must lie under ``chorus.``."""
        if not subject_filter.startswith("chorus."):
            raise ValueError(f"a tap listens to envelope subjects only, not {subject_filter!r}")
        options: dict[str, Any] = {"cb": cb}
        if pending_msgs_limit is not None:
            options["pending_msgs_limit"] = pending_msgs_limit
        if pending_bytes_limit is not None:
            options["pending_bytes_limit"] = pending_bytes_limit
        with bus_errors(f"subscribe to {subject_filter}"):
            return await self.client.subscribe(subject_filter, **options)

    async def publish_core(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Fire-and-forget core NATS publish (heartbeats, beat frames' live copy).

        ``headers``: e.g. a service's detached signature (chorus_common.service_signing).
        """
        headers = dict(headers or {})
        tracing.inject(headers)
        await self.client.publish(subject, data, headers=headers or None)

    async def subscribe(
        self,
        subject_filter: str,
        durable: str | None,
        handler: Handler,
        *,
        stream: str = EVENTS_STREAM,
        deliver_new_only: bool = False,
        start_seq: int | None = None,
        batch: int = 64,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
    ) -> Consumer:
        """Start a durable pull consumer that acks after ``handler`` succeeds."""
        if start_seq is not None:
            policy = DeliverPolicy.BY_START_SEQUENCE
        elif deliver_new_only:
            policy = DeliverPolicy.NEW
        else:
            policy = DeliverPolicy.ALL
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=policy,
            opt_start_seq=start_seq,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            filter_subject=subject_filter,
        )
        name = await self._create_consumer(durable, stream, config)
        consumer = Consumer(
            self,
            name,
            handler,
            durable or subject_filter,
            batch,
            subject_filter=subject_filter,
            durable=durable,
            stream=stream,
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def _create_consumer(
        self, durable: str | None, stream: str, config: ConsumerConfig
    ) -> str:
        """The consumer's name, creating it unless a durable of that name exists (a
        restart keeps its position), waiting out a cluster still electing its leaders."""

        async def attempt() -> str:
            if durable:
                with contextlib.suppress(NotFoundError):
                    await self.jetstream.consumer_info(stream, durable)
                    return durable
            name = config.name = durable or uuid.uuid4().hex
            await self.jetstream.add_consumer(stream, config=config)
            return name

        what = durable or config.filter_subject
        return await retry_until(
            time.monotonic() + 30.0,
            attempt,
            what=f"consumer {what}",
            retry_on=(nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError),
            give_up=lambda exc: f"JetStream could not create consumer {what}: {exc}",
            first_delay=0.2,
        )

    async def close(self) -> None:
        """Stop consumers, then drain so in-flight messages and acks are flushed."""
        self._closing = True
        for consumer in self._consumers:
            await consumer.stop()
        self._consumers.clear()
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.drain(), timeout=5)
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self._probe is not None:
            self._probe.cancel()  # a probe of a connection that is gone
        self.connected.clear()
