"""Context feedback (5): asking for context and saying whether it helped."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._payloads._common import Id, Ratio, now
from chorus_common.envelopes._types import MessageType as T


@register_payload(T.CONTEXT_FEEDBACK)
class ContextFeedback(Payload):
    """Whether a piece of context helped; feeds relevance ranking."""

    ucxl_address: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    helpful: bool
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str = ""


@register_payload(T.CONTEXT_REQUEST)
class ContextRequest(Payload):
    """Asks SLURP for context matching a query, optionally under a prefix."""

    request_id: Id = Field(min_length=1)
    query: str = Field(min_length=1, max_length=10000)
    ucxl_prefix: str | None = None
    max_results: int = Field(default=10, ge=1, le=1000)


@register_payload(T.CONTEXT_RESPONSE)
class ContextResponse(Payload):
    """The UCXL addresses answering a context request."""

    request_id: Id = Field(min_length=1)
    addresses: list[str] = Field(default_factory=list)
    summary: str = ""


@register_payload(T.CONTEXT_USAGE)
class ContextUsage(Payload):
    """Records that an agent used a piece of context, for provenance."""

    ucxl_address: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    task_id: Id | None = None
    used_at: datetime = Field(default_factory=now)


@register_payload(T.CONTEXT_RELEVANCE)
class ContextRelevance(Payload):
    """How relevant a piece of context is to a task (0 to 1)."""

    ucxl_address: str = Field(min_length=1)
    task_id: Id = Field(min_length=1)
    relevance: Ratio = Field(ge=0, le=1)
    reason: str = ""


__all__ = [
    "ContextFeedback",
    "ContextRelevance",
    "ContextRequest",
    "ContextResponse",
    "ContextUsage",
]
