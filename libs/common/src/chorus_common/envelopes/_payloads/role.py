"""Role-based collaboration (10): messages addressed by role, expertise or project."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._payloads._common import Id, Ratio
from chorus_common.envelopes._types import MessageType as T


@register_payload(T.ROLE_ANNOUNCEMENT)
class RoleAnnouncement(Payload):
    """Who holds which role, so role-targeted messages reach someone."""

    agent: str = Field(min_length=1)
    role: str = Field(min_length=1)
    expertise: list[str] = Field(default_factory=list)
    reports_to: str | None = None
    authority_level: Literal["member", "lead", "admin"] = "member"


@register_payload(T.EXPERTISE_REQUEST)
class ExpertiseRequest(Payload):
    """A question routed by expertise rather than to a named agent."""

    request_id: Id = Field(min_length=1)
    expertise: list[str] = Field(min_length=1)
    question: str = Field(min_length=1, max_length=10000)
    task_id: Id | None = None


@register_payload(T.EXPERTISE_RESPONSE)
class ExpertiseResponse(Payload):
    """An expert's answer; ``confidence`` lets the asker weigh several."""

    request_id: Id = Field(min_length=1)
    expert: str = Field(min_length=1)
    answer: str = Field(default="", max_length=20000)
    confidence: Ratio = Field(default=0.5, ge=0, le=1)


@register_payload(T.STATUS_UPDATE)
class StatusUpdate(Payload):
    """Free-form status of an agent, for humans and dashboards."""

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
    """A topic that needs several roles at once (e.g. backend and frontend)."""

    roles: list[str] = Field(min_length=1)
    topic: str = Field(min_length=1)
    content: str = Field(default="", max_length=20000)


@register_payload(T.MENTORSHIP_REQUEST)
class MentorshipRequest(Payload):
    """A less experienced agent asks for guidance on a topic."""

    request_id: Id = Field(min_length=1)
    mentee: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    detail: str = ""


@register_payload(T.MENTORSHIP_RESPONSE)
class MentorshipResponse(Payload):
    """A mentor accepts or declines, optionally with first guidance."""

    request_id: Id = Field(min_length=1)
    mentor: str = Field(min_length=1)
    accepted: bool = True
    guidance: str = ""


@register_payload(T.PROJECT_UPDATE)
class ProjectUpdate(Payload):
    """Project-level news for everyone subscribed to the project topic."""

    project: str = Field(min_length=1)
    summary: str = Field(min_length=1, max_length=5000)
    milestone: str | None = None
    progress: Ratio | None = Field(default=None, ge=0, le=1)


@register_payload(T.DELIVERABLE_READY)
class DeliverableReady(Payload):
    """Something reviewable exists; ``location`` says where to fetch it."""

    deliverable_id: Id = Field(min_length=1)
    task_id: Id | None = None
    kind: str = "artifact"
    location: str = Field(min_length=1)
    summary: str = ""


__all__ = [
    "DeliverableReady",
    "ExpertiseRequest",
    "ExpertiseResponse",
    "MentorshipRequest",
    "MentorshipResponse",
    "ProjectUpdate",
    "RoleAnnouncement",
    "RoleCollaboration",
    "StatusUpdate",
    "WorkAllocation",
]
