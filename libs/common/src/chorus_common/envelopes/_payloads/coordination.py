"""Task coordination (6): announcing, claiming and finishing work; who can do what."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._payloads._common import Id, Ratio
from chorus_common.envelopes._types import MessageType as T


@register_payload(T.TASK_ANNOUNCEMENT)
class TaskAnnouncement(Payload):
    """A task is open for claims."""

    task_id: Id = Field(min_length=1)
    repository: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    required_capabilities: list[str] = Field(default_factory=list)
    required_expertise: list[str] = Field(default_factory=list)
    priority: int = Field(default=3, ge=1, le=5)
    dependencies: list[Id] = Field(default_factory=list)
    url: str | None = None


@register_payload(T.TASK_CLAIM)
class TaskClaim(Payload):
    """An agent asks to take a task."""

    task_id: Id = Field(min_length=1)
    repository: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    capabilities_used: list[str] = Field(default_factory=list)
    estimate_seconds: float | None = Field(default=None, ge=0)


@register_payload(T.TASK_PROGRESS)
class TaskProgress(Payload):
    """Progress on a claimed task; also renews the claim's lease."""

    task_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    progress: Ratio = Field(ge=0, le=1)
    status: Literal["working", "blocked", "reviewing"] = "working"
    note: str = Field(default="", max_length=2000)


@register_payload(T.TASK_COMPLETE)
class TaskComplete(Payload):
    """Ends a claim; the task board frees the agent and records the outcome."""

    task_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    success: bool = True
    summary: str = Field(default="", max_length=5000)
    artifacts: list[str] = Field(default_factory=list)
    duration_seconds: float | None = Field(default=None, ge=0)


@register_payload(T.CAPABILITY_BROADCAST)
class CapabilityBroadcast(Payload):
    """Sent only when an agent's capabilities change."""

    agent: str = Field(min_length=1)
    capabilities: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    expertise: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)


@register_payload(T.AVAILABILITY_BROADCAST)
class AvailabilityBroadcast(Payload):
    """Sent regularly; an agent that stops sending it leaves the registry."""

    agent: str = Field(min_length=1)
    status: Literal["ready", "busy", "away", "offline"] = "ready"
    current_tasks: int = Field(default=0, ge=0)
    max_tasks: int = Field(default=1, ge=1)
    load: Ratio = Field(default=0.0, ge=0, le=1)


__all__ = [
    "AvailabilityBroadcast",
    "CapabilityBroadcast",
    "TaskAnnouncement",
    "TaskClaim",
    "TaskComplete",
    "TaskProgress",
]
