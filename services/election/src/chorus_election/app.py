"""HTTP routes of the election service: show the election, and steer it (admin scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from chorus_common.dependencies import Provided, Requires
from chorus_common.election import Participant, StepDownReason
from chorus_common.errors import ConflictError
from chorus_common.identity import Scope
from chorus_common.service import problem_responses

__all__ = [
    "AdminView",
    "CandidateView",
    "CandidatesPage",
    "ElectionCandidate",
    "ElectionView",
    "ElectionsPage",
    "ManualElection",
    "ScoreView",
    "SteppedDown",
    "router",
]

router = APIRouter(tags=["election"])

#: every election route needs the participant, which exists once set-up has run
STARTING = problem_responses(503)

ParticipantDep = Annotated[Participant, Provided(Participant)]


class ScoreView(BaseModel):
    total: float
    components: dict[str, float]


class AdminView(BaseModel):
    """The admin as this replica sees it."""

    admin: str | None
    term: int | None
    is_self: bool
    eligible: bool
    state: str
    since_seconds: float | None
    score: ScoreView | None


class CandidateView(BaseModel):
    node_id: str
    total: float
    components: dict[str, float]
    eligible: bool
    last_seen_seconds: float
    live: bool


class CandidatesPage(BaseModel):
    candidates: list[CandidateView]


class ElectionCandidate(BaseModel):
    """A live, eligible candidate when the election started."""

    node_id: str
    total: float


class ElectionView(BaseModel):
    trigger: str
    cause: str
    started_at: float
    previous_admin: str | None
    previous_total: float | None
    candidates: list[ElectionCandidate]
    winner_total: float | None
    winner: str | None
    term: int | None
    duration_seconds: float | None


class ElectionsPage(BaseModel):
    elections: list[ElectionView]


class ManualElection(BaseModel):
    started: bool
    trigger: str


class SteppedDown(BaseModel):
    stepped_down: bool
    term: int | None


@router.get("/v1/admin", responses=STARTING)
async def current_admin(participant: ParticipantDep) -> AdminView:
    """The admin as this replica sees it: id, term, tenure and score breakdown."""
    return AdminView.model_validate(participant.admin_view())


@router.get("/v1/candidates", responses=STARTING)
async def candidates(participant: ParticipantDep) -> CandidatesPage:
    return CandidatesPage.model_validate({"candidates": participant.candidates_view()})


@router.get("/v1/elections", responses=STARTING)
async def elections(participant: ParticipantDep) -> ElectionsPage:
    """Recent elections: trigger, candidates, winner, term and duration."""
    return ElectionsPage.model_validate(
        {"elections": [r.as_dict() for r in reversed(participant.history)]}
    )


@router.post(
    "/v1/elections", dependencies=[Requires(Scope.ADMIN)], status_code=202, responses=STARTING
)
async def manual(participant: ParticipantDep) -> ManualElection:
    """Start an election now (trigger ``manual_trigger``); the best candidate wins."""
    await participant.trigger_manual()
    return ManualElection(started=True, trigger="manual_trigger")


@router.post(
    "/v1/stepdown", dependencies=[Requires(Scope.ADMIN)], responses=problem_responses(409, 503)
)
async def stepdown(participant: ParticipantDep) -> SteppedDown:
    """Make this replica give up the admin lease (if it holds it)."""
    if not participant.is_admin:
        raise ConflictError(
            f"{participant.node_id} is not the admin (the admin is {participant.rules.admin}); "
            f"send this to the admin's replica"
        )
    term = participant.term
    await participant.step_down(StepDownReason.REQUESTED)
    return SteppedDown(stepped_down=True, term=term)
