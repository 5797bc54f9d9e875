"""The election as plain rules: scores, timings, and the participant's state machine.

No I/O here: the shell (``participant.py``) feeds observations in with the
current monotonic time and acts on what :meth:`ElectionRules.tick` returns.
Who may act as admin is decided by the leader lease (fencing); these rules
decide who may *try*: the best-scoring live candidate, subject to the
stability windows.

Stability: measured scores are noisy (CPU load sampled every heartbeat), so
every participant announces a *smoothed* score (:class:`ScoreSmoother`), and a
sitting admin is challenged only by a candidate whose smoothed total beats
its own by more than ``challenge_margin`` (hysteresis). With no admin alive
the best smoothed score wins outright.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ADMIN_STEPPED_DOWN",
    "COMPONENTS",
    "DEFAULT_CHALLENGE_MARGIN",
    "DEFAULT_SCORE_QUANTUM",
    "DEFAULT_WEIGHTS",
    "SMOOTHING_HEARTBEATS",
    "Action",
    "Candidate",
    "ElectionRules",
    "ElectionStarted",
    "Score",
    "ScoreSmoother",
    "State",
    "StepDown",
    "StepDownReason",
    "Timings",
    "Trigger",
    "normalise",
    "quantise",
    "ranking_key",
]


class State(StrEnum):
    IDLE = "idle"
    DISCOVERING = "discovering"
    ELECTING = "electing"
    RECONSTRUCTING_KEYS = "reconstructing_keys"
    COMPLETE = "complete"


class Trigger(StrEnum):
    ADMIN_HEARTBEAT_TIMEOUT = "admin_heartbeat_timeout"
    NO_ADMIN_DISCOVERED = "no_admin_discovered"
    SPLIT_BRAIN_DETECTED = "split_brain_detected"
    QUORUM_RESTORED = "quorum_restored"
    MANUAL_TRIGGER = "manual_trigger"


class StepDownReason(StrEnum):
    """Why an admin gave up (or lost) its seat; the bounded label of the step-down metric."""

    CHALLENGE = "challenge"  # a candidate beats it by more than the margin after min_tenure
    SUPERSEDED = "superseded"  # another admin holds a higher term
    REQUESTED = "requested"  # POST /v1/stepdown
    MANUAL = "manual"  # a manual election
    LICENSE_UNAVAILABLE = "license_unavailable"  # its license seat went away
    INELIGIBLE = "ineligible"  # it may no longer stand for another reason
    LEASE_LOST = "lease_lost"  # its lease lapsed (a pause, or the bus was unreachable)
    SHUTDOWN = "shutdown"


#: Not one of the five triggers: the admin announced a step-down, so the others need not wait
#: for its heartbeats to run out. Elections it starts carry this label and the step-down reason.
ADMIN_STEPPED_DOWN = "admin_stepped_down"

#: a challenge needs the challenger's smoothed total to beat the admin's by more than this
DEFAULT_CHALLENGE_MARGIN = 0.05
#: components are announced rounded to this step, so that the last digits never differ
DEFAULT_SCORE_QUANTUM = 0.01
#: the smoothing time constant, in heartbeats, when none is configured
SMOOTHING_HEARTBEATS = 20


COMPONENTS = ("uptime", "capabilities", "resources", "network", "experience")
DEFAULT_WEIGHTS = {
    "uptime": 0.30,
    "capabilities": 0.20,
    "resources": 0.20,
    "network": 0.15,
    "experience": 0.15,
}


@dataclass(frozen=True)
class Score:
    """Five components in [0, 1] and their weighted total."""

    components: dict[str, float]
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            value = self.components.get(name, 0.0)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score component {name}={value} is outside [0, 1]")

    @property
    def total(self) -> float:
        weight_sum = sum(self.weights.get(n, 0.0) for n in COMPONENTS) or 1.0
        return (
            sum(self.weights.get(n, 0.0) * self.components.get(n, 0.0) for n in COMPONENTS)
            / weight_sum
        )


def normalise(value: float, full: float) -> float:
    """Map ``value`` onto [0, 1], saturating at ``full`` (e.g. uptime over 24 h)."""
    if full <= 0:
        return 0.0
    return max(0.0, min(1.0, value / full))


def quantise(value: float, quantum: float) -> float:
    """Round ``value`` to a multiple of ``quantum`` (0 leaves it alone), kept in [0, 1]."""
    if quantum <= 0:
        return max(0.0, min(1.0, value))
    return max(0.0, min(1.0, round(round(value / quantum) * quantum, 9)))


@dataclass
class ScoreSmoother:
    """An exponential moving average of each component over time, then quantised.

    ``tau`` is the time constant in seconds: a sample ``dt`` after the previous
    one moves the average by ``1 - exp(-dt / tau)`` of the difference, so the
    result does not depend on how often samples come. The first sample is
    taken as it is.
    """

    tau: float
    quantum: float = DEFAULT_SCORE_QUANTUM
    averages: dict[str, float] = field(default_factory=dict)
    last_at: float | None = None

    def update(self, components: dict[str, float], now: float) -> dict[str, float]:
        if self.last_at is None or self.tau <= 0:
            self.averages = dict(components)
        else:
            alpha = 1.0 - math.exp(-max(0.0, now - self.last_at) / self.tau)
            for name, value in components.items():
                previous = self.averages.get(name, value)
                self.averages[name] = previous + alpha * (value - previous)
        self.last_at = now
        return {name: quantise(value, self.quantum) for name, value in self.averages.items()}


def ranking_key(node_id: str, total: float) -> tuple[float, str]:
    """Higher total first; on a tie the lowest node id wins (sorted ascending by this key)."""
    return (-round(total, 9), node_id)


@dataclass(frozen=True)
class Timings:
    heartbeat: float = 0.3
    #: an admin (or candidate) not heard from for this long is gone
    failover: float = 0.9
    lease_ttl: float = 1.0
    #: at start, how long to listen for an existing admin before electing
    grace: float = 0.6
    #: randomized delay before a node acts on an election it triggered
    jitter: float = 0.15
    #: a new admin is not challenged by a higher score before this tenure
    min_tenure: float = 5.0
    #: elections (admin changes by challenge) no more often than this
    min_interval: float = 2.0

    @classmethod
    def profile(cls, name: str) -> Timings:
        if name == "default":
            return cls()
        if name == "chorus-compat":
            # CHORUS: heartbeat every 5 s, failover after 15 s; minimum terms 30 s / 45 s
            return cls(
                heartbeat=5.0,
                failover=15.0,
                lease_ttl=15.0,
                grace=10.0,
                jitter=2.0,
                min_tenure=45.0,
                min_interval=30.0,
            )
        raise ValueError(f"unknown election profile {name!r}: use 'default' or 'chorus-compat'")


@dataclass
class Candidate:
    node_id: str
    total: float
    components: dict[str, float]
    seen_at: float
    eligible: bool = True
    #: since when it has been heard without a gap of ``failover`` (a challenger must have
    #: been around for ``min_tenure``, so that a fresh node's first samples never win)
    live_since: float = 0.0


@dataclass(frozen=True)
class ElectionStarted:
    #: a :class:`Trigger` member, or ``ADMIN_STEPPED_DOWN``
    trigger: str
    at: float
    #: for ``ADMIN_STEPPED_DOWN``: who stepped down and why
    stepped_down: str | None = None
    reason: StepDownReason | None = None


@dataclass(frozen=True)
class StepDown:
    reason: StepDownReason
    detail: str
    #: for a challenge: the challenger, its total and the admin's own total
    challenger: str | None = None
    challenger_total: float | None = None
    admin_total: float | None = None


Action = ElectionStarted | StepDown


@dataclass
class ElectionRules:
    node_id: str
    timings: Timings
    eligible_self: bool = True
    challenge_margin: float = DEFAULT_CHALLENGE_MARGIN
    rng: random.Random = field(default_factory=random.Random)
    state: State = State.IDLE
    started_at: float = 0.0
    candidates: dict[str, Candidate] = field(default_factory=dict)
    admin: str | None = None
    admin_term: int = 0
    admin_seen_at: float = 0.0
    admin_since: float = 0.0
    i_am_admin: bool = False
    last_election_at: float = float("-inf")
    pending: ElectionStarted | None = None
    delay: float = 0.0
    hold_until: float = 0.0

    # -- observations -------------------------------------------------------

    def start(self, now: float) -> None:
        self.state = State.DISCOVERING
        self.started_at = now

    def on_candidacy(
        self,
        node_id: str,
        total: float,
        components: dict[str, float],
        now: float,
        eligible: bool = True,
    ) -> None:
        known = self.candidates.get(node_id)
        fresh = known is None or now - known.seen_at >= self.timings.failover
        since = now if fresh or known is None else known.live_since
        self.candidates[node_id] = Candidate(node_id, total, components, now, eligible, since)

    def on_heartbeat(self, node_id: str, term: int, now: float) -> list[Action]:
        actions: list[Action] = []
        if (
            self.admin is not None
            and node_id != self.admin
            and now - self.admin_seen_at < self.timings.failover
        ):
            # two admins heard within one failover window
            if term > self.admin_term:
                actions.append(self._trigger(Trigger.SPLIT_BRAIN_DETECTED, now))
            elif self.i_am_admin and term < self.admin_term:
                pass  # a stale admin; its own rules make it step down
        if (
            term >= self.admin_term
            or self.admin is None
            or now - self.admin_seen_at >= self.timings.failover
        ):
            if node_id != self.admin:
                self.admin_since = now
            self.admin, self.admin_term, self.admin_seen_at = node_id, term, now
            self.state = State.COMPLETE
            self.pending = None
        if self.i_am_admin and node_id != self.node_id and term > 0:
            actions.append(
                StepDown(
                    StepDownReason.SUPERSEDED,
                    f"another admin {node_id} holds term {term} (ours {self.admin_term})",
                )
            )
        return actions

    def on_stepdown(
        self, node_id: str, reason: StepDownReason, now: float
    ) -> ElectionStarted | None:
        """The admin announced that it stepped down: elect now instead of waiting out its
        heartbeats. An announcement from anyone but the admin we follow changes nothing."""
        if node_id != self.admin or node_id == self.node_id:
            return None
        self.admin = None
        self.admin_seen_at = float("-inf")
        started = ElectionStarted(ADMIN_STEPPED_DOWN, now, node_id, reason)
        self._start_round(started)
        return started

    def on_discovery_response(self, admin: str, term: int, now: float) -> None:
        self.on_heartbeat(admin, term, now)

    def became_admin(self, term: int, now: float) -> None:
        self.i_am_admin = True
        self.admin, self.admin_term, self.admin_seen_at, self.admin_since = (
            self.node_id,
            term,
            now,
            now,
        )
        self.state = State.COMPLETE
        self.last_election_at = now
        self.pending = None

    def lost_admin(self, now: float) -> None:
        self.i_am_admin = False
        if self.admin == self.node_id:
            self.admin = None
        self.hold_until = now + self.timings.failover  # let someone else take it

    def stepped_down(
        self, reason: StepDownReason, now: float, hold: bool = True
    ) -> ElectionStarted:
        """This participant gave up (or lost) the seat: hold back (unless ``hold`` is false)
        and take part in the election that follows, labelled with the reason."""
        self.lost_admin(now)
        if not hold:
            self.hold_until = now
        self.admin_seen_at = float("-inf")
        started = ElectionStarted(ADMIN_STEPPED_DOWN, now, self.node_id, reason)
        self._start_round(started)
        return started

    def manual(self, now: float) -> ElectionStarted:
        return self._trigger(Trigger.MANUAL_TRIGGER, now)

    def reconnected(self, now: float) -> ElectionStarted:
        return self._trigger(Trigger.QUORUM_RESTORED, now)

    def on_election_started(self, trigger: Trigger, now: float) -> None:
        """Another participant announced an election: take part in it."""
        if self.pending is None:
            self._trigger(trigger, now)

    # -- decisions --------------------------------------------------------------

    def _trigger(self, trigger: Trigger, now: float) -> ElectionStarted:
        started = ElectionStarted(trigger, now)
        self._start_round(started)
        return started

    def _start_round(self, started: ElectionStarted) -> None:
        self.pending = started
        # randomized, so that nodes triggering together do not all act at once
        self.delay = self.timings.jitter * (0.5 + self.rng.random())
        self.state = State.ELECTING

    def may_stand(self, now: float) -> bool:
        """Whether this participant announces itself eligible: not while it is ineligible,
        nor while it holds back after giving up the seat (so another takes it)."""
        return self.eligible_self and now >= self.hold_until

    def live_candidates(self, now: float) -> list[Candidate]:
        return [
            c
            for c in self.candidates.values()
            if c.eligible and now - c.seen_at < self.timings.failover
        ]

    def best(self, now: float) -> Candidate | None:
        live = self.live_candidates(now)
        return min(live, key=lambda c: ranking_key(c.node_id, c.total)) if live else None

    def tick(self, now: float) -> list[Action]:
        """Advance time: detect a lost admin, finish discovery, decide on stepping down."""
        actions: list[Action] = []
        admin_alive = self.admin is not None and (
            self.i_am_admin or now - self.admin_seen_at < self.timings.failover
        )
        if self.state is State.DISCOVERING and not admin_alive:
            if now - self.started_at >= self.timings.grace:
                actions.append(self._trigger(Trigger.NO_ADMIN_DISCOVERED, now))
        elif self.state is State.COMPLETE and not admin_alive:
            self.admin = None
            actions.append(self._trigger(Trigger.ADMIN_HEARTBEAT_TIMEOUT, now))
        if self.i_am_admin:
            challenge = self.challenge(now)
            if challenge is not None:
                actions.append(challenge)
        return actions

    def challenge(self, now: float) -> StepDown | None:
        """A step-down for the best live candidate if it beats this admin's smoothed total
        by more than ``challenge_margin``, after ``min_tenure`` and ``min_interval``, and
        has itself been heard for ``min_tenure``. Anything closer is noise."""
        mine = self.candidates.get(self.node_id)
        best = self.best(now)
        if (
            mine is None
            or best is None
            or best.node_id == self.node_id
            or now - self.admin_since < self.timings.min_tenure
            or now - self.last_election_at < self.timings.min_interval
            or now - best.live_since < self.timings.min_tenure
            or best.total - mine.total <= self.challenge_margin
        ):
            return None
        return StepDown(
            StepDownReason.CHALLENGE,
            f"{best.node_id} scores {best.total:.4f} against {self.node_id}'s "
            f"{mine.total:.4f}, more than the margin {self.challenge_margin:g}",
            challenger=best.node_id,
            challenger_total=best.total,
            admin_total=mine.total,
        )

    def next_deadline(self, now: float) -> float | None:
        """The next moment ``tick`` or ``may_acquire`` may decide something new: discovery
        ending, the admin's heartbeats running out, a pending election's delay passing.

        Waking exactly then, rather than at the next heartbeat, takes up to a heartbeat
        off every failover.
        """
        times = []
        if self.state is State.DISCOVERING:
            times.append(self.started_at + self.timings.grace)
        if self.admin is not None and not self.i_am_admin:
            times.append(self.admin_seen_at + self.timings.failover)
        if self.pending is not None:
            times.append(self.pending.at + self.delay)
        future = [t for t in times if t > now]
        return min(future) if future else None

    def may_acquire(self, now: float) -> bool:
        """Whether this participant should try for the lease now."""
        if not self.may_stand(now):
            return False
        if self.state in (State.IDLE, State.DISCOVERING):
            return False
        if (
            self.admin is not None
            and self.admin != self.node_id
            and now - self.admin_seen_at < self.timings.failover
        ):
            return False
        if self.pending is not None and now - self.pending.at < self.delay:
            return False  # let every candidacy of this round arrive first
        best = self.best(now)
        return best is not None and best.node_id == self.node_id
