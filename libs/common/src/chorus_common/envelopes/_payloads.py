"""Typed payload models, one per message type (placeholder set; completed in issue 2)."""

from __future__ import annotations

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._types import MessageType


@register_payload(MessageType.TASK_ANNOUNCEMENT)
class TaskAnnouncement(Payload):
    task_id: str
    repository: str
    title: str
    description: str = ""
    labels: list[str] = Field(default_factory=list)


@register_payload(MessageType.TASK_CLAIM)
class TaskClaim(Payload):
    task_id: str
    repository: str
    agent: str
    capabilities_used: list[str] = Field(default_factory=list)
    estimate_seconds: float | None = None
