"""SLURP events (3): decisions and context changes recorded at UCXL addresses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chorus_common.envelopes._envelope import Payload, register_payload
from chorus_common.envelopes._payloads._common import Id
from chorus_common.envelopes._types import MessageType as T


@register_payload(T.SLURP_EVENT_GENERATED)
class SlurpEventGenerated(Payload):
    """SLURP recorded a decision or event at a UCXL address."""

    event_id: Id = Field(min_length=1)
    event_type: str = Field(min_length=1)
    ucxl_address: str = Field(min_length=1)
    summary: str = ""
    severity: Literal["info", "warning", "critical"] = "info"


@register_payload(T.SLURP_EVENT_ACK)
class SlurpEventAck(Payload):
    """An agent took note of a SLURP event, so it is not re-sent."""

    event_id: Id = Field(min_length=1)
    agent: str = Field(min_length=1)
    accepted: bool = True
    note: str = ""


@register_payload(T.SLURP_CONTEXT_UPDATE)
class SlurpContextUpdate(Payload):
    """The context stored at a UCXL address changed."""

    ucxl_address: str = Field(min_length=1)
    summary: str = ""
    version: int = Field(default=1, ge=1)
    tags: list[str] = Field(default_factory=list)


__all__ = [
    "SlurpContextUpdate",
    "SlurpEventAck",
    "SlurpEventGenerated",
]
