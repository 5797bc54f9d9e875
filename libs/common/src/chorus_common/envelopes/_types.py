"""The 31 message types of SPEC.md §1 and the group each belongs to."""

from __future__ import annotations

from enum import StrEnum


class MessageGroup(StrEnum):
    COORDINATION = "coordination"
    HMMM = "hmmm"
    ROLE = "role"
    SLURP = "slurp"
    CONTEXT = "context"


class MessageType(StrEnum):
    # task coordination (6)
    TASK_ANNOUNCEMENT = "task_announcement"
    TASK_CLAIM = "task_claim"
    TASK_PROGRESS = "task_progress"
    TASK_COMPLETE = "task_complete"
    CAPABILITY_BROADCAST = "capability_broadcast"
    AVAILABILITY_BROADCAST = "availability_broadcast"
    # HMMM meta-discussion (7)
    META_DISCUSSION = "meta_discussion"
    TASK_HELP_REQUEST = "task_help_request"
    TASK_HELP_RESPONSE = "task_help_response"
    COORDINATION_REQUEST = "coordination_request"
    COORDINATION_COMPLETE = "coordination_complete"
    DEPENDENCY_ALERT = "dependency_alert"
    ESCALATION_TRIGGER = "escalation_trigger"
    # role-based collaboration (10)
    ROLE_ANNOUNCEMENT = "role_announcement"
    EXPERTISE_REQUEST = "expertise_request"
    EXPERTISE_RESPONSE = "expertise_response"
    STATUS_UPDATE = "status_update"
    WORK_ALLOCATION = "work_allocation"
    ROLE_COLLABORATION = "role_collaboration"
    MENTORSHIP_REQUEST = "mentorship_request"
    MENTORSHIP_RESPONSE = "mentorship_response"
    PROJECT_UPDATE = "project_update"
    DELIVERABLE_READY = "deliverable_ready"
    # SLURP events (3)
    SLURP_EVENT_GENERATED = "slurp_event_generated"
    SLURP_EVENT_ACK = "slurp_event_ack"
    SLURP_CONTEXT_UPDATE = "slurp_context_update"
    # context feedback (5)
    CONTEXT_FEEDBACK = "context_feedback"
    CONTEXT_REQUEST = "context_request"
    CONTEXT_RESPONSE = "context_response"
    CONTEXT_USAGE = "context_usage"
    CONTEXT_RELEVANCE = "context_relevance"

    @property
    def group(self) -> MessageGroup:
        return _GROUP_OF[self]


_GROUPS: dict[MessageGroup, tuple[MessageType, ...]] = {
    MessageGroup.COORDINATION: (
        MessageType.TASK_ANNOUNCEMENT,
        MessageType.TASK_CLAIM,
        MessageType.TASK_PROGRESS,
        MessageType.TASK_COMPLETE,
        MessageType.CAPABILITY_BROADCAST,
        MessageType.AVAILABILITY_BROADCAST,
    ),
    MessageGroup.HMMM: (
        MessageType.META_DISCUSSION,
        MessageType.TASK_HELP_REQUEST,
        MessageType.TASK_HELP_RESPONSE,
        MessageType.COORDINATION_REQUEST,
        MessageType.COORDINATION_COMPLETE,
        MessageType.DEPENDENCY_ALERT,
        MessageType.ESCALATION_TRIGGER,
    ),
    MessageGroup.ROLE: (
        MessageType.ROLE_ANNOUNCEMENT,
        MessageType.EXPERTISE_REQUEST,
        MessageType.EXPERTISE_RESPONSE,
        MessageType.STATUS_UPDATE,
        MessageType.WORK_ALLOCATION,
        MessageType.ROLE_COLLABORATION,
        MessageType.MENTORSHIP_REQUEST,
        MessageType.MENTORSHIP_RESPONSE,
        MessageType.PROJECT_UPDATE,
        MessageType.DELIVERABLE_READY,
    ),
    MessageGroup.SLURP: (
        MessageType.SLURP_EVENT_GENERATED,
        MessageType.SLURP_EVENT_ACK,
        MessageType.SLURP_CONTEXT_UPDATE,
    ),
    MessageGroup.CONTEXT: (
        MessageType.CONTEXT_FEEDBACK,
        MessageType.CONTEXT_REQUEST,
        MessageType.CONTEXT_RESPONSE,
        MessageType.CONTEXT_USAGE,
        MessageType.CONTEXT_RELEVANCE,
    ),
}

_GROUP_OF: dict[MessageType, MessageGroup] = {
    t: group for group, types in _GROUPS.items() for t in types
}
