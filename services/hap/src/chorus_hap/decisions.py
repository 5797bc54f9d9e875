"""Decisions and votes, folded from signed HMMM envelopes: the same tally for every reader.

A decision is opened by a ``meta_discussion`` with ``message_type="decision_open"`` in
thread ``decision-<id>``; votes are ``decision_vote`` messages in that thread whose
``kind`` says the choice (agreement = approve, concern = reject, info = abstain).
The first ``quorum`` votes close it; later votes are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chorus_common.envelopes import Envelope, MetaDiscussion
from chorus_common.errors import ConflictError, NotFoundError, RequestInvalidError

__all__ = ["CHOICE_OF", "KIND_OF", "Choice", "Decision", "DecisionBook", "Vote", "thread_of"]

Choice = Literal["approve", "reject", "abstain"]
KIND_OF: dict[str, str] = {"approve": "agreement", "reject": "concern", "abstain": "info"}
CHOICE_OF: dict[str, Choice] = {"agreement": "approve", "concern": "reject", "info": "abstain"}


@dataclass
class Vote:
    agent: str
    choice: Choice
    comment: str


@dataclass
class Decision:
    decision_id: str
    title: str
    author: str
    quorum: int
    votes: dict[str, Vote] = field(default_factory=dict)
    #: where the outcome was published (DecisionPublisher), once closed
    address: str | None = None

    @property
    def closed(self) -> bool:
        return len(self.votes) >= self.quorum

    def tally(self) -> dict[str, int]:
        counts = {"approve": 0, "reject": 0, "abstain": 0}
        for vote in self.votes.values():
            counts[vote.choice] += 1
        return counts

    @property
    def outcome(self) -> str | None:
        if not self.closed:
            return None
        t = self.tally()
        return "approved" if t["approve"] > t["reject"] else "rejected"

    def as_dict(self) -> dict[str, object]:
        return {
            "decision_id": self.decision_id,
            "title": self.title,
            "author": self.author,
            "quorum": self.quorum,
            "closed": self.closed,
            "outcome": self.outcome,
            "tally": self.tally(),
            "address": self.address,
            "votes": [
                {"agent": v.agent, "choice": v.choice, "comment": v.comment}
                for v in self.votes.values()
            ],
        }


def thread_of(decision_id: str) -> str:
    return f"decision-{decision_id}"


class DecisionBook:
    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        self.decisions: dict[str, Decision] = {}

    def check_vote(self, decision_id: str, agent: str, choice: str) -> Decision:
        """Refuse a vote before it is signed and sent: unknown, closed, or a bad choice."""
        decision = self.decisions.get(decision_id)
        if decision is None:
            raise NotFoundError(f"no decision {decision_id!r}")
        if decision.closed:
            raise ConflictError(
                f"decision {decision_id!r} is closed ({decision.outcome}); votes are no longer taken"
            )
        if choice not in KIND_OF:
            raise RequestInvalidError(f"vote must be approve, reject or abstain, not {choice!r}")
        if agent in decision.votes:
            raise ConflictError(f"{agent} has already voted on {decision_id!r}")
        return decision

    def apply(self, env: Envelope) -> Decision | None:
        """Fold one envelope in; returns the decision it changed, if any."""
        payload = env.payload
        if (
            not isinstance(payload, MetaDiscussion)
            or not env.thread
            or not env.thread.startswith("decision-")
        ):
            return None
        decision_id = env.thread.removeprefix("decision-")
        if payload.message_type == "decision_open" and decision_id not in self.decisions:
            self.decisions[decision_id] = Decision(
                decision_id, payload.content, env.sender, self.quorum
            )
            return self.decisions[decision_id]
        if payload.message_type == "decision_vote":
            decision = self.decisions.get(decision_id)
            if decision is None or decision.closed or env.sender in decision.votes:
                return None
            decision.votes[env.sender] = Vote(
                env.sender, CHOICE_OF.get(payload.kind, "abstain"), ""
            )
            decision.votes[env.sender].comment = payload.content
            return decision
        return None
