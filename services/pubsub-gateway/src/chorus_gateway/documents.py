"""The documents the gateway answers, as models: the OpenAPI document describes every
success body from these, and the behaviour suite's schema run checks bodies against them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentDocument",
    "BatchResult",
    "Challenge",
    "Enrolled",
    "EnrolmentToken",
    "FeedAuditPage",
    "FeedIssue",
    "FeedPosition",
    "KeyChange",
    "MessagesPage",
    "PublishFailure",
    "PublishResult",
    "Revoked",
    "StoredMessage",
    "TypeList",
]


class PublishResult(BaseModel):
    """An envelope stored (or found stored: ``duplicate``) with its stream sequence."""

    index: int = Field(description="the item's place in the request")
    ok: Literal[True]
    id: str
    type: str
    subjects: list[str]
    stream: str | None
    seq: int | None
    duplicate: bool
    redacted: dict[str, int] | None = Field(description="SHHH findings by rule, if any")


class PublishFailure(BaseModel):
    """An item refused: ``error`` is the problem document it would have been answered with."""

    index: int
    ok: Literal[False]
    error: dict[str, Any]


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[PublishResult | PublishFailure]


class StoredMessage(BaseModel):
    seq: int
    subject: str
    envelope: Any = Field(description="the stored envelope (null if it is not JSON)")


class MessagesPage(BaseModel):
    subject: str
    messages: list[StoredMessage]
    next_seq: int = Field(description="from_seq for the next page")


class FeedIssue(BaseModel):
    kind: str
    feed_seq: int | None
    detail: str


class FeedAuditPage(BaseModel):
    agent: str
    ok: bool
    length: int = Field(description="feed entries verified so far")
    head: str | None
    issue_count: int
    issues: list[FeedIssue]
    scanned: int = Field(description="stream messages this call read")
    complete: bool = Field(description="false when the call stopped early; continue with next")
    next: str | None = Field(description="after= for the next page")


class TypeList(BaseModel):
    count: int
    types: list[dict[str, Any]]


class FeedPosition(BaseModel):
    seq: int
    head: str | None


class AgentDocument(BaseModel):
    """A registered agent: its registry document and where its feed stands."""

    model_config = ConfigDict(extra="allow")

    public_key: str | None = None
    feed: FeedPosition


class EnrolmentToken(BaseModel):
    token: str
    expires_at: float


class Challenge(BaseModel):
    challenge: str
    expires_at: float
    sign: str = Field(description="the text to sign, with the parts filled in")


class Enrolled(BaseModel):
    agent: str
    token: str = Field(description="the agent's own token (shown once)")
    scopes: list[str]


class KeyChange(BaseModel):
    agent: str
    public_key: str | None
    changed: bool


class Revoked(BaseModel):
    agent: str
    revoked: int
