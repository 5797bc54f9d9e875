"""The publish pipeline: validate → hop limit → verify signature and feed → reserve → redact →
JetStream → record the ack.

Each item of a batch gets its own result; one bad item never drops the good
ones. A feed stays single-writer across any number of gateway replicas because
each entry is *reserved* before it is published: a create-only key per agent and
``feed_seq`` in ``chorus-feeds`` (:class:`~chorus_common.registry.FeedIndex`),
which the server grants to one writer only. The loser learns which entry holds
the seq: the same one (a re-send, answered with the original ack, never stored
again, however late) or another (``feed_fork``). A reservation whose gateway died
before recording the ack is completed by the next re-send of the same envelope:
the stream is searched for the copy, and only if there is none is it published.
The per-sender lock only keeps one process from racing itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.api import PubAck

from chorus_common.backbeat import Operation, Phase, Tracker
from chorus_common.bus import EVENTS_STREAM, Bus
from chorus_common.envelopes import Envelope, MessageGroup, MetaDiscussion
from chorus_common.errors import (
    ChorusError,
    ClockSkewError,
    FeedForkError,
    FeedGapError,
    FeedReplayError,
    HopLimitError,
    RateLimitedError,
    UnavailableError,
)
from chorus_common.feeds import FeedState, FeedVerifier, signature_valid
from chorus_common.registry import AgentDirectory, FeedEntry, FeedHead, FeedIndex
from chorus_common.shhh import Finding, Redactor
from chorus_common.subjects import routes
from chorus_gateway.metrics import GatewayMetrics
from chorus_gateway.ratelimit import RateLimiter
from chorus_gateway.settings import GatewaySettings

log = logging.getLogger("chorus.gateway")


#: below this many envelopes a batch is verified on the event loop: a thread hand-off
#: costs about as much as a few Ed25519 verifications
THREADED_VERIFY_MIN = 16


async def signed_digests(envs: list[Envelope], public_key: str) -> list[str | None]:
    """Each envelope's digest if its signature verifies with ``public_key``, else None.

    Ed25519 verification is most of a batch's CPU (about 0.2 ms each on a 2.5 GHz
    Xeon) and releases the GIL, so a large batch is verified in one chunk per core
    on worker threads: the event loop stays free for other requests meanwhile, and
    two cores verify a batch about 1.6 times as fast as one.
    """

    def verify(chunk: list[Envelope]) -> list[str | None]:
        out: list[str | None] = []
        for env in chunk:
            digest = env.digest()
            out.append(digest if signature_valid(env, public_key, digest) else None)
        return out

    if len(envs) < THREADED_VERIFY_MIN:
        return verify(envs)
    size = -(-len(envs) // max(1, os.cpu_count() or 1))
    chunks = [envs[i : i + size] for i in range(0, len(envs), size)]
    parts = await asyncio.gather(*(asyncio.to_thread(verify, chunk) for chunk in chunks))
    return [digest for part in parts for digest in part]


@dataclass
class ItemResult:
    index: int
    ok: bool
    id: str | None = None
    type: str | None = None
    subjects: list[str] = field(default_factory=list)
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    redacted: dict[str, int] | None = None
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"index": self.index, "ok": self.ok}
        if self.ok:
            doc.update(
                id=self.id,
                type=self.type,
                subjects=self.subjects,
                stream=self.stream,
                seq=self.seq,
                duplicate=self.duplicate,
                redacted=self.redacted,
            )
        else:
            doc["error"] = self.error
        return doc


def check_hops(env: Envelope, limit: int) -> None:
    """Meta-discussion is hop-limited (SPEC.md §1): the envelope's and the payload's count."""
    if env.type.group is not MessageGroup.HMMM:
        return
    max_hops = limit
    hops = env.hop
    if isinstance(env.payload, MetaDiscussion):
        max_hops = min(limit, env.payload.max_hops)
        hops = max(hops, env.payload.hop_count)
    if hops > max_hops:
        raise HopLimitError(
            f"{env.type.value} {env.id} has travelled {hops} hops; the limit is {max_hops}",
            hops=hops,
            limit=max_hops,
        )


def check_clock(env: Envelope, now: datetime, max_skew: float) -> None:
    """``created_at`` must lie within ``max_skew`` seconds of ``now``, either way.

    Checked only for an entry about to be stored: an exact re-send of a stored entry
    is answered with its original ack however old it has become.
    """
    created = env.created_at if env.created_at.tzinfo else env.created_at.replace(tzinfo=UTC)
    skew = (created - now).total_seconds()
    if abs(skew) > max_skew:
        when = "ahead of" if skew > 0 else "behind"
        raise ClockSkewError(
            f"created_at {created.isoformat()} of {env.id} is {abs(skew):.0f} s {when} the "
            f"gateway's clock; the allowed skew is ±{max_skew:g} s "
            f"(CHORUS_GATEWAY_MAX_CLOCK_SKEW_SECONDS): check the sender's clock",
            created_at=created.isoformat(),
            skew_seconds=round(skew, 3),
            max_skew_seconds=max_skew,
        )


#: how far before a reservation's server time the stream is searched for its copy (the
#: events stream and chorus-feeds may have different leaders, whose clocks differ a little)
SEARCH_MARGIN = timedelta(seconds=5)


async def find_stored(
    bus: Bus, env: Envelope, since: datetime | None
) -> tuple[PubAck, dict[str, int] | None] | None:
    """The ack (and redaction findings) of ``env``'s copy stored after ``since``, if any.

    Needed for a reservation without an ack: its gateway may have died after the
    publish but before recording it, and past JetStream's de-duplication window a
    second publish would store a second copy. Walks the envelope's primary subject
    from ``since`` (one message read per stored envelope on that subject): rare, and
    bounded by the traffic since the reservation. Raises :class:`UnavailableError`
    when the stream cannot say, so nothing is published on a guess.
    """
    subject = routes(env)[0]
    start = (since or datetime.now(UTC)) - SEARCH_MARGIN
    try:
        msg = await bus.stream_message_since(EVENTS_STREAM, subject, start)
        digest = env.digest()
        while msg is not None:
            if msg.headers.get("Nats-Msg-Id") == env.id and msg.data:
                try:
                    stored = Envelope.decode(msg.data, max_bytes=len(msg.data))
                except ChorusError:
                    stored = None
                if stored is not None and stored.sender == env.sender and stored.digest() == digest:
                    findings = stored.redaction.findings if stored.redaction else None
                    return PubAck(stream=EVENTS_STREAM, seq=msg.seq, duplicate=True), findings
            msg = await bus.stream_message(EVENTS_STREAM, msg.seq + 1, subject)
    except UnavailableError as exc:
        raise UnavailableError(
            f"cannot search {EVENTS_STREAM} for {env.id}: {exc.detail}"
        ) from None
    return None


def _follows_refused(sender: str, seq: int, refused: int) -> FeedGapError:
    return FeedGapError(
        f"feed of {sender!r} does not link at feed_seq {seq}: the entry it follows at "
        f"{refused} was refused",
        sender=sender,
        expected=refused,
        got=seq,
        reason="broken_link",
    )


@dataclass
class _Pending:
    """An entry to publish now: newly reserved by us, or a reservation left without an ack."""

    index: int
    env: Envelope
    entry: FeedEntry


class Publisher:
    def __init__(
        self,
        bus: Bus,
        directory: AgentDirectory,
        feeds: FeedIndex,
        limiter: RateLimiter,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        redactor: Redactor | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.tracker = tracker
        self.bus = bus
        self.directory = directory
        self.feeds = feeds
        self.limiter = limiter
        self.settings = settings
        self.metrics = metrics
        self.redactor = redactor or Redactor()
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _reject(self, index: int, error: ChorusError) -> ItemResult:
        self.metrics.rejected.labels(error.code).inc()
        return ItemResult(index=index, ok=False, error=error.to_problem())

    async def publish(self, items: list[Any]) -> list[ItemResult]:
        """One batch is one ``pubsub.publish`` operation on the beat (six phases)."""
        if self.tracker is None:
            return await self._publish(items, None)
        async with self.tracker.operation("pubsub.publish") as op:
            return await self._publish(items, op)

    async def _publish(self, items: list[Any], op: Operation | None) -> list[ItemResult]:
        started = time.perf_counter()
        if op is not None:
            await op.phase(Phase.CONNECTING)
        results: list[ItemResult | None] = [None] * len(items)
        by_sender: dict[str, list[tuple[int, Envelope]]] = defaultdict(list)
        for index, raw in enumerate(items):
            try:
                env = Envelope.from_dict(raw)
                env.encode(self.settings.max_message_bytes)
                check_hops(env, self.settings.gateway_hop_limit)
                # before the feed seq is reserved: a refused envelope must not hold it
                self.redactor.refuse_fixed_secrets(env)
            except ChorusError as exc:
                results[index] = self._reject(index, exc)
                continue
            by_sender[env.sender].append((index, env))

        if op is not None:
            await op.phase(Phase.NEGOTIATING)
        for sender, entries in by_sender.items():
            decision = await self.limiter.acquire(sender, len(entries))
            if not decision.allowed:
                self.metrics.rate_limited.labels(sender).inc()
                error = RateLimitedError(
                    f"sender {sender!r} is over its rate limit "
                    f"({self.settings.gateway_rate_per_second:g}/s, burst "
                    f"{self.settings.gateway_rate_burst}); retry in {decision.retry_after:.1f}s",
                    retry_after=decision.retry_after,
                    retry_after_seconds=round(decision.retry_after, 3),
                )
                for index, _ in entries:
                    results[index] = self._reject(index, error)
                continue
            async with self._locks[sender]:
                await self._publish_sender(sender, entries, results, op)

        self.metrics.batch_size.observe(len(items))
        self.metrics.publish_latency.observe(time.perf_counter() - started)
        return [r for r in results if r is not None]

    def _stored(self, index: int, env: Envelope, entry: FeedEntry) -> ItemResult:
        """The original ack of an entry stored before: same stream sequence, ``duplicate``."""
        return ItemResult(
            index=index,
            ok=True,
            id=env.id,
            type=env.type.value,
            subjects=routes(env),
            stream=entry.stream,
            seq=entry.seq,
            duplicate=True,
            redacted=entry.redacted,
        )

    async def _position(self, sender: str, head: FeedHead, first_new: int) -> FeedState:
        """Where the feed really stands: the head, moved over records stored after it.

        The head is advanced after the reservations, so a gateway that died in between
        leaves it behind; the records past it are read (1, 2, 4, … at a time) until one
        is missing, and only when an entry arrives beyond ``head + 1``.
        """
        state = head.state
        window = 1
        while state.seq + 1 < first_new:
            seqs = list(range(state.seq + 1, min(state.seq + 1 + window, first_new)))
            found = await asyncio.gather(
                *(self.feeds.get(sender, seq, resolve=False) for seq in seqs)
            )
            for seq, entry in zip(seqs, found, strict=True):
                if entry is None:
                    return state
                state = FeedState(seq=seq, head=entry.digest)
            window = min(window * 2, 256)
        return state

    async def _publish_sender(
        self,
        sender: str,
        entries: list[tuple[int, Envelope]],
        results: list[ItemResult | None],
        op: Operation | None = None,
    ) -> None:
        key = await self.directory.public_key(sender)
        head = await self.directory.feed_head(sender)
        ordered = sorted(entries, key=lambda e: e[1].feed_seq or 0)
        signed = await signed_digests([env for _, env in ordered], key) if key else None
        digests = signed or [None] * len(ordered)
        later = [n for _, env in ordered if (n := env.feed_seq or 0) > head.state.seq]
        position = await self._position(sender, head, min(later)) if later else head.state
        verifier = FeedVerifier(lambda _agent: key)
        if position.head is not None:
            verifier.trust_from(sender, position.seq, position.head)

        old: list[tuple[int, Envelope, str]] = []  # at or below the head: stored already?
        fresh: list[tuple[int, Envelope, str]] = []  # past the head, verified, to reserve
        first_at: dict[int, tuple[int, str]] = {}  # feed_seq -> (index, digest) in this batch
        copies: dict[int, int] = {}  # index of a repeat in this batch -> index of its first
        for (index, env), digest in zip(ordered, digests, strict=True):
            seq = env.feed_seq
            if seq is not None and digest is not None and env.redaction is None:
                if seq <= position.seq:
                    old.append((index, env, digest))
                    continue
                if seq in first_at:
                    first, first_digest = first_at[seq]
                    if first_digest == digest:
                        copies[index] = first
                    else:
                        results[index] = self._reject(
                            index,
                            FeedForkError(
                                f"feed of {sender!r} forks at feed_seq {seq}: this batch "
                                f"holds two different envelopes there",
                                sender=sender,
                                feed_seq=seq,
                            ),
                        )
                    continue
            try:
                verifier.check(env, signed_digest=digest)
            except ChorusError as exc:
                results[index] = self._reject(index, exc)
                continue
            assert seq is not None and digest is not None
            first_at[seq] = (index, digest)
            fresh.append((index, env, digest))

        prepared: dict[int, tuple[Envelope, list[Finding]]] = {}  # index -> redacted, findings
        fresh = await self._admissible(sender, fresh, results, prepared)

        pending: list[_Pending] = []
        if old:
            records = await asyncio.gather(
                *(self.feeds.get(sender, env.feed_seq or 0) for _, env, _ in old)
            )
            for (index, env, digest), entry in zip(old, records, strict=True):
                self._settle_taken(sender, index, env, digest, entry, results, pending)

        reach: FeedState | None = None  # the furthest entry now reserved in this batch
        # one acks record completes the entries reserved together (a single one is completed
        # in its own record: as cheap)
        batch = uuid.uuid4().hex if len(fresh) > 1 else None
        if fresh:
            reservations = await self.feeds.reserve(
                sender, [(env.feed_seq or 0, digest) for _, env, digest in fresh], batch
            )
            broken_at: int | None = None
            for (index, env, digest), reservation in zip(fresh, reservations, strict=True):
                seq = env.feed_seq or 0
                if broken_at is not None:
                    if reservation.ours:
                        await self.feeds.release(sender, seq, reservation.entry)
                    results[index] = self._reject(index, _follows_refused(sender, seq, broken_at))
                    continue
                if reservation.ours:
                    pending.append(_Pending(index, env, reservation.entry))
                elif not self._settle_taken(
                    sender, index, env, digest, reservation.entry, results, pending
                ):
                    broken_at = seq
                    continue
                reach = FeedState(seq=seq, head=digest)

        # a reservation found without an ack may have been stored by a gateway that died
        # before recording it: look for the copy before publishing (ours are fresh: no copy)
        searched = [p for p in pending if p.entry.written is not None]
        if searched:
            found = await asyncio.gather(
                *(find_stored(self.bus, p.env, p.entry.written) for p in searched),
                return_exceptions=True,
            )
            for item, outcome in zip(searched, found, strict=True):
                if outcome is None:
                    continue
                pending.remove(item)
                if isinstance(outcome, BaseException):
                    error = (
                        outcome
                        if isinstance(outcome, ChorusError)
                        else UnavailableError(str(outcome))
                    )
                    results[item.index] = self._reject(item.index, error)
                    continue
                ack, redacted = outcome
                entry = await self.feeds.complete(
                    sender, item.env.feed_seq or 0, item.entry, ack.stream, ack.seq, redacted
                )
                results[item.index] = self._stored(item.index, item.env, entry)

        # the head is a hint that the reservations are the truth of: it may move as soon as
        # they are made, so its write runs beside the publish instead of after it (one fsync
        # round trip less per batch on a sync_interval: always server)
        furthest = reach if reach is not None and reach.seq > position.seq else position
        moving = (
            asyncio.create_task(self._advance_head(sender, head, furthest))
            if furthest.seq > head.state.seq
            else None
        )
        try:
            if pending:
                await self._publish_reserved(sender, pending, batch, prepared, results, op)
        finally:
            if moving is not None:
                await moving
        for index, first in copies.items():
            original = results[first]
            if original is not None and original.ok:
                results[index] = replace(original, index=index, duplicate=True)
            elif original is not None:
                results[index] = ItemResult(index=index, ok=False, error=original.error)

    async def _advance_head(self, sender: str, head: FeedHead, furthest: FeedState) -> None:
        try:
            await self.directory.advance_feed(sender, head, furthest)
        except ChorusError as exc:
            log.warning("feed head of %s not stored: %s", sender, exc.detail)

    async def _admissible(
        self,
        sender: str,
        fresh: list[tuple[int, Envelope, str]],
        results: list[ItemResult | None],
        prepared: dict[int, tuple[Envelope, list[Finding]]],
    ) -> list[tuple[int, Envelope, str]]:
        """The verified entries up to the first that may not be stored; each one redacted.

        Checked before the seq is reserved, so a refused entry never holds it: its
        created_at must be within the skew, and SHHH must be able to redact it (it
        refuses a secret outside the payload). An entry already reserved with this
        very digest passes the skew however old it is: a gateway died before moving
        the head past it, and the re-send must complete it. What follows a refused
        entry is refused with it (it links to that entry).
        """
        now = datetime.now(UTC)
        for position, (index, env, digest) in enumerate(fresh):
            seq = env.feed_seq or 0
            try:
                try:
                    check_clock(env, now, self.settings.gateway_max_clock_skew_seconds)
                except ClockSkewError:
                    entry = await self.feeds.get(sender, seq, resolve=False)
                    if entry is None or entry.digest != digest:
                        raise
                prepared[index] = self.redactor.redact_envelope(env)
                continue
            except ChorusError as exc:
                results[index] = self._reject(index, exc)
            for later, env_later, _ in fresh[position + 1 :]:
                results[later] = self._reject(
                    later, _follows_refused(sender, env_later.feed_seq or 0, seq)
                )
            return fresh[:position]
        return fresh

    def _settle_taken(
        self,
        sender: str,
        index: int,
        env: Envelope,
        digest: str,
        entry: FeedEntry | None,
        results: list[ItemResult | None],
        pending: list[_Pending],
    ) -> bool:
        """Answer an entry whose seq already has a record; False if another entry holds it."""
        seq = env.feed_seq
        if entry is None:
            results[index] = self._reject(
                index,
                FeedReplayError(
                    f"feed_seq {seq} of {sender!r} is at or behind its head and no record of "
                    f"it is kept any more; continue the feed from its head",
                    sender=sender,
                    feed_seq=seq,
                ),
            )
            return False
        if entry.digest != digest:
            results[index] = self._reject(
                index,
                FeedForkError(
                    f"feed of {sender!r} forks at feed_seq {seq}: a different envelope "
                    f"({entry.digest[:12]}…) holds that seq",
                    sender=sender,
                    feed_seq=seq,
                ),
            )
            return False
        if entry.stored:
            results[index] = self._stored(index, env, entry)
        else:
            pending.append(_Pending(index, env, entry))
        return True

    async def _publish_reserved(
        self,
        sender: str,
        pending: list[_Pending],
        batch: str | None,
        prepared: dict[int, tuple[Envelope, list[Finding]]],
        results: list[ItemResult | None],
        op: Operation | None,
    ) -> None:
        """Publish and record the ack of each reserved entry (redacted in ``prepared``).

        A failed publish leaves its reservation without an ack: the client's re-send
        of the same envelope completes it, and nobody else can take the seq meanwhile.
        """
        cleaned: list[Envelope] = []
        publishing: list[_Pending] = []
        for item in pending:
            try:
                clean, findings = prepared.get(item.index) or self.redactor.redact_envelope(
                    item.env
                )
            except ChorusError as exc:  # passed when reserved; the redactor changed since
                results[item.index] = self._reject(item.index, exc)
                continue
            for finding in findings:
                self.metrics.redactions.labels(finding.pattern, finding.severity).inc()
            if findings:
                self.metrics.redacted_envelopes.inc()
            cleaned.append(clean)
            publishing.append(item)
        pending = publishing
        if not pending:
            return
        if op is not None and Phase.EXECUTING not in op.phases:
            await op.phase(Phase.EXECUTING)
        outcomes = await self.bus.publish_many(cleaned)
        done: list[tuple[_Pending, Envelope, PubAck]] = []
        for item, env, outcome in zip(pending, cleaned, outcomes, strict=True):
            if isinstance(outcome, Exception):
                error = (
                    outcome if isinstance(outcome, ChorusError) else UnavailableError(str(outcome))
                )
                results[item.index] = self._reject(item.index, error)
                continue
            done.append((item, env, outcome[0]))
        together: list[tuple[_Pending, Envelope, PubAck]] = []
        alone: list[tuple[_Pending, Envelope, PubAck]] = []
        for d in done:
            (together if batch is not None and d[0].entry.batch == batch else alone).append(d)
        recorded: dict[int, FeedEntry] = {}
        try:
            if together:
                await self.feeds.record_acks(
                    sender,
                    batch or "",
                    together[0][2].stream,
                    {
                        env.feed_seq or 0: (
                            ack.seq,
                            env.redaction.findings if env.redaction else None,
                        )
                        for _, env, ack in together
                    },
                )
            if alone:
                entries = await self.feeds.complete_many(
                    sender,
                    [
                        (
                            env.feed_seq or 0,
                            item.entry,
                            ack,
                            env.redaction.findings if env.redaction else None,
                        )
                        for item, env, ack in alone
                    ],
                )
                recorded = {item.index: e for (item, _, _), e in zip(alone, entries, strict=True)}
        except Exception as exc:
            # stored, but the acks not recorded: the next re-send finds the copies
            log.warning("acks of %s not recorded: %s", sender, exc)
        for item, env, ack in done:
            entry = recorded.get(item.index)
            if entry is not None and entry.seq != ack.seq:
                # another gateway completed the same reservation first: its ack is the answer
                results[item.index] = self._stored(item.index, env, entry)
                continue
            self.metrics.published.labels(env.type.value).inc()
            results[item.index] = ItemResult(
                index=item.index,
                ok=True,
                id=env.id,
                type=env.type.value,
                subjects=routes(env),
                stream=ack.stream,
                seq=ack.seq,
                duplicate=bool(ack.duplicate),
                redacted=env.redaction.findings if env.redaction else None,
            )
