"""HTTP routes of the coordinator: the task board, scored candidates, agents, coordination.

Every endpoint is a module function; what it works on (the board, the agent pool, the
coordination state, the metrics) arrives as a dependency the service provided.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from chorus_common.dependencies import Provided, Requires
from chorus_common.errors import ConflictError, NotFoundError
from chorus_common.identity import Scope
from chorus_common.service import problem_responses
from chorus_coordinator.agents import AgentPool
from chorus_coordinator.board import TASK_ID, TaskBoard
from chorus_coordinator.coordination import Coordination
from chorus_coordinator.documents import AgentAction
from chorus_coordinator.metrics import CoordinatorMetrics
from chorus_coordinator.sessions import Kind

__all__ = [
    "AgentAction",
    "AgentList",
    "AgentSummary",
    "CandidateCard",
    "CandidateList",
    "DependencyDoc",
    "DependencyList",
    "SessionDetail",
    "SessionList",
    "SessionSummary",
    "Task",
    "TaskEvent",
    "TaskIn",
    "TaskPage",
    "TranscriptEntry",
    "router",
]

router = APIRouter()

TaskId = PathParam(pattern=TASK_ID, description="the task id (letters, digits, '_', '-')")
TaskStatus = Literal["open", "claimed", "completed"]

Board = Annotated[TaskBoard, Provided(TaskBoard)]
Agents = Annotated[AgentPool, Provided(AgentPool)]
Coord = Annotated[Coordination, Provided(Coordination)]
Metrics = Annotated[CoordinatorMetrics, Provided(CoordinatorMetrics)]

# -- request bodies ---------------------------------------------------------------------------


class TaskIn(BaseModel):
    id: str = Field(pattern=TASK_ID)
    repository: str = Field(min_length=1)
    project: str = Field(default="default", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    title: str = Field(min_length=1)
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    required_capabilities: list[str] = Field(default_factory=list)
    required_expertise: list[str] = Field(default_factory=list)
    role: str | None = None
    priority: int = Field(default=3, ge=1, le=5)
    dependencies: list[str] = Field(default_factory=list)


# -- response documents -----------------------------------------------------------------------


class TaskEvent(BaseModel):
    """One entry of a task's history; ``agent`` and ``term`` where the event has them."""

    event: Literal["announced", "claimed", "allocated", "lease_expired", "completed", "failed"]
    at: float = Field(description="Unix time")
    agent: str | None = None
    term: int | None = Field(default=None, description="the leader's term of an allocation")


class Task(BaseModel):
    """A task as the board keeps it: what was announced, and who holds it."""

    id: str
    repository: str
    project: str
    title: str
    description: str
    labels: list[str]
    required_capabilities: list[str]
    required_expertise: list[str]
    role: str | None
    priority: int
    dependencies: list[str]
    status: TaskStatus
    assignee: str | None
    claim_expires_at: float | None = Field(description="Unix time the holder's claim lapses")
    term: int | None = Field(description="the leader's term, if the leader allocated it")
    history: list[TaskEvent]
    progress: float = Field(default=0.0, description="0-1; present once the holder reported")


class TaskPage(BaseModel):
    tasks: list[Task]
    next: str | None = Field(description="the id to pass as `after` for the next page")


class CandidateCard(BaseModel):
    """One agent's score for a task, and why it is not eligible (if it is not)."""

    agent: str
    total: float
    breakdown: dict[str, float]
    eligible: bool
    why_not: str | None


class CandidateList(BaseModel):
    task: str
    candidates: list[CandidateCard]


class AgentSummary(BaseModel):
    agent: str
    capabilities: list[str]
    roles: list[str]
    current_tasks: int
    max_tasks: int
    status: str


class AgentList(BaseModel):
    agents: list[AgentSummary]


class SessionSummary(BaseModel):
    session_id: str
    type: Literal["dependency", "conflict", "planning"]
    status: Literal["active", "resolved", "escalated"]
    participants: list[str]
    messages: int
    reason: str


class SessionList(BaseModel):
    sessions: list[SessionSummary]


class TranscriptEntry(BaseModel):
    agent: str
    kind: Kind
    content: str
    at: float


class SessionDetail(BaseModel):
    session_id: str
    status: Literal["active", "resolved", "escalated"]
    reason: str
    participants: list[str]
    transcript: list[TranscriptEntry]


class DependencyDoc(BaseModel):
    rule: str
    confidence: float
    reason: str
    task_a: str = Field(description="project:task of the announced task")
    task_b: str = Field(description="project:task of the task it depends on")
    repositories: list[str] = Field(description="the two tasks' repositories, in that order")


class DependencyList(BaseModel):
    dependencies: list[DependencyDoc]


# -- tasks ------------------------------------------------------------------------------------


@router.post(
    "/v1/tasks",
    dependencies=[Requires(Scope.ADMIN)],
    status_code=201,
    tags=["tasks"],
    responses=problem_responses(409, 503),
    response_model=Task,
    response_model_exclude_unset=True,
)
async def create_task(task: TaskIn, coordination: Coord) -> dict[str, Any]:
    """Announce a task; cross-repository dependencies open coordination sessions."""
    return (await coordination.announce(task.model_dump())).model_dump()


@router.get(
    "/v1/tasks",
    tags=["tasks"],
    responses=problem_responses(503),
    response_model=TaskPage,
    response_model_exclude_unset=True,
)
async def list_tasks(
    board: Board,
    status: TaskStatus | None = None,
    after: Annotated[
        str | None, Query(description="the `next` of the previous page: ids after it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Tasks in id order, a page at a time; `next` is null on the last page.

    A board keeps every finished task, so one answer holding them all would grow
    without bound.
    """
    tasks = sorted(
        (
            t
            for t in await board.all()
            if (status is None or t.status == status) and (after is None or t.id > after)
        ),
        key=lambda t: t.id,
    )
    page = tasks[:limit]
    return {
        "tasks": [t.model_dump() for t in page],
        "next": page[-1].id if len(tasks) > limit else None,
    }


@router.get(
    "/v1/tasks/{task_id}",
    tags=["tasks"],
    responses=problem_responses(404, 503),
    response_model=Task,
    response_model_exclude_unset=True,
)
async def get_task(board: Board, task_id: str = TaskId) -> dict[str, Any]:
    return (await board.get(task_id))[0].model_dump()


@router.get(
    "/v1/tasks/{task_id}/candidates",
    tags=["tasks"],
    responses=problem_responses(404, 503),
    response_model=CandidateList,
)
async def candidates(board: Board, agents: Agents, task_id: str = TaskId) -> dict[str, Any]:
    """Each available agent's score breakdown: why an agent gets (or does not get) a task."""
    task, _ = await board.get(task_id)
    return {"task": task_id, "candidates": await agents.candidates(task)}


busy = problem_responses(404, 409, 503)


@router.post(
    "/v1/tasks/{task_id}/claim",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["tasks"],
    responses=busy,
    response_model=Task,
    response_model_exclude_unset=True,
)
async def claim(
    body: AgentAction, board: Board, metrics: Metrics, task_id: str = TaskId
) -> dict[str, Any]:
    try:
        return (await board.claim(task_id, body.agent)).model_dump()
    except ConflictError:
        metrics.conflicts.inc()
        raise


@router.post(
    "/v1/tasks/{task_id}/progress",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["tasks"],
    responses=busy,
    response_model=Task,
    response_model_exclude_unset=True,
)
async def progress(body: AgentAction, board: Board, task_id: str = TaskId) -> dict[str, Any]:
    return (await board.progress(task_id, body.agent, body.progress)).model_dump()


@router.post(
    "/v1/tasks/{task_id}/complete",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["tasks"],
    responses=busy,
    response_model=Task,
    response_model_exclude_unset=True,
)
async def complete(body: AgentAction, board: Board, task_id: str = TaskId) -> dict[str, Any]:
    return (await board.complete(task_id, body.agent, body.success)).model_dump()


# -- agents -----------------------------------------------------------------------------------


@router.get("/v1/agents", tags=["agents"], responses=problem_responses(503))
async def agents(pool: Agents) -> AgentList:
    return AgentList(
        agents=[
            AgentSummary(
                agent=a.agent,
                capabilities=sorted(a.capabilities),
                roles=sorted(a.roles),
                current_tasks=a.current_tasks,
                max_tasks=a.max_tasks,
                status=a.status,
            )
            for a in await pool.agents()
        ]
    )


# -- coordination -----------------------------------------------------------------------------


@router.get("/v1/sessions", tags=["coordination"])
async def sessions(coordination: Coord) -> SessionList:
    return SessionList(
        sessions=[
            SessionSummary(
                session_id=s.session_id,
                type=s.session_type,
                status=s.status,
                participants=s.participants,
                messages=len(s.transcript),
                reason=s.outcome_reason,
            )
            for s in coordination.sessions.values()
        ]
    )


@router.get("/v1/sessions/{session_id}", tags=["coordination"], responses=problem_responses(404))
async def session(coordination: Coord, session_id: str) -> SessionDetail:
    s = coordination.sessions.get(session_id)
    if s is None:
        raise NotFoundError(f"no session {session_id!r}")
    return SessionDetail(
        session_id=s.session_id,
        status=s.status,
        reason=s.outcome_reason,
        participants=s.participants,
        transcript=[
            TranscriptEntry(agent=m.agent, kind=m.kind, content=m.content, at=m.at)
            for m in s.transcript
        ],
    )


@router.get("/v1/dependencies", tags=["coordination"], response_model=DependencyList)
async def dependencies(coordination: Coord) -> dict[str, Any]:
    return {"dependencies": [d.__dict__ for d in coordination.dependencies]}
