"""Typed payload models, one per message type of SPEC.md §1.

Each carries what a receiver of that message needs to act on it without
looking anything up; identifiers are plain strings, scores and ratios are
bounded, and unknown fields are refused (``Payload`` forbids extras).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._types import MessageType as T

Id = str
Ratio = float


def _now() -> datetime:
    return datetime.now(UTC)


# -- task coordination (6) -----------------------------------------------------


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


# -- HMMM meta-discussion (7) --------------------------------------------------


class DependencyInfo(Payload):
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
    task_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    problem: str = Field(min_length=1, max_length=10000)
    needed_expertise: list[str] = Field(default_factory=list)
    urgency: Literal["low", "normal", "high"] = "normal"


@register_payload(T.TASK_HELP_RESPONSE)
class TaskHelpResponse(Payload):
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


# -- role-based collaboration (10) -------------------------------------------


@register_payload(T.ROLE_ANNOUNCEMENT)
class RoleAnnouncement(Payload):
    agent: str = Field(min_length=1)
    role: str = Field(min_length=1)
    expertise: list[str] = Field(default_factory=list)
    reports_to: str | None = None
    authority_level: Literal["member", "lead", "admin"] = "member"


@register_payload(T.EXPERTISE_REQUEST)
class ExpertiseRequest(Payload):
    request_id: Id = Field(min_length=1)
    expertise: list[str] = Field(min_length=1)
    question: str = Field(min_length=1, max_length=10000)
    task_id: Id | None = None


@register_payload(T.EXPERTISE_RESPONSE)
class ExpertiseResponse(Payload):
    request_id: Id = Field(min_length=1)
    expert: str = Field(min_length=1)
    answer: str = Field(default="", max_length=20000)
    confidence: Ratio = Field(default=0.5, ge=0, le=1)


@register_payload(T.STATUS_UPDATE)
class StatusUpdate(Payload):
    agent: str = Field(min_length=1)
    status: str = Field(min_length=1, max_length=200)
    detail: str = Field(default="", max_length=5000)
    task_id: Id | None = None


@register_payload(T.WORK_ALLOCATION)
class WorkAllocation(Payload):
    """The leader gives a task to an agent; ``term`` fences it to one leader."""

    task_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    score: float = Field(ge=0)
    term: int = Field(ge=1)
    reason: str = ""
    breakdown: dict[str, float] = Field(default_factory=dict)


@register_payload(T.ROLE_COLLABORATION)
class RoleCollaboration(Payload):
    roles: list[str] = Field(min_length=1)
    topic: str = Field(min_length=1)
    content: str = Field(default="", max_length=20000)


@register_payload(T.MENTORSHIP_REQUEST)
class MentorshipRequest(Payload):
    request_id: Id = Field(min_length=1)
    mentee: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    detail: str = ""


@register_payload(T.MENTORSHIP_RESPONSE)
class MentorshipResponse(Payload):
    request_id: Id = Field(min_length=1)
    mentor: str = Field(min_length=1)
    accepted: bool = True
    guidance: str = ""


@register_payload(T.PROJECT_UPDATE)
class ProjectUpdate(Payload):
    project: str = Field(min_length=1)
    summary: str = Field(min_length=1, max_length=5000)
    milestone: str | None = None
    progress: Ratio | None = Field(default=None, ge=0, le=1)


@register_payload(T.DELIVERABLE_READY)
class DeliverableReady(Payload):
    deliverable_id: Id = Field(min_length=1)
    task_id: Id | None = None
    kind: str = "artifact"
    location: str = Field(min_length=1)
    summary: str = ""


# -- SLURP events (3) ----------------------------------------------------------


@register_payload(T.SLURP_EVENT_GENERATED)
class SlurpEventGenerated(Payload):
    event_id: Id = Field(min_length=1)
    event_type: str = Field(min_length=1)
    ucxl_address: str = Field(min_length=1)
    summary: str = ""
    severity: Literal["info", "warning", "critical"] = "info"


@register_payload(T.SLURP_EVENT_ACK)
class SlurpEventAck(Payload):
    event_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    accepted: bool = True
    note: str = ""


@register_payload(T.SLURP_CONTEXT_UPDATE)
class SlurpContextUpdate(Payload):
    ucxl_address: str = Field(min_length=1)
    summary: str = ""
    version: int = Field(default=1, ge=1)
    tags: list[str] = Field(default_factory=list)


# -- context feedback (5) ------------------------------------------------------


@register_payload(T.CONTEXT_FEEDBACK)
class ContextFeedback(Payload):
    ucxl_address: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    helpful: bool
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str = ""


@register_payload(T.CONTEXT_REQUEST)
class ContextRequest(Payload):
    request_id: Id = Field(min_length=1)
    query: str = Field(min_length=1, max_length=10000)
    ucxl_prefix: str | None = None
    max_results: int = Field(default=10, ge=1, le=1000)


@register_payload(T.CONTEXT_RESPONSE)
class ContextResponse(Payload):
    request_id: Id = Field(min_length=1)
    addresses: list[str] = Field(default_factory=list)
    summary: str = ""


@register_payload(T.CONTEXT_USAGE)
class ContextUsage(Payload):
    ucxl_address: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    task_id: Id | None = None
    used_at: datetime = Field(default_factory=_now)


@register_payload(T.CONTEXT_RELEVANCE)
class ContextRelevance(Payload):
    ucxl_address: str = Field(min_length=1)
    task_id: Id = Field(min_length=1)
    relevance: Ratio = Field(ge=0, le=1)
    reason: str = ""


__all__ = [
    "AvailabilityBroadcast",
    "CapabilityBroadcast",
    "ContextFeedback",
    "ContextRelevance",
    "ContextRequest",
    "ContextResponse",
    "ContextUsage",
    "CoordinationComplete",
    "CoordinationRequest",
    "DeliverableReady",
    "DependencyAlert",
    "DependencyInfo",
    "EscalationTrigger",
    "ExpertiseRequest",
    "ExpertiseResponse",
    "MentorshipRequest",
    "MentorshipResponse",
    "MetaDiscussion",
    "ProjectUpdate",
    "RoleAnnouncement",
    "RoleCollaboration",
    "SlurpContextUpdate",
    "SlurpEventAck",
    "SlurpEventGenerated",
    "StatusUpdate",
    "TaskAnnouncement",
    "TaskClaim",
    "TaskComplete",
    "TaskHelpRequest",
    "TaskHelpResponse",
    "TaskProgress",
    "WorkAllocation",
]
