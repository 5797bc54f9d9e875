"""The NATS micro endpoints agents call (``chorus.svc.coordinator.{claim,progress,complete}``).

Each answers ``{"ok": true, "task": <the task>}`` or ``{"ok": false, "error": <problem>}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.micro.request import Request as MicroRequest

from chorus_common.errors import (
    ChorusError,
    ConflictError,
    RequestInvalidError,
    UnavailableError,
)
from chorus_common.service import MicroHandler
from chorus_coordinator.board import TASK_ID, TaskBoard
from chorus_coordinator.metrics import CoordinatorMetrics

__all__ = ["TaskEndpoints"]

Work = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _micro_body(data: bytes) -> dict[str, Any]:
    """The JSON object of a micro request, or a 422 problem the agent can read."""
    try:
        doc = json.loads(data or b"{}")
    except (ValueError, RecursionError):
        raise RequestInvalidError("the request is not JSON: send a JSON object") from None
    if not isinstance(doc, dict):
        raise RequestInvalidError("the request must be a JSON object")
    return doc


def _field(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise RequestInvalidError(f"{name} is required (a non-empty string)")
    if name == "task_id" and not re.fullmatch(TASK_ID, value):
        raise RequestInvalidError(f"task_id {value!r} may contain only letters, digits, '_', '-'")
    return value


def _progress(value: Any) -> float:
    try:
        progress = float(value)
    except (TypeError, ValueError):
        raise RequestInvalidError("progress must be a number between 0 and 1") from None
    if not math.isfinite(progress) or not 0 <= progress <= 1:
        raise RequestInvalidError("progress must be a number between 0 and 1")
    return progress


def _success(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestInvalidError("success must be true or false")
    return value


class TaskEndpoints:
    """Claim, progress and complete over NATS: the REST routes' twins, on the same board."""

    def __init__(self, board: TaskBoard, metrics: CoordinatorMetrics) -> None:
        self.board, self.metrics = board, metrics

    def handlers(self) -> dict[str, MicroHandler]:
        return {"claim": self.claim, "progress": self.progress, "complete": self.complete}

    async def _respond(self, request: MicroRequest, work: Work) -> None:
        try:
            doc = await work(_micro_body(request.data))
            await request.respond(json.dumps({"ok": True, "task": doc}).encode())
        except ChorusError as exc:
            if isinstance(exc, ConflictError):
                self.metrics.conflicts.inc()
            await request.respond(json.dumps({"ok": False, "error": exc.to_problem()}).encode())
        except nats.errors.Error as exc:  # the KV did not answer: the agent may retry
            error = UnavailableError(f"the task board did not answer ({exc}); try again")
            await request.respond(json.dumps({"ok": False, "error": error.to_problem()}).encode())

    async def claim(self, req: MicroRequest) -> None:
        await self._respond(
            req, lambda d: self.board.claim(_field(d, "task_id"), _field(d, "agent"))
        )

    async def progress(self, req: MicroRequest) -> None:
        await self._respond(
            req,
            lambda d: self.board.progress(
                _field(d, "task_id"), _field(d, "agent"), _progress(d.get("progress", 0))
            ),
        )

    async def complete(self, req: MicroRequest) -> None:
        await self._respond(
            req,
            lambda d: self.board.complete(
                _field(d, "task_id"), _field(d, "agent"), _success(d.get("success", True))
            ),
        )
