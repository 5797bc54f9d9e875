"""The documents the coordinator keeps on and reads from the bus, as pydantic models.

- :class:`TaskRecord` — a task in the ``chorus-tasks`` bucket (``task.<id>``), with its
  :class:`HistoryEvent` entries;
- :class:`AgentEntry` — what the coordinator reads of an agent's ``chorus-registry``
  document (``agent.<id>``);
- :class:`TaskRequest`, :class:`TaskGranted`, :class:`TaskRefused` — the micro endpoints'
  request and answers.

The JSON is the one the coordinator always wrote, so replicas of either version read
each other's documents during a rolling upgrade: every key it wrote is written (``null``
where it was ``null``), a key it left out (a task's ``progress`` before the holder
reported, an event's ``agent`` or ``term``) stays out, and keys this version does not
know are kept when a task is read, changed and written back.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

__all__ = [
    "TASK_ID",
    "AgentAction",
    "AgentEntry",
    "HistoryEvent",
    "TaskGranted",
    "TaskRecord",
    "TaskRefused",
    "TaskRequest",
    "TaskStatus",
]

#: task ids end up in KV keys and subjects: letters, digits, '_' and '-'
TASK_ID = r"^[A-Za-z0-9_\-]{1,64}$"

TaskStatus = Literal["open", "claimed", "completed"]


class HistoryEvent(BaseModel):
    """One entry of a task's history; only the keys it was made (or stored) with are written."""

    model_config = ConfigDict(extra="allow")

    event: str
    at: float
    agent: str | None = None
    term: int | None = None

    @classmethod
    def now(cls, event: str, **fields: Any) -> HistoryEvent:
        return cls(event=event, at=time.time(), **fields)

    @model_serializer(mode="wrap")
    def _as_made(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        extra = self.model_extra or {}
        return {k: v for k, v in out.items() if k in self.model_fields_set or k in extra}


class TaskRecord(BaseModel):
    """A task as the board keeps it: what was announced (``TaskIn``'s fields), and who holds it."""

    model_config = ConfigDict(extra="allow")

    id: str
    repository: str
    project: str = "default"
    title: str
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    required_capabilities: list[str] = Field(default_factory=list)
    required_expertise: list[str] = Field(default_factory=list)
    role: str | None = None
    priority: int = 3
    dependencies: list[str] = Field(default_factory=list)
    status: TaskStatus
    assignee: str | None = None
    claim_expires_at: float | None = None
    term: int | None = None
    history: list[HistoryEvent] = Field(default_factory=list)
    #: 0-1, once the holder reported (absent before)
    progress: float | None = None

    @model_serializer(mode="wrap")
    def _without_unreported_progress(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("progress") is None:
            out.pop("progress", None)
        return out


class AgentEntry(BaseModel):
    """The fields of an agent's registry document the coordinator reads (others own the rest)."""

    agent: str
    #: set once the agent offered itself for work; an entry without it only registered a key
    availability: str | None = None
    kind: str | None = None
    updated_at: float = 0.0
    capabilities: list[str] = Field(default_factory=list)
    expertise: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    max_tasks: int = 1

    @property
    def offered(self) -> bool:
        """Whether the document says anything about availability (``null`` included)."""
        return "availability" in self.model_fields_set


# what an agent asks of a task it claims, works on or completes: the REST body (no
# docstring: it would become the schema's description in the OpenAPI document)
class AgentAction(BaseModel):
    agent: str = Field(min_length=1)
    progress: float = Field(default=0.0, ge=0, le=1)
    success: bool = True


class TaskRequest(AgentAction):
    """A micro request (``claim``, ``progress``, ``complete``): the REST body and the task's
    id, which REST takes from the path."""

    task_id: str = Field(pattern=TASK_ID)


class TaskGranted(BaseModel):
    ok: Literal[True] = True
    task: TaskRecord


class TaskRefused(BaseModel):
    ok: Literal[False] = False
    #: the refusal as a problem document (RFC 9457)
    error: dict[str, Any]
