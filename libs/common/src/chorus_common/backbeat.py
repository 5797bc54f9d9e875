"""BACKBEAT wire contracts, the hybrid logical clock, and the operation tracker every service uses.

The pulse publishes ``BeatFrame``s on ``chorus.backbeat.beat``; anything that
does work wraps it in :meth:`Tracker.operation`, which reports the six phases
(started, connecting, negotiating, executing, completed, failed) as
``StatusClaim``s on ``chorus.backbeat.status.<agent>`` with the beat index it
had reached. Reporting is a core NATS publish: cheap when nobody listens, and
kept by the ``CHORUS_BACKBEAT`` stream for whoever does.

Beat frames are signed by the backbeat replica that sends them (a detached
signature, chorus_common.service_signing); the tracker follows only frames a
registered backbeat replica signed, so a plain NATS client cannot move an agent's
beat or tempo.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chorus_common.service_signing import ForgedKind, ServiceVerifier

if TYPE_CHECKING:
    from chorus_common.bus import Received

__all__ = [
    "BAR_LENGTH",
    "BarReport",
    "BeatFrame",
    "ClaimState",
    "HybridLogicalClock",
    "Operation",
    "Phase",
    "StatusClaim",
    "Tracker",
    "beat_phase",
    "hlc_key",
    "utc",
    "window_id",
]

log = logging.getLogger("chorus.backbeat")

BAR_LENGTH = 120  # beats per bar (SPEC.md §10)
DEFAULT_TEMPO_BPM = 2.0


class Phase(StrEnum):
    STARTED = "started"
    CONNECTING = "connecting"
    NEGOTIATING = "negotiating"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"


PHASE_ORDER = list(Phase)
STATE_OF_PHASE: dict[Phase, ClaimState] = {
    Phase.STARTED: "planning",
    Phase.CONNECTING: "planning",
    Phase.NEGOTIATING: "planning",
    Phase.EXECUTING: "executing",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
}


@dataclass
class HybridLogicalClock:
    """``wall:logical:node`` in hex: causally ordered even when wall clocks disagree slightly."""

    node: str
    wall_ms: int = 0
    logical: int = 0

    def now(self, physical_ms: int | None = None) -> str:
        pt = int(time.time() * 1000) if physical_ms is None else physical_ms
        if pt > self.wall_ms:
            self.wall_ms, self.logical = pt, 0
        else:
            self.logical += 1
        return self.format()

    def observe(self, stamp: str, physical_ms: int | None = None) -> str:
        """Merge a received stamp (the receive rule of HLC)."""
        wall_hex, logical_hex, _ = stamp.split(":", 2)
        remote_wall, remote_logical = int(wall_hex, 16), int(logical_hex, 16)
        pt = int(time.time() * 1000) if physical_ms is None else physical_ms
        wall = max(self.wall_ms, remote_wall, pt)
        if wall == self.wall_ms == remote_wall:
            self.logical = max(self.logical, remote_logical) + 1
        elif wall == self.wall_ms:
            self.logical += 1
        elif wall == remote_wall:
            self.logical = remote_logical + 1
        else:
            self.logical = 0
        self.wall_ms = wall
        return self.format()

    def format(self) -> str:
        return f"{self.wall_ms:x}:{self.logical:x}:{self.node}"


def hlc_key(stamp: str) -> tuple[int, int, str]:
    wall, logical, node = stamp.split(":", 2)
    return int(wall, 16), int(logical, 16), node


class BeatFrame(BaseModel):
    """``backbeat.beatframe.v1``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["backbeat.beatframe.v1"] = "backbeat.beatframe.v1"
    cluster_id: str
    beat_index: int = Field(ge=0)
    downbeat: bool
    phase: Literal["plan", "execute", "review"]
    hlc: str
    deadline_at: datetime
    tempo_bpm: float = Field(gt=0)
    window_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    term: int = Field(default=0, ge=0)


ClaimState = Literal[
    "idle", "planning", "executing", "reviewing", "completed", "failed", "blocked", "helping"
]


class StatusClaim(BaseModel):
    """``backbeat.statusclaim.v1``, plus the operation fields of the six-phase telemetry."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["backbeat.statusclaim.v1"] = "backbeat.statusclaim.v1"
    agent_id: str
    task_id: str | None = None
    beat_index: int = Field(ge=0)
    state: Literal[
        "idle", "planning", "executing", "reviewing", "completed", "failed", "blocked", "helping"
    ]
    beats_left: int = Field(default=0, ge=0, le=1000)
    progress: float = Field(default=0.0, ge=0, le=1)
    notes: str = Field(default="", max_length=256)
    hlc: str
    operation_id: str | None = None
    kind: str | None = None
    phase: Phase | None = None
    at: float = Field(default_factory=time.time)
    budget_beats: int | None = Field(default=None, ge=0)
    error: str | None = None


class BarReport(BaseModel):
    """``backbeat.barreport.v1``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["backbeat.barreport.v1"] = "backbeat.barreport.v1"
    window_id: str
    from_beat: int
    to_beat: int
    agents_reporting: int
    on_time_reviews: int
    help_promises_fulfilled: int
    secret_rotations_ok: bool
    tempo_drift_ms: float


def window_id(cluster_id: str, bar: int) -> str:
    """Stable per bar, so every pulse leader names a bar the same way."""
    import hashlib

    return hashlib.sha256(f"{cluster_id}:{bar}".encode()).hexdigest()[:32]


def beat_phase(index: int) -> Literal["plan", "execute", "review"]:
    return ("plan", "execute", "review")[index % 3]


class Operation:
    def __init__(
        self, tracker: Tracker, kind: str, budget_beats: int | None, task_id: str | None
    ) -> None:
        self.tracker = tracker
        self.kind = kind
        self.budget_beats = budget_beats
        self.task_id = task_id
        self.operation_id = secrets.token_hex(8)
        self.phases: list[Phase] = []

    async def phase(self, phase: Phase, notes: str = "", error: str | None = None) -> None:
        self.phases.append(phase)
        await self.tracker.claim(self, phase, notes, error)


class Tracker:
    """Follows the beat and reports operations; one per process (agent)."""

    def __init__(self, bus: Any, agent_id: str) -> None:
        self.bus = bus
        self.agent_id = agent_id
        self.hlc = HybridLogicalClock(agent_id)
        self.beat_index = 0
        self.tempo_bpm = DEFAULT_TEMPO_BPM
        self.offset = 0  # tests shift an agent's clock to show drift
        self._sub: Any = None
        self.verifier: ServiceVerifier | None = None

    async def start(self) -> None:
        from chorus_common.topics import BEATS  # its models are this module's

        self.verifier = await ServiceVerifier.open(self.bus)
        self._sub = await self.bus.topic(BEATS).subscribe(self._on_beat)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_beat(self, msg: Received[BeatFrame]) -> None:
        with contextlib.suppress(Exception):
            assert self.verifier is not None
            signer = await self.verifier.check_detached(
                ForgedKind.BEAT, "backbeat", msg.subject, msg.data, msg.headers
            )
            if signer is None:
                return  # forged (counted) or a copy already followed
            frame = msg.value
            self.beat_index = max(self.beat_index, frame.beat_index)
            self.tempo_bpm = frame.tempo_bpm
            self.hlc.observe(frame.hlc)

    async def claim(
        self, op: Operation, phase: Phase, notes: str = "", error: str | None = None
    ) -> None:
        claim = StatusClaim(
            agent_id=self.agent_id,
            task_id=op.task_id,
            beat_index=max(0, self.beat_index + self.offset),
            state=STATE_OF_PHASE[phase],
            notes=notes[:256],
            hlc=self.hlc.now(),
            operation_id=op.operation_id,
            kind=op.kind,
            phase=phase,
            budget_beats=op.budget_beats,
            error=error[:500] if error else None,
        )
        try:
            await self._publish(claim)
        except Exception as exc:  # telemetry never breaks the work it describes
            log.debug("status claim not sent: %s", exc)

    async def heartbeat(self, state: ClaimState = "idle", notes: str = "") -> None:
        """A plain status claim (no operation), so an idle agent is not reported silent."""
        claim = StatusClaim(
            agent_id=self.agent_id,
            beat_index=max(0, self.beat_index + self.offset),
            state=state,
            notes=notes,
            hlc=self.hlc.now(),
        )
        with contextlib.suppress(Exception):
            await self._publish(claim)

    async def _publish(self, claim: StatusClaim) -> None:
        """On ``chorus.backbeat.status.<agent>`` (:data:`chorus_common.topics.STATUS_CLAIMS`)."""
        from chorus_common.topics import STATUS_CLAIMS  # its models are this module's

        await self.bus.topic(STATUS_CLAIMS).publish(claim, agent=self.agent_id)

    @contextlib.asynccontextmanager
    async def operation(
        self, kind: str, budget_beats: int | None = None, task_id: str | None = None
    ) -> AsyncIterator[Operation]:
        """Report ``started`` now, ``completed`` or ``failed`` (with the error) at the end."""
        op = Operation(self, kind, budget_beats, task_id)
        await op.phase(Phase.STARTED)
        try:
            yield op
        except BaseException as exc:
            await op.phase(Phase.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        await op.phase(Phase.COMPLETED)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
