"""HTTP routes of the backbeat service: the tempo, operations on the beat, budgets, agent
health and bar reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from chorus_backbeat.budgets import Health
from chorus_backbeat.pulse import Pulse
from chorus_backbeat.settings import BackbeatSettings
from chorus_backbeat.view import BeatView
from chorus_common.backbeat import BarReport, Phase
from chorus_common.dependencies import Provided, Requires
from chorus_common.errors import NotFoundError, RequestInvalidError
from chorus_common.identity import Scope
from chorus_common.service import problem_responses

__all__ = [
    "AgentHealth",
    "Bars",
    "Budget",
    "Budgets",
    "Operation",
    "Operations",
    "PhaseMark",
    "Tempo",
    "TempoChange",
    "TempoChanged",
    "router",
]

router = APIRouter()

View = Annotated[BeatView, Provided(BeatView)]


class TempoChange(BaseModel):
    tempo_bpm: float = Field(gt=0, le=6000)


class Tempo(BaseModel):
    tempo_bpm: float
    beat_index: int
    period_seconds: float
    bar_length: int
    pulse: bool


class TempoChanged(BaseModel):
    tempo_bpm: float
    next_index: int


class PhaseMark(BaseModel):
    phase: str
    beat_index: int
    at: float


class Operation(BaseModel):
    operation_id: str
    agent: str
    kind: str
    budget_beats: int | None
    phase: str
    phases: list[PhaseMark]
    beats: int | None
    error: str | None
    overrun: bool


class Operations(BaseModel):
    operations: list[Operation]


class Budget(BaseModel):
    beats: int | None
    samples: int


class Budgets(BaseModel):
    budgets: dict[str, Budget]


class AgentHealth(BaseModel):
    agent: str
    health: Health
    last_beat_index: int
    pulse_index: int
    drift_beats: int
    beats_since_last_claim: int


class Bars(BaseModel):
    bars: list[BarReport]


@router.get("/v1/tempo", tags=["backbeat"], responses=problem_responses(503))
async def tempo(
    pulse: Annotated[Pulse, Provided(Pulse)],
    view: View,
    settings: Annotated[BackbeatSettings, Provided(BackbeatSettings)],
) -> Tempo:
    clock, _ = await pulse.clock.read()
    return Tempo(
        tempo_bpm=clock.tempo_bpm,
        beat_index=view.last_index,
        period_seconds=clock.period,
        bar_length=settings.backbeat_bar_length,
        pulse=pulse.is_leader,
    )


@router.put(
    "/v1/tempo",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["backbeat"],
    responses=problem_responses(503),
)
async def put_tempo(body: TempoChange, pulse: Annotated[Pulse, Provided(Pulse)]) -> TempoChanged:
    """Change the tempo; the beat index keeps counting up across the change."""
    clock = await pulse.set_tempo(body.tempo_bpm)
    return TempoChanged(tempo_bpm=clock.tempo_bpm, next_index=clock.base_index)


@router.get("/v1/operations", tags=["backbeat"])
async def operations(
    view: View,
    kind: str | None = None,
    phase: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> Operations:
    if phase is not None and phase not in {p.value for p in Phase}:
        raise RequestInvalidError(f"phase must be one of {[p.value for p in Phase]}")
    items = [
        o.as_dict()
        for o in reversed(view.ops.operations.values())
        if (kind is None or o.kind == kind) and (phase is None or o.phase == phase)
    ]
    return Operations.model_validate({"operations": items[:limit]})


@router.get("/v1/budgets", tags=["backbeat"])
async def budgets(view: View) -> Budgets:
    return Budgets(
        budgets={
            kind: Budget(beats=view.ops.budget(kind), samples=len(history))
            for kind, history in view.ops.durations.items()
        }
    )


@router.get("/v1/agents/{agent}/health", tags=["backbeat"], responses=problem_responses(404))
async def agent_health(agent: str, view: View) -> AgentHealth:
    if agent not in view.watch.agents:
        raise NotFoundError(f"agent {agent!r} has not reported on the beat")
    state, pulse = view.watch.health(agent, view.last_index)
    return AgentHealth(
        agent=agent,
        health=state,
        last_beat_index=pulse.last_index,
        pulse_index=view.last_index,
        drift_beats=pulse.drift_beats,
        beats_since_last_claim=view.last_index - pulse.seen_at_index,
    )


@router.get("/v1/bars", tags=["backbeat"])
async def bars(view: View) -> Bars:
    return Bars.model_validate({"bars": list(reversed(view.bars))})
