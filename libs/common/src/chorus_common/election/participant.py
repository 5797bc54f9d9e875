"""A participant in the admin election, on the bus: every election replica runs one, and any
agent can through the SDK with the same code.

Candidacies and heartbeats are core NATS messages (``chorus.election.candidacy``,
``chorus.election.heartbeat``); elections started, winners and step-downs are
kept in the ``CHORUS_ELECTION`` stream. Every message is one of the topics declared in
:mod:`chorus_common.topics` (``ELECTION_*``), encoded and decoded with its model. Acting as admin requires holding the
``admin`` leader lease, whose term fences every admin action.

Every election, every change of admin and every step-down is logged with its
trigger and the scores that decided it, and reported to the hooks (metrics).

With a ``signer`` every message this participant sends carries its detached
signature (chorus_common.service_signing); with a ``verifier`` it takes only
messages a registered election replica signed, for the node that replica is, so a
plain NATS client can neither keep a dead admin alive nor install one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.election.rules import (
    ADMIN_STEPPED_DOWN,
    COMPONENTS,
    DEFAULT_CHALLENGE_MARGIN,
    ElectionRules,
    ElectionStarted,
    Score,
    State,
    StepDown,
    StepDownReason,
    Timings,
    Trigger,
)
from chorus_common.election.score import ScoreSource
from chorus_common.errors import ConflictError, MalformedBodyError
from chorus_common.leadership import LeaderLease
from chorus_common.service_signing import (
    HEADER_SENDER,
    ForgedKind,
    ForgedReason,
    ServiceSigner,
    ServiceVerifier,
)
from chorus_common.subjects import election_subject
from chorus_common.topics import (
    ELECTION_CANDIDACY,
    ELECTION_DISCOVERY,
    ELECTION_HEARTBEAT,
    ELECTION_STARTED,
    ELECTION_STEPDOWN,
    ELECTION_TOPICS,
    ELECTION_WINNER,
    Candidacy,
    DiscoveryRequest,
    DiscoveryResponse,
    ElectionSpeaker,
    ElectionStartedMessage,
    Heartbeat,
    Stepdown,
    Winner,
)

log = logging.getLogger("chorus.election")

Duty = Callable[[int], Awaitable[None]]

#: how often the round trip to NATS (the network component) is measured, in heartbeats
RTT_EVERY = 10


@dataclass
class ElectionRecord:
    trigger: str
    started_at: float  # unix time
    started_mono: float
    candidates: list[dict[str, Any]]
    winner: str | None = None
    term: int | None = None
    duration_seconds: float | None = None
    #: the admin before this election (if one was known), its term and last announced total
    previous_admin: str | None = None
    previous_term: int | None = None
    previous_total: float | None = None
    #: for an election after an announced step-down: its reason
    stepdown_reason: str | None = None
    winner_total: float | None = None

    @property
    def cause(self) -> str:
        """Why the admin changed: the step-down reason if the admin announced one,
        else the trigger."""
        return self.stepdown_reason or self.trigger

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "cause": self.cause,
            "started_at": self.started_at,
            "previous_admin": self.previous_admin,
            "previous_total": self.previous_total,
            "candidates": self.candidates,
            "winner_total": self.winner_total,
            "winner": self.winner,
            "term": self.term,
            "duration_seconds": self.duration_seconds,
        }


@dataclass
class ParticipantHooks:
    """Observers the service wires to metrics and the admin-action log."""

    on_election: Callable[[str], None] = lambda trigger: None
    on_elected: Callable[[int, float], None] = lambda term, duration: None
    #: this participant became admin; the argument is the cause (ElectionRecord.cause)
    on_admin_change: Callable[[str], None] = lambda cause: None
    on_stepdown: Callable[[StepDownReason], None] = lambda reason: None
    on_split_brain: Callable[[], None] = lambda: None
    on_admin_action: Callable[[int, float], None] = lambda term, at: None
    on_tick: Callable[[Participant], None] = lambda p: None


class Participant:
    """``eligible`` may be a callable, asked on every tick and before every try for the
    lease: a participant that stops being eligible (its license seat went away)
    announces ``eligible: false``, never tries for the lease, and steps down with
    ``ineligible_reason`` if it is the admin."""

    def __init__(
        self,
        bus: Bus,
        node_id: str,
        timings: Timings,
        score: ScoreSource,
        *,
        eligible: bool | Callable[[], bool] = True,
        ineligible_reason: StepDownReason = StepDownReason.INELIGIBLE,
        challenge_margin: float = DEFAULT_CHALLENGE_MARGIN,
        hooks: ParticipantHooks | None = None,
        signer: ServiceSigner | None = None,
        verifier: ServiceVerifier | None = None,
    ) -> None:
        self.bus = bus
        self.signer = signer
        self.verifier = verifier
        self.node_id = node_id
        self.timings = timings
        self.score_source = score
        self._eligible: Callable[[], bool] = (
            eligible if callable(eligible) else (lambda: bool(eligible))
        )
        self.ineligible_reason = ineligible_reason
        self.rules = ElectionRules(
            node_id=node_id,
            timings=timings,
            eligible_self=self._eligible(),
            challenge_margin=challenge_margin,
        )
        self.hooks = hooks or ParticipantHooks()
        self.history: deque[ElectionRecord] = deque(maxlen=100)
        self.current: ElectionRecord | None = None
        self.lease: LeaderLease | None = None
        self.duties_start: list[Duty] = []
        self.duties_stop: list[Duty] = []
        #: the last announced (smoothed) score; measured for real once the bus is up
        self.last_score = Score(dict.fromkeys(COMPONENTS, 0.0), score.weights)
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._elected_at: float | None = None
        self._stepping_down = False

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self.lease = await LeaderLease.open(
            self.bus,
            "admin",
            self.node_id,
            ttl=self.timings.lease_ttl,
            interval=min(self.timings.heartbeat, self.timings.lease_ttl / 4),
            eligible=self._may_acquire,
        )
        self.lease.on_elected.append(self._elected)
        self.lease.on_demoted.append(self._demoted)
        self._sub = await self.bus.client.subscribe(election_subject("*"), cb=self._on_message)
        with contextlib.suppress(Exception):
            # the network component starts from a real reading, not from "no answer"
            self.score_source.last_rtt = await self.bus.rtt(timeout=1)
        self.rules.start(time.monotonic())
        await self._announce()
        await self._discover()
        self.lease.start()
        self._tasks.append(asyncio.create_task(self._loop(), name="election-loop"))
        self._tasks.append(asyncio.create_task(self._measure_rtt(), name="election-rtt"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self.lease is not None:
            was_admin = self.lease.is_leader
            self._stepping_down = True
            await self.lease.stop(release=True)
            if was_admin:
                self._log_stepdown(StepDownReason.SHUTDOWN, "the participant stops")
                self.hooks.on_stepdown(StepDownReason.SHUTDOWN)
                await self._announce_stepdown(StepDownReason.SHUTDOWN)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    # -- state -----------------------------------------------------------------

    @property
    def is_admin(self) -> bool:
        return self.lease is not None and self.lease.is_leader

    @property
    def term(self) -> int | None:
        return self.lease.term if self.lease is not None and self.lease.is_leader else None

    @property
    def eligible(self) -> bool:
        """Whether this participant may stand (and act) now, asked afresh."""
        try:
            return bool(self._eligible())
        except Exception:  # an eligibility check that fails says no
            log.exception("eligibility check of %s failed; not standing", self.node_id)
            return False

    def require_term(self, term: int) -> None:
        """Fencing for admin actions: refuse a stale term, or any term while ineligible."""
        assert self.lease is not None
        self.lease.require_term(term)
        if not self.eligible:
            raise ConflictError(
                f"{self.node_id} holds term {term} but may not act: "
                f"{self.ineligible_reason.value}; it is stepping down",
                term=term,
            )

    def admin_view(self) -> dict[str, Any]:
        rules = self.rules
        candidate = rules.candidates.get(rules.admin or "")
        return {
            "admin": rules.admin,
            "term": rules.admin_term or None,
            "is_self": self.is_admin,
            "eligible": rules.may_stand(time.monotonic()),
            "state": rules.state.value,
            "since_seconds": round(time.monotonic() - rules.admin_since, 3)
            if rules.admin
            else None,
            "score": {"total": round(candidate.total, 6), "components": candidate.components}
            if candidate
            else None,
        }

    def candidates_view(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "node_id": c.node_id,
                "total": round(c.total, 6),
                "components": c.components,
                "eligible": c.eligible,
                "last_seen_seconds": round(now - c.seen_at, 3),
                "live": now - c.seen_at < self.timings.failover,
            }
            for c in sorted(self.rules.candidates.values(), key=lambda c: (-c.total, c.node_id))
        ]

    # -- actions ----------------------------------------------------------------

    async def trigger_manual(self) -> None:
        started = self.rules.manual(time.monotonic())
        await self._started(started)
        if self.is_admin and self.lease is not None:
            await self._step_down(StepDownReason.MANUAL, "manual election", hold=False)

    async def step_down(self, reason: StepDownReason = StepDownReason.REQUESTED) -> None:
        await self._step_down(reason, "requested over REST", hold=True)

    async def _step_down(
        self, reason: StepDownReason, detail: str, hold: bool, action: StepDown | None = None
    ) -> None:
        assert self.lease is not None
        if not self.lease.is_leader:
            return
        term = self.lease.term
        self._stepping_down = True
        try:
            await self.lease.stop(release=True)
        finally:
            self._stepping_down = False
        started = self.rules.stepped_down(reason, time.monotonic(), hold=hold)
        self._log_stepdown(reason, detail, term, action)
        self.hooks.on_stepdown(reason)
        await self._announce_stepdown(reason, term, action)
        await self._started(started)
        self.lease.start()

    def _log_stepdown(
        self,
        reason: StepDownReason,
        detail: str,
        term: int | None = None,
        action: StepDown | None = None,
    ) -> None:
        mine = self.rules.candidates.get(self.node_id)
        admin_total = action.admin_total if action and action.admin_total is not None else None
        if admin_total is None and mine is not None:
            admin_total = mine.total
        challenger = ""
        if action is not None and action.challenger is not None:
            challenger = f"; challenger {action.challenger} {action.challenger_total:.4f}"
        else:
            best = self.rules.best(time.monotonic())
            if best is not None and best.node_id != self.node_id:
                challenger = f"; best other candidate {best.node_id} {best.total:.4f}"
        log.warning(
            "%s steps down from term %s (reason %s): %s; admin score %s%s",
            self.node_id,
            term,
            reason.value,
            detail,
            f"{admin_total:.4f}" if admin_total is not None else "unknown",
            challenger,
        )

    async def _announce_stepdown(
        self, reason: StepDownReason, term: int | None = None, action: StepDown | None = None
    ) -> None:
        """Tell the others at once (core NATS, kept in the stream too) so that they elect
        now rather than after the heartbeats run out."""
        mine = self.rules.candidates.get(self.node_id)
        challenged = action is not None and action.challenger is not None
        notice = Stepdown(
            node=self.node_id,
            term=term,
            reason=reason.value,
            total=mine.total if mine is not None else None,
            challenger=action.challenger if challenged and action is not None else None,
            challenger_total=action.challenger_total if challenged and action is not None else None,
            at=time.time(),
        )
        # a core publish: it never waits (the stream still keeps it), so a step-down while
        # the bus is slow does not hold up the lease loop
        with contextlib.suppress(Exception):
            await self._send(ELECTION_STEPDOWN.pattern, notice)

    # -- the loop ----------------------------------------------------------------

    async def _loop(self) -> None:
        """Announce and heartbeat every ``heartbeat``; in between, wake when the rules have
        a deadline (an admin timing out, an election's delay passing) and decide then."""
        next_beat = 0.0
        while True:
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.timings.heartbeat
                    await self._tick()
                else:
                    await self._decide()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus may be down; keep ticking
                log.debug("election tick failed: %s", exc)
            now = time.monotonic()
            wake = next_beat
            deadline = self.rules.next_deadline(now)
            if deadline is not None:
                wake = min(wake, deadline + 0.001)
            await asyncio.sleep(max(0.0, wake - now))

    async def _measure_rtt(self) -> None:
        """The network component, measured beside the loop: a slow PONG must never hold
        back a heartbeat (it used to run inline, before the heartbeat)."""
        while True:
            await asyncio.sleep(self.timings.heartbeat * RTT_EVERY)
            with contextlib.suppress(Exception):
                self.score_source.last_rtt = await self.bus.rtt(timeout=1)

    async def _tick(self) -> None:
        eligible = self.eligible
        self.rules.eligible_self = eligible
        if self.is_admin and not eligible:
            # do not act another heartbeat without the right to
            await self._step_down(
                self.ineligible_reason, "this participant may no longer stand", hold=True
            )
        if self.is_admin and self._elected_at is not None:
            now = time.monotonic()
            self.score_source.admin_seconds += now - self._elected_at
            self._elected_at = now
        term = self.term
        if term is not None:
            # heartbeat first: the followers' failover clock runs from it
            await self._send(
                ELECTION_HEARTBEAT.pattern, Heartbeat(node=self.node_id, term=term, at=time.time())
            )
        await self._announce()
        if term is not None:
            # an admin action counts only if the lease is still valid after its timestamp
            # was taken: a pause in between must not produce an action outside the term
            acted_at = time.time()
            if self.term == term and self.eligible:
                self.hooks.on_admin_action(term, acted_at)
        await self._decide()
        self.hooks.on_tick(self)

    async def _decide(self) -> None:
        for action in self.rules.tick(time.monotonic()):
            if isinstance(action, ElectionStarted):
                await self._started(action)
            elif isinstance(action, StepDown):
                await self._step_down(action.reason, action.detail, hold=True, action=action)
        lease = self.lease
        if lease is not None and not lease.is_leader and self._may_acquire():
            lease.poke()  # take the lease now, not at its next step

    def _may_acquire(self) -> bool:
        if not self.eligible:
            self.rules.eligible_self = False
            return False
        return self.rules.may_acquire(time.monotonic())

    async def _announce(self) -> None:
        now = time.monotonic()
        score = self.score_source.measure(now)
        self.last_score = score
        standing = self.rules.may_stand(now)
        self.rules.on_candidacy(self.node_id, score.total, score.components, now, standing)
        candidacy = Candidacy(
            node=self.node_id, total=score.total, components=score.components, eligible=standing
        )
        await self._send(ELECTION_CANDIDACY.pattern, candidacy)

    async def _discover(self) -> None:
        """Ask for an existing admin before electing one (the grace period waits for answers)."""
        with contextlib.suppress(Exception):
            subject = ELECTION_DISCOVERY.pattern
            data = _encode(DiscoveryRequest(node=self.node_id))
            # the answer's signature is checked on its bytes, so the raw reply is needed
            reply = await self.bus.client.request(
                subject, data, timeout=self.timings.grace, headers=self._sign(subject, data)
            )
            answer = DiscoveryResponse.model_validate_json(reply.data)
            if not await self._believe(reply, answer.admin):
                return
            self.rules.on_discovery_response(answer.admin, answer.term, time.monotonic())

    async def _started(self, started: ElectionStarted) -> None:
        trigger = str(started.trigger)
        record = self._open_record(trigger, started.stepped_down, started.reason)
        self.hooks.on_election(trigger)
        best = self.rules.best(time.monotonic())
        log.info(
            "%s: election started (trigger %s%s); previous admin %s score %s; "
            "best candidate %s score %s",
            self.node_id,
            trigger,
            f", step-down reason {started.reason.value}" if started.reason else "",
            record.previous_admin if record else None,
            _fmt(record.previous_total if record else None),
            best.node_id if best else None,
            _fmt(best.total if best else None),
        )
        if started.trigger != ADMIN_STEPPED_DOWN:
            await self._persist(
                ELECTION_STARTED.pattern,
                ElectionStartedMessage(node=self.node_id, trigger=trigger, at=time.time()),
            )

    def _open_record(
        self,
        trigger: str,
        previous: str | None = None,
        stepdown_reason: StepDownReason | None = None,
    ) -> ElectionRecord | None:
        if self.current is not None and self.current.winner is None:
            if stepdown_reason is not None and self.current.stepdown_reason is None:
                self.current.stepdown_reason = stepdown_reason.value
            return self.current
        previous = previous or self.rules.admin or self._last_admin()
        known = self.rules.candidates.get(previous or "")
        self.current = ElectionRecord(
            trigger=trigger,
            started_at=time.time(),
            started_mono=time.monotonic(),
            candidates=[
                {"node_id": c["node_id"], "total": c["total"]}
                for c in self.candidates_view()
                if c["live"] and c["eligible"]
            ],
            previous_admin=previous,
            previous_term=self.rules.admin_term or None,
            previous_total=known.total if known else None,
            stepdown_reason=stepdown_reason.value if stepdown_reason else None,
        )
        self.history.append(self.current)
        return self.current

    def _last_admin(self) -> str | None:
        for record in reversed(self.history):
            if record.winner is not None:
                return record.winner
        return None

    def _close_record(self, winner: str, term: int) -> ElectionRecord | None:
        record = self.current
        if record is None or record.winner is not None:
            return None
        record.winner, record.term = winner, term
        record.duration_seconds = round(time.monotonic() - record.started_mono, 4)
        known = self.rules.candidates.get(winner)
        record.winner_total = known.total if known else None
        if record.previous_admin == winner and record.previous_term == term:
            return record  # the same admin, still in its term: nothing changed hands
        log.info(
            "%s: admin is now %s with term %d (cause %s, %.3f s); its score %s; "
            "previous admin %s score %s",
            self.node_id,
            winner,
            term,
            record.cause,
            record.duration_seconds,
            _fmt(record.winner_total),
            record.previous_admin,
            _fmt(record.previous_total),
        )
        return record

    async def _persist(self, subject: str, message: BaseModel) -> None:
        """Store ``message`` on ``subject`` in the ``CHORUS_ELECTION`` stream, signed."""
        with contextlib.suppress(Exception):
            data = _encode(message)
            await self.bus.jetstream.publish(
                subject, data, timeout=1, headers=self._sign(subject, data)
            )

    async def _elected(self, term: int) -> None:
        now = time.monotonic()
        if self.current is None or self.current.winner is not None:
            self._open_record(
                Trigger.NO_ADMIN_DISCOVERED.value
                if self.rules.admin is None
                else Trigger.ADMIN_HEARTBEAT_TIMEOUT.value
            )
        record = self._close_record(self.node_id, term)
        duration = record.duration_seconds or 0.0 if record else 0.0
        self.rules.became_admin(term, now)
        self._elected_at = now
        self.hooks.on_elected(term, duration)
        self.hooks.on_admin_change(record.cause if record else Trigger.ADMIN_HEARTBEAT_TIMEOUT)
        await self._send(
            ELECTION_HEARTBEAT.pattern, Heartbeat(node=self.node_id, term=term, at=time.time())
        )
        await self._persist(
            ELECTION_WINNER.pattern,
            Winner(node=self.node_id, term=term, score=self.last_score.components, at=time.time()),
        )
        for duty in self.duties_start:
            try:
                await duty(term)
            except Exception:
                log.exception("leader duty failed to start for term %d", term)

    async def _demoted(self, term: int) -> None:
        self.rules.lost_admin(time.monotonic())
        self._elected_at = None
        if not self._stepping_down:
            # not our decision: the lease lapsed (a pause, or the bus was unreachable)
            # or someone took it over
            started = self.rules.stepped_down(StepDownReason.LEASE_LOST, time.monotonic())
            self._log_stepdown(
                StepDownReason.LEASE_LOST, "the admin lease lapsed or was taken over", term
            )
            self.hooks.on_stepdown(StepDownReason.LEASE_LOST)
            await self._announce_stepdown(StepDownReason.LEASE_LOST, term)
            await self._started(started)
        for duty in self.duties_stop:
            try:
                await duty(term)
            except Exception:
                log.exception("leader duty failed to stop for term %d", term)

    # -- signing ------------------------------------------------------------------

    def _sign(self, subject: str, data: bytes) -> dict[str, str] | None:
        return self.signer.sign_headers(subject, data) if self.signer is not None else None

    async def _send(self, subject: str, message: BaseModel) -> None:
        """A core publish of ``message`` on its topic's ``subject``, signed over its bytes."""
        data = _encode(message)
        topic = self.bus.topic(ELECTION_TOPICS[subject.rsplit(".", 1)[-1]])
        await topic.publish_raw(subject, data, headers=self._sign(subject, data))

    async def _believe(self, msg: Msg, node: Any) -> bool:
        """Whether ``msg`` was signed by the registered election replica of ``node``.

        Without a verifier every message is believed (an SDK participant that opted out).
        A message signed by one replica about another node is refused like a forgery.
        """
        if self.verifier is None:
            return True
        signer = await self.verifier.check_detached(
            ForgedKind.ELECTION, "election", msg.subject, msg.data, msg.headers
        )
        if signer is None:
            return False
        if node is not None and node != signer.node_id:
            self.verifier.count(
                ForgedKind.ELECTION,
                ForgedReason.NOT_SERVICE,
                f"{msg.subject} signed by {signer.sender} speaks for node {node!r}",
            )
            return False
        return True

    # -- messages from others ---------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        if self.signer is not None and (msg.headers or {}).get(HEADER_SENDER) == self.signer.sender:
            return  # our own words, or a forgery in our name: nothing to act on either way
        event = msg.subject.rsplit(".", 1)[-1]
        spec = ELECTION_TOPICS.get(event)
        data = msg.data or b"{}"  # an empty message reads as an empty object, as always
        value: BaseModel | None = None
        node: Any = None
        if spec is not None:
            try:
                value = spec.decode(data)
                node = getattr(value, "node", None)
            except MalformedBodyError:
                value = None  # not its event's message: noise, once its signature is checked
        if value is None:
            with contextlib.suppress(ValidationError):
                # the signature is checked against the node a message speaks for, if it names one
                node = ElectionSpeaker.model_validate_json(data).node
        if not await self._believe(msg, node):
            return
        if value is None:
            return
        now = time.monotonic()
        if isinstance(value, Candidacy) and value.node != self.node_id:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.rules.on_candidacy(
                    value.node, value.total, value.components, now, value.eligible
                )
        elif isinstance(value, Heartbeat) and value.node != self.node_id:
            # a heartbeat names its node and its term (the model refuses noise): no admin
            # "None" from an empty one
            previous = self.rules.admin
            before = self.rules.state
            for action in self.rules.on_heartbeat(value.node, value.term, now):
                if isinstance(action, ElectionStarted):
                    self.hooks.on_split_brain()
                    await self._started(action)
                elif isinstance(action, StepDown) and self.is_admin:
                    await self._step_down(action.reason, action.detail, hold=True, action=action)
            if (previous != self.rules.admin or before is not State.COMPLETE) and self.rules.admin:
                self._close_record(self.rules.admin, self.rules.admin_term)
        elif isinstance(value, Stepdown) and value.node != self.node_id:
            try:
                reason = StepDownReason(value.reason)
            except ValueError:
                return
            started = self.rules.on_stepdown(value.node, reason, now)
            if started is not None:
                await self._started(started)
        elif isinstance(value, DiscoveryRequest) and msg.reply and self.is_admin:
            admin_term = self.term
            if admin_term is None:
                return
            answer = _encode(DiscoveryResponse(admin=self.node_id, term=admin_term))
            await self.bus.topic(ELECTION_DISCOVERY).publish_raw(
                msg.reply, answer, headers=self._sign(msg.reply, answer)
            )
        elif isinstance(value, ElectionStartedMessage) and value.node != self.node_id:
            with contextlib.suppress(ValueError):
                trigger = Trigger(value.trigger)
                self.rules.on_election_started(trigger, now)
                self._open_record(trigger.value)
                if trigger is Trigger.MANUAL_TRIGGER and self.is_admin:
                    await self._step_down(StepDownReason.MANUAL, "manual election", hold=False)


def _encode(message: BaseModel) -> bytes:
    """The bytes a message is signed over and sent as."""
    return message.model_dump_json().encode()


def _fmt(total: float | None) -> str:
    return "unknown" if total is None else f"{total:.4f}"


__all__ = ["ElectionRecord", "Participant", "ParticipantHooks"]
