"""HMMM meta-discussion (7): agents of different repositories talk before they collide."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._payloads._common import Id, Ratio
from chorus_common.envelopes._types import MessageType as T


class DependencyInfo(Payload):
    """Why two tasks depend on each other; nested in meta_discussion."""

    rule: str
    confidence: Ratio = Field(ge=0, le=1)
    reason: str
    task_a: str | None = None
    task_b: str | None = None


@register_payload(T.META_DISCUSSION)
class MetaDiscussion(Payload):
    """A message in an HMMM thread; hop-limited when forwarded."""

    message_type: str = Field(default="discussion", min_length=1)
    content: str = Field(default="", max_length=20000)
    kind: Literal["proposal", "question", "agreement", "concern", "info"] = "info"
    session_id: Id | None = None
    dependency: DependencyInfo | None = None
    agents: list[str] = Field(default_factory=list)
    repositories: list[str] = Field(default_factory=list)
    hop_count: int = Field(default=0, ge=0)
    max_hops: int = Field(default=3, ge=0, le=16)
    detected_at: datetime | None = None


@register_payload(T.TASK_HELP_REQUEST)
class TaskHelpRequest(Payload):
    """An agent stuck on a task asks peers with the named expertise."""

    task_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    problem: str = Field(min_length=1, max_length=10000)
    needed_expertise: list[str] = Field(default_factory=list)
    urgency: Literal["low", "normal", "high"] = "normal"


@register_payload(T.TASK_HELP_RESPONSE)
class TaskHelpResponse(Payload):
    """A peer's answer to a help request, or a promise to help."""

    task_id: Id = Field(min_length=1)
    request_id: Id = Field(min_length=1)
    helper: str = Field(min_length=1)
    answer: str = Field(default="", max_length=20000)
    will_help: bool = True


@register_payload(T.COORDINATION_REQUEST)
class CoordinationRequest(Payload):
    """Opens a coordination session between agents of different repositories."""

    session_id: Id = Field(min_length=1)
    session_type: Literal["dependency", "conflict", "planning"] = "dependency"
    participants: list[str] = Field(min_length=1)
    tasks: list[str] = Field(default_factory=list)
    reason: str = ""
    max_rounds: int = Field(default=10, ge=1)
    deadline: datetime | None = None


@register_payload(T.COORDINATION_COMPLETE)
class CoordinationComplete(Payload):
    """Closes a coordination session with its outcome, so waiting agents proceed."""

    session_id: Id = Field(min_length=1)
    outcome: Literal["resolved", "escalated", "abandoned"] = "resolved"
    summary: str = ""
    participants: list[str] = Field(default_factory=list)
    rounds: int = Field(default=0, ge=0)
    decision_address: str | None = None


@register_payload(T.DEPENDENCY_ALERT)
class DependencyAlert(Payload):
    """A dependency between tasks of two repositories was detected."""

    rule: str = Field(min_length=1)
    confidence: Ratio = Field(ge=0, le=1)
    reason: str = Field(min_length=1)
    task_a: str = Field(min_length=1)
    task_b: str = Field(min_length=1)
    repositories: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)
    session_id: Id | None = None


@register_payload(T.ESCALATION_TRIGGER)
class EscalationTrigger(Payload):
    """Asks a human to step in when agents cannot settle a thread."""

    thread: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    participants: list[str] = Field(default_factory=list)
    rounds: int = Field(default=0, ge=0)
    requested_human_role: str = "maintainer"
    session_id: Id | None = None


__all__ = [
    "CoordinationComplete",
    "CoordinationRequest",
    "DependencyAlert",
    "DependencyInfo",
    "EscalationTrigger",
    "MetaDiscussion",
    "TaskHelpRequest",
    "TaskHelpResponse",
]
