"""The NATS micro endpoints agents call (``chorus.svc.coordinator.{claim,progress,complete}``).

A request is a :class:`~chorus_coordinator.documents.TaskRequest` (the REST body and the
task's id); each answers ``{"ok": true, "task": <the task>}`` (:class:`TaskGranted`) or
``{"ok": false, "error": <problem>}`` (:class:`TaskRefused`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.micro.request import Request as MicroRequest

from chorus_common.bodies import parse_request
from chorus_common.errors import (
    ChorusError,
    ConflictError,
    UnavailableError,
)
from chorus_common.service import MicroHandler
from chorus_coordinator.board import TaskBoard
from chorus_coordinator.documents import TaskGranted, TaskRecord, TaskRefused, TaskRequest
from chorus_coordinator.metrics import CoordinatorMetrics

__all__ = ["TaskEndpoints", "task_request"]

Work = Callable[[TaskRequest], Awaitable[TaskRecord]]


def task_request(data: bytes) -> TaskRequest:
    """The request, or a 422 problem the agent can read (where and what, as REST says it)."""
    return parse_request(TaskRequest, data)


class TaskEndpoints:
    """Claim, progress and complete over NATS: the REST routes' twins, on the same board."""

    def __init__(self, board: TaskBoard, metrics: CoordinatorMetrics) -> None:
        self.board, self.metrics = board, metrics

    def handlers(self) -> dict[str, MicroHandler]:
        return {"claim": self.claim, "progress": self.progress, "complete": self.complete}

    async def _respond(self, request: MicroRequest, work: Work) -> None:
        answer: TaskGranted | TaskRefused
        try:
            answer = TaskGranted(task=await work(task_request(request.data)))
        except UnavailableError as exc:  # the KV did not answer: the agent may retry
            error = UnavailableError(f"the task board did not answer ({exc.detail}); try again")
            answer = TaskRefused(error=error.to_problem())
        except ChorusError as exc:
            if isinstance(exc, ConflictError):
                self.metrics.conflicts.inc()
            answer = TaskRefused(error=exc.to_problem())
        await request.respond(answer.model_dump_json().encode())

    async def claim(self, req: MicroRequest) -> None:
        await self._respond(req, lambda r: self.board.claim(r.task_id, r.agent))

    async def progress(self, req: MicroRequest) -> None:
        await self._respond(req, lambda r: self.board.progress(r.task_id, r.agent, r.progress))

    async def complete(self, req: MicroRequest) -> None:
        await self._respond(req, lambda r: self.board.complete(r.task_id, r.agent, r.success))
