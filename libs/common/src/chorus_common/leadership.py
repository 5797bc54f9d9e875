"""Leader leases in the ``chorus-election`` KV bucket, fenced by a term number.

One key per scope (``leader.<scope>``; the admin is scope ``admin``). The value
names the holder and the **term**; every change of holder is a compare-and-set
on the key's last revision and increments the term, so terms are unique and
grow. Time is never compared across machines:

* the holder counts its lease from the moment it *sent* its last successful
  renewal and stops acting at ``sent + ttl - margin``;
* a contender counts from the moment it *saw* the current revision and may
  take over only after ``ttl`` without a change.

The contender's clock starts after the renewal was written, the holder's
before, so the holder has stopped acting before anyone else can start.
:class:`LeaseRules` is that arithmetic with no I/O; :class:`LeaderLease` is
the bus shell that services use for leader-only loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.errors import ConflictError
from chorus_common.topology import BUCKET_ELECTION

__all__ = ["Callback", "LeaderLease", "LeaseRecord", "LeaseRules", "current_term"]

log = logging.getLogger("chorus.leadership")

Callback = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class LeaseRecord:
    """What the KV key holds: the holder (None once released) and the term."""

    holder: str | None
    term: int
    ttl: float

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "term": self.term, "ttl": self.ttl}).encode()

    @classmethod
    def decode(cls, data: bytes) -> LeaseRecord:
        doc = json.loads(data)
        return cls(holder=doc.get("holder"), term=int(doc["term"]), ttl=float(doc["ttl"]))


@dataclass
class LeaseRules:
    """The timing decisions of one participant, with ``now`` passed in (monotonic seconds)."""

    me: str
    ttl: float
    margin: float
    valid_until: float | None = None  # while we hold the lease
    seen_revision: int | None = None
    seen_at: float = 0.0

    def renewed(self, sent_at: float) -> None:
        self.valid_until = sent_at + self.ttl - self.margin

    def holding(self, now: float) -> bool:
        return self.valid_until is not None and now < self.valid_until

    def lost(self) -> None:
        self.valid_until = None

    def observe(self, revision: int, now: float) -> None:
        if revision != self.seen_revision:
            self.seen_revision = revision
            self.seen_at = now

    def may_take_over(self, record: LeaseRecord, revision: int, now: float) -> bool:
        """A released lease at once; another holder's only after ``ttl`` unchanged."""
        self.observe(revision, now)
        if record.holder is None or record.holder == self.me:
            return True
        return now >= self.takeover_at(record)

    def takeover_at(self, record: LeaseRecord) -> float:
        """When another holder's lease, unchanged since it was seen, may be taken over."""
        return self.seen_at + max(self.ttl, record.ttl)


@dataclass
class LeaderLease:
    """Hold ``leader.<scope>`` while alive; call back on election and demotion.

    ``eligible`` lets a caller (the election service) decide when this
    participant may try to take the lease; by default any participant may.
    ``may_hold`` is stronger: while it is false the participant neither takes the
    lease nor keeps it — a holder gives it up (released, so another takes over
    at once) — which is how a service without a license seat stops leading.
    """

    kv: KeyValue
    scope: str
    holder: str
    ttl: float = 1.0
    margin: float | None = None
    interval: float | None = None
    eligible: Callable[[], bool] = lambda: True
    may_hold: Callable[[], bool] = lambda: True
    on_elected: list[Callback] = field(default_factory=list)
    on_demoted: list[Callback] = field(default_factory=list)
    term: int | None = None
    _revision: int | None = None
    _task: asyncio.Task[None] | None = None
    _rules: LeaseRules | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: when the lease seen on the last step may be taken over (None: nothing to wait for)
    _takeover_at: float | None = None

    @classmethod
    async def open(cls, bus: object, scope: str, holder: str, **kwargs: object) -> LeaderLease:
        """On a connected :class:`~chorus_common.bus.Bus` (or, in chorus_common, a JetStream)."""
        js = bus.jetstream if isinstance(bus, Bus) else bus
        kv = await js.key_value(BUCKET_ELECTION)  # type: ignore[attr-defined]
        return cls(kv=kv, scope=scope, holder=holder, **kwargs)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        margin = self.margin if self.margin is not None else max(0.05, self.ttl * 0.25)
        self._rules = LeaseRules(me=self.holder, ttl=self.ttl, margin=margin)
        if self.interval is None:
            self.interval = self.ttl / 4

    @property
    def key(self) -> str:
        return f"leader.{self.scope}"

    @property
    def is_leader(self) -> bool:
        assert self._rules is not None
        return self._rules.holding(time.monotonic())

    def require_term(self, term: int) -> None:
        """Fencing: refuse an action stamped with a term that is not ours and current."""
        if not self.is_leader or term != self.term:
            raise ConflictError(
                f"stale term {term} for {self.scope}: current term is {self.term} "
                f"and this participant {'leads' if self.is_leader else 'does not lead'}",
                term=term,
                current_term=self.term,
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease:{self.scope}")

    async def stop(self, release: bool = True) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.is_leader:
            term = self.term or 0
            if release and self._revision is not None:
                with contextlib.suppress(Exception):
                    await self.kv.update(
                        self.key,
                        LeaseRecord(None, term, self.ttl).encode(),
                        last=self._revision,
                    )
            await self._demote()

    async def wait_until_leader(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self.is_leader:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not leader of {self.scope} within {timeout}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.05)
        assert self.term is not None
        return self.term

    async def _run(self) -> None:
        assert self._rules is not None and self.interval is not None
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bus trouble: keep the deadline, try again
                log.debug("lease %s step failed: %s", self.key, exc)
            if self.term is not None and not self.is_leader:
                await self._demote()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_step_in())
            self._wake.clear()

    def poke(self) -> None:
        """Step now: the caller's ``eligible`` may just have become true."""
        self._wake.set()

    def _next_step_in(self) -> float:
        """The renewal interval, or less when a takeover comes due before it.

        Stepping only every ``interval`` would add up to one interval to every
        failover: the old lease would expire just after a step and wait for the next.
        """
        assert self.interval is not None
        due_in = None if self._takeover_at is None else self._takeover_at - time.monotonic()
        if self.term is not None or due_in is None or due_in <= 0:
            return self.interval  # (past due but not taken: not eligible, or lost the race)
        return max(0.005, min(self.interval, due_in + 0.001))

    async def _step(self) -> None:
        assert self._rules is not None
        rules = self._rules
        if self.term is not None and self._revision is not None:
            sent = time.monotonic()
            if not rules.holding(sent):
                return
            if not self.may_hold():
                await self._give_up()
                return
            record = LeaseRecord(self.holder, self.term, self.ttl)
            try:
                self._revision = await self.kv.update(
                    self.key, record.encode(), last=self._revision
                )
            except KeyWrongLastSequenceError:
                log.warning("lease %s taken over; stepping down from term %s", self.key, self.term)
                rules.lost()
                return
            rules.renewed(sent)
            return
        now = time.monotonic()
        self._takeover_at = None
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            if self.eligible() and self.may_hold():
                await self._acquire(None, 0, now)
            return
        assert entry.value is not None and entry.revision is not None
        # watch the holder's renewals even while not eligible, so that the ttl countdown
        # has already run when this participant becomes the one to take over
        rules.observe(entry.revision, now)
        record = LeaseRecord.decode(entry.value)
        if record.holder is not None and record.holder != self.holder:
            self._takeover_at = rules.takeover_at(record)
        if not (self.eligible() and self.may_hold()):
            return
        if rules.may_take_over(record, entry.revision, now):
            await self._acquire(entry.revision, record.term, now)

    async def _give_up(self) -> None:
        """Release the key (holder None, same term) and stop acting: ``may_hold`` went false."""
        assert self._rules is not None
        log.warning(
            "%s gives up %s (term %s): it may not hold it now", self.holder, self.key, self.term
        )
        with contextlib.suppress(Exception):
            await self.kv.update(
                self.key, LeaseRecord(None, self.term or 0, self.ttl).encode(), last=self._revision
            )
        self._rules.lost()

    async def _acquire(self, revision: int | None, old_term: int, now: float) -> None:
        assert self._rules is not None
        term = old_term + 1
        record = LeaseRecord(self.holder, term, self.ttl).encode()
        sent = time.monotonic()
        try:
            if revision is None:
                self._revision = await self.kv.create(self.key, record)
            else:
                self._revision = await self.kv.update(self.key, record, last=revision)
        except KeyWrongLastSequenceError:
            return  # someone else won this round
        except Exception as exc:
            if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                return
            raise
        self._rules.renewed(sent)
        self.term = term
        log.info("%s leads %s with term %d", self.holder, self.scope, term)
        self._changed.set()
        for callback in self.on_elected:
            await callback(term)

    async def _demote(self) -> None:
        term = self.term
        self.term = None
        self._revision = None
        assert self._rules is not None
        self._rules.lost()
        self._changed.set()
        if term is not None:
            for callback in self.on_demoted:
                with contextlib.suppress(Exception):
                    await callback(term)


async def current_term(kv: KeyValue, scope: str) -> tuple[str | None, int]:
    """The holder and term as stored, for validators outside the holder's process."""
    try:
        entry = await kv.get(f"leader.{scope}")
    except KeyNotFoundError:
        return None, 0
    assert entry.value is not None
    record = LeaseRecord.decode(entry.value)
    return record.holder, record.term
