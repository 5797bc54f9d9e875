"""A participant in the admin election, on the bus: every election replica runs one, and any
agent can through the SDK with the same code.

Candidacies and heartbeats are core NATS messages (``chorus.election.candidacy``,
``chorus.election.heartbeat``); elections started, winners and step-downs are
kept in the ``CHORUS_ELECTION`` stream. Acting as admin requires holding the
``admin`` leader lease, whose term fences every admin action.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.election.rules import (
    ElectionRules,
    ElectionStarted,
    State,
    StepDown,
    Timings,
    Trigger,
)
from chorus_common.election.score import ScoreSource
from chorus_common.leadership import LeaderLease
from chorus_common.subjects import election_subject

log = logging.getLogger("chorus.election")

Duty = Callable[[int], Awaitable[None]]


@dataclass
class ElectionRecord:
    trigger: str
    started_at: float  # unix time
    started_mono: float
    candidates: list[dict[str, Any]]
    winner: str | None = None
    term: int | None = None
    duration_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "started_at": self.started_at,
            "candidates": self.candidates,
            "winner": self.winner,
            "term": self.term,
            "duration_seconds": self.duration_seconds,
        }


@dataclass
class ParticipantHooks:
    """Observers the service wires to metrics and the admin-action log."""

    on_election: Callable[[str], None] = lambda trigger: None
    on_elected: Callable[[int, float], None] = lambda term, duration: None
    on_stepdown: Callable[[str], None] = lambda reason: None
    on_split_brain: Callable[[], None] = lambda: None
    on_admin_action: Callable[[int, float], None] = lambda term, at: None
    on_tick: Callable[[Participant], None] = lambda p: None


class Participant:
    def __init__(
        self,
        bus: Bus,
        node_id: str,
        timings: Timings,
        score: ScoreSource,
        *,
        eligible: bool = True,
        hooks: ParticipantHooks | None = None,
    ) -> None:
        self.bus = bus
        self.node_id = node_id
        self.timings = timings
        self.score_source = score
        self.rules = ElectionRules(node_id=node_id, timings=timings, eligible_self=eligible)
        self.hooks = hooks or ParticipantHooks()
        self.history: deque[ElectionRecord] = deque(maxlen=100)
        self.current: ElectionRecord | None = None
        self.lease: LeaderLease | None = None
        self.duties_start: list[Duty] = []
        self.duties_stop: list[Duty] = []
        self.last_score = score.measure()
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._ticks = 0
        self._elected_at: float | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        self.lease = await LeaderLease.open(
            self.bus.js,
            "admin",
            self.node_id,
            ttl=self.timings.lease_ttl,
            interval=min(self.timings.heartbeat, self.timings.lease_ttl / 4),
            eligible=lambda: self.rules.may_acquire(time.monotonic()),
        )
        self.lease.on_elected.append(self._elected)
        self.lease.on_demoted.append(self._demoted)
        self._sub = await self.bus.nc.subscribe(election_subject("*"), cb=self._on_message)
        self.rules.start(time.monotonic())
        await self._announce()
        await self._discover()
        self.lease.start()
        self._tasks.append(asyncio.create_task(self._loop(), name="election-loop"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self.lease is not None:
            was_admin = self.lease.is_leader
            await self.lease.stop(release=True)
            if was_admin:
                await self._persist("stepdown", {"node": self.node_id, "reason": "shutdown"})
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

    def require_term(self, term: int) -> None:
        """Fencing for admin actions: refuse a stale term."""
        assert self.lease is not None
        self.lease.require_term(term)

    def admin_view(self) -> dict[str, Any]:
        rules = self.rules
        candidate = rules.candidates.get(rules.admin or "")
        return {
            "admin": rules.admin,
            "term": rules.admin_term or None,
            "is_self": self.is_admin,
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
            await self._step_down("manual election", hold=False)

    async def step_down(self, reason: str = "requested") -> None:
        await self._step_down(reason, hold=True)

    async def _step_down(self, reason: str, hold: bool) -> None:
        assert self.lease is not None
        if not self.lease.is_leader:
            return
        await self.lease.stop(release=True)
        now = time.monotonic()
        self.rules.lost_admin(now)
        if not hold:
            self.rules.hold_until = now
        self.hooks.on_stepdown(reason)
        await self._persist("stepdown", {"node": self.node_id, "reason": reason})
        self.lease.start()

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

    async def _tick(self) -> None:
        self._ticks += 1
        if self._ticks % 10 == 1:
            with contextlib.suppress(Exception):
                self.score_source.last_rtt = await self.bus.rtt(timeout=1)
        if self.is_admin and self._elected_at is not None:
            now = time.monotonic()
            self.score_source.admin_seconds += now - self._elected_at
            self._elected_at = now
        await self._announce()
        term = self.term
        if term is not None:
            # an admin action counts only if the lease is still valid after its timestamp
            # was taken: a pause in between must not produce an action outside the term
            acted_at = time.time()
            if self.term == term:
                self.hooks.on_admin_action(term, acted_at)
            await self.bus.publish_core(
                election_subject("heartbeat"),
                json.dumps({"node": self.node_id, "term": term, "at": time.time()}).encode(),
            )
        await self._decide()
        self.hooks.on_tick(self)

    async def _decide(self) -> None:
        for action in self.rules.tick(time.monotonic()):
            if isinstance(action, ElectionStarted):
                await self._started(action)
            elif isinstance(action, StepDown):
                await self._step_down(action.reason, hold=True)
        lease = self.lease
        if lease is not None and not lease.is_leader and self.rules.may_acquire(time.monotonic()):
            lease.poke()  # take the lease now, not at its next step

    async def _announce(self) -> None:
        score = self.score_source.measure()
        self.last_score = score
        now = time.monotonic()
        self.rules.on_candidacy(
            self.node_id, score.total, score.components, now, self.rules.eligible_self
        )
        body = {
            "node": self.node_id,
            "total": score.total,
            "components": score.components,
            "eligible": self.rules.eligible_self,
        }
        await self.bus.publish_core(election_subject("candidacy"), json.dumps(body).encode())

    async def _discover(self) -> None:
        """Ask for an existing admin before electing one (the grace period waits for answers)."""
        with contextlib.suppress(Exception):
            reply = await self.bus.nc.request(
                election_subject("discovery_request"),
                json.dumps({"node": self.node_id}).encode(),
                timeout=self.timings.grace,
            )
            doc = json.loads(reply.data)
            self.rules.on_discovery_response(doc["admin"], int(doc["term"]), time.monotonic())

    async def _started(self, started: ElectionStarted) -> None:
        self._open_record(started.trigger.value)
        self.hooks.on_election(started.trigger.value)
        await self._persist("started", {"node": self.node_id, "trigger": started.trigger.value})

    def _open_record(self, trigger: str) -> None:
        if self.current is not None and self.current.winner is None:
            return
        self.current = ElectionRecord(
            trigger=trigger,
            started_at=time.time(),
            started_mono=time.monotonic(),
            candidates=[
                {"node_id": c["node_id"], "total": c["total"]}
                for c in self.candidates_view()
                if c["live"] and c["eligible"]
            ],
        )
        self.history.append(self.current)

    def _close_record(self, winner: str, term: int) -> float | None:
        record = self.current
        if record is None or record.winner is not None:
            return None
        record.winner, record.term = winner, term
        record.duration_seconds = round(time.monotonic() - record.started_mono, 4)
        return record.duration_seconds

    async def _persist(self, event: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.bus.js.publish(
                election_subject(event), json.dumps({**body, "at": time.time()}).encode(), timeout=1
            )

    async def _elected(self, term: int) -> None:
        now = time.monotonic()
        if self.current is None or self.current.winner is not None:
            self._open_record(
                Trigger.NO_ADMIN_DISCOVERED.value
                if self.rules.admin is None
                else Trigger.ADMIN_HEARTBEAT_TIMEOUT.value
            )
        duration = self._close_record(self.node_id, term) or 0.0
        self.rules.became_admin(term, now)
        self._elected_at = now
        self.hooks.on_elected(term, duration)
        log.info("%s is admin with term %d", self.node_id, term)
        await self.bus.publish_core(
            election_subject("heartbeat"),
            json.dumps({"node": self.node_id, "term": term, "at": time.time()}).encode(),
        )
        await self._persist(
            "winner", {"node": self.node_id, "term": term, "score": self.last_score.components}
        )
        for duty in self.duties_start:
            try:
                await duty(term)
            except Exception:
                log.exception("leader duty failed to start for term %d", term)

    async def _demoted(self, term: int) -> None:
        self.rules.lost_admin(time.monotonic())
        self._elected_at = None
        for duty in self.duties_stop:
            try:
                await duty(term)
            except Exception:
                log.exception("leader duty failed to stop for term %d", term)

    # -- messages from others ---------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        event = msg.subject.rsplit(".", 1)[-1]
        try:
            doc = json.loads(msg.data) if msg.data else {}
        except (ValueError, RecursionError):
            return
        if not isinstance(doc, dict):
            return  # every election message is a JSON object; anything else is noise
        now = time.monotonic()
        if event == "candidacy" and doc.get("node") != self.node_id:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.rules.on_candidacy(
                    str(doc["node"]),
                    float(doc["total"]),
                    dict(doc["components"]),
                    now,
                    bool(doc.get("eligible", True)),
                )
        elif event == "heartbeat" and doc.get("node") != self.node_id:
            node, term = doc.get("node"), doc.get("term", 0)
            if not isinstance(node, str) or not node or type(term) is not int:
                return  # a heartbeat names its node and its term; no admin "None" from noise
            previous = self.rules.admin
            before = self.rules.state
            for action in self.rules.on_heartbeat(node, term, now):
                if isinstance(action, ElectionStarted):
                    self.hooks.on_split_brain()
                    await self._started(action)
                elif isinstance(action, StepDown) and self.is_admin:
                    await self._step_down(action.reason, hold=True)
            if (previous != self.rules.admin or before is not State.COMPLETE) and self.rules.admin:
                self._close_record(self.rules.admin, self.rules.admin_term)
        elif event == "discovery_request" and msg.reply and self.is_admin:
            await msg.respond(json.dumps({"admin": self.node_id, "term": self.term}).encode())
        elif event == "started" and doc.get("node") != self.node_id:
            with contextlib.suppress(ValueError):
                trigger = Trigger(str(doc.get("trigger")))
                self.rules.on_election_started(trigger, now)
                self._open_record(trigger.value)
                if trigger is Trigger.MANUAL_TRIGGER and self.is_admin:
                    await self._step_down("manual election", hold=False)


__all__ = ["ElectionRecord", "Participant", "ParticipantHooks"]
