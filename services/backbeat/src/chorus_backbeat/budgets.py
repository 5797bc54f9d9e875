"""Beat budgets from history, overruns, agent drift and silence, bar reports (no I/O)."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Literal

from chorus_common.backbeat import BarReport, Phase, StatusClaim

__all__ = [
    "AgentPulse",
    "AgentWatch",
    "BarTally",
    "Health",
    "OperationBook",
    "OperationRecord",
    "percentile",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class OperationRecord:
    operation_id: str
    agent: str
    kind: str
    budget_beats: int | None
    phases: list[dict[str, object]] = field(default_factory=list)
    started_beat: int = 0
    started_at: float = 0.0
    ended_beat: int | None = None
    error: str | None = None
    overrun: bool = False

    @property
    def phase(self) -> str:
        return str(self.phases[-1]["phase"]) if self.phases else "started"

    def as_dict(self) -> dict[str, object]:
        return {
            "operation_id": self.operation_id,
            "agent": self.agent,
            "kind": self.kind,
            "budget_beats": self.budget_beats,
            "phase": self.phase,
            "phases": self.phases,
            "beats": None if self.ended_beat is None else self.ended_beat - self.started_beat,
            "error": self.error,
            "overrun": self.overrun,
        }


class OperationBook:
    """Operations by id, durations by kind, budgets estimated as a percentile of durations."""

    def __init__(self, quantile: float = 0.95, min_samples: int = 5, keep: int = 5000) -> None:
        self.quantile, self.min_samples = quantile, min_samples
        self.operations: dict[str, OperationRecord] = {}
        self._order: deque[str] = deque(maxlen=keep)
        self.durations: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=500))

    def budget(self, kind: str) -> int | None:
        history = list(self.durations[kind])
        if len(history) < self.min_samples:
            return None
        return max(1, math.ceil(percentile(history, self.quantile)))

    def apply(self, claim: StatusClaim, pulse_index: int) -> OperationRecord | None:
        """Fold a claim in; returns the record when it just ended (completed or failed)."""
        if claim.operation_id is None or claim.phase is None or claim.kind is None:
            return None
        record = self.operations.get(claim.operation_id)
        if record is None:
            if len(self._order) == self._order.maxlen:
                self.operations.pop(self._order[0], None)
            record = OperationRecord(
                claim.operation_id,
                claim.agent_id,
                claim.kind,
                claim.budget_beats,
                started_beat=pulse_index,
                started_at=claim.at,
            )
            self.operations[claim.operation_id] = record
            self._order.append(claim.operation_id)
        record.phases.append(
            {"phase": claim.phase.value, "beat_index": claim.beat_index, "at": claim.at}
        )
        if claim.phase in (Phase.COMPLETED, Phase.FAILED):
            record.ended_beat = pulse_index
            record.error = claim.error
            taken = record.ended_beat - record.started_beat
            budget = (
                record.budget_beats if record.budget_beats is not None else self.budget(record.kind)
            )
            record.overrun = budget is not None and taken > budget
            if claim.phase is Phase.COMPLETED:
                self.durations[record.kind].append(float(taken))
            return record
        return None


Health = Literal["on_time", "drifting", "silent"]


@dataclass
class AgentPulse:
    last_index: int
    seen_at_index: int
    drift_beats: int = 0


class AgentWatch:
    """An agent is drifting when its beat index strays from the pulse, silent when it stops claiming."""

    def __init__(self, drift_tolerance: int = 2, silence_beats: int = 4) -> None:
        self.drift_tolerance, self.silence_beats = drift_tolerance, silence_beats
        self.agents: dict[str, AgentPulse] = {}

    def apply(self, claim: StatusClaim, pulse_index: int) -> None:
        self.agents[claim.agent_id] = AgentPulse(
            claim.beat_index, pulse_index, claim.beat_index - pulse_index
        )

    def health(self, agent: str, pulse_index: int) -> tuple[Health, AgentPulse]:
        state = self.agents[agent]
        if pulse_index - state.seen_at_index > self.silence_beats:
            return "silent", state
        if abs(state.drift_beats) > self.drift_tolerance:
            return "drifting", state
        return "on_time", state


@dataclass
class BarTally:
    window_id: str
    from_beat: int
    agents: set[str] = field(default_factory=set)
    on_time_reviews: int = 0
    help_fulfilled: int = 0

    def apply(self, claim: StatusClaim, drift_tolerance: int, pulse_index: int) -> None:
        self.agents.add(claim.agent_id)
        if claim.state == "reviewing" and abs(claim.beat_index - pulse_index) <= drift_tolerance:
            self.on_time_reviews += 1
        if claim.state == "helping" and claim.progress >= 1.0:
            self.help_fulfilled += 1

    def close(self, to_beat: int, tempo_drift_ms: float) -> BarReport:
        return BarReport(
            window_id=self.window_id,
            from_beat=self.from_beat,
            to_beat=to_beat,
            agents_reporting=len(self.agents),
            on_time_reviews=self.on_time_reviews,
            help_promises_fulfilled=self.help_fulfilled,
            secret_rotations_ok=True,
            tempo_drift_ms=tempo_drift_ms,
        )
