"""Typed payload models, one per message type of SPEC.md §1.

Each carries what a receiver of that message needs to act on it without
looking anything up; identifiers are plain strings, scores and ratios are
bounded, and unknown fields are refused (``Payload`` forbids extras).
"""

from __future__ import annotations

from chorus_common.envelopes._payloads.context import (
    ContextFeedback,
    ContextRelevance,
    ContextRequest,
    ContextResponse,
    ContextUsage,
)
from chorus_common.envelopes._payloads.coordination import (
    AvailabilityBroadcast,
    CapabilityBroadcast,
    TaskAnnouncement,
    TaskClaim,
    TaskComplete,
    TaskProgress,
)
from chorus_common.envelopes._payloads.hmmm import (
    CoordinationComplete,
    CoordinationRequest,
    DependencyAlert,
    DependencyInfo,
    EscalationTrigger,
    MetaDiscussion,
    TaskHelpRequest,
    TaskHelpResponse,
)
from chorus_common.envelopes._payloads.role import (
    DeliverableReady,
    ExpertiseRequest,
    ExpertiseResponse,
    MentorshipRequest,
    MentorshipResponse,
    ProjectUpdate,
    RoleAnnouncement,
    RoleCollaboration,
    StatusUpdate,
    WorkAllocation,
)
from chorus_common.envelopes._payloads.slurp import (
    SlurpContextUpdate,
    SlurpEventAck,
    SlurpEventGenerated,
)

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
