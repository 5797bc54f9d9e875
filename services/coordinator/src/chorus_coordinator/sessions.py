"""Coordination sessions as plain rules: rounds, escalation, resolution, sweeping (SPEC.md §10)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ESCALATION_WORDS", "Kind", "Message", "Session"]

Kind = Literal["proposal", "question", "agreement", "concern", "info"]
ESCALATION_WORDS = (
    "stuck",
    "help",
    "human",
    "escalate",
    "clarification needed",
    "manual intervention",
)


@dataclass
class Message:
    agent: str
    kind: Kind
    content: str
    at: float


@dataclass
class Session:
    session_id: str
    session_type: Literal["dependency", "conflict", "planning"]
    participants: list[str]
    started_at: float
    max_messages: int = 10
    max_seconds: float = 30 * 60
    status: Literal["active", "resolved", "escalated"] = "active"
    outcome_reason: str = ""
    transcript: list[Message] = field(default_factory=list)

    def add(self, message: Message) -> Literal["continue", "resolved", "escalated"]:
        if self.status != "active":
            return self.status
        self.transcript.append(message)
        if message.agent not in self.participants:
            self.participants.append(message.agent)
        text = message.content.lower()
        if any(word in text for word in ESCALATION_WORDS):
            return self._escalate(f"{message.agent} asked for a human: {message.content[:80]}")
        last = self.transcript[-3:]
        agreeing = sum(1 for m in last if m.kind == "agreement")
        if (
            len(self.participants) > 1
            and agreeing >= max(1, len(self.participants) - 1)
            and len(last) >= 2
        ):
            self.status, self.outcome_reason = "resolved", "participants agreed"
            return "resolved"
        if len(self.transcript) >= self.max_messages:
            return self._escalate(f"no agreement after {len(self.transcript)} messages")
        return "continue"

    def tick(self, now: float) -> Literal["continue", "escalated"]:
        if self.status == "active" and now - self.started_at >= self.max_seconds:
            self._escalate(f"no agreement after {self.max_seconds / 60:.0f} minutes")
            return "escalated"
        return "continue"

    def _escalate(self, reason: str) -> Literal["escalated"]:
        self.status, self.outcome_reason = "escalated", reason
        return "escalated"

    def sweepable(self, now: float, max_age: float = 2 * 3600) -> bool:
        return self.status != "active" or now - self.started_at > max_age
