"""The JSON API of HAP: who this portal's person is, the decisions, and sending HMMM."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from chorus_common.dependencies import Provided, Requires
from chorus_common.identity import Scope
from chorus_common.service import problem_responses
from chorus_hap.decisions import Choice
from chorus_hap.portal import Portal
from chorus_hap.settings import HapSettings

__all__ = [
    "Compose",
    "DecisionView",
    "DecisionsPage",
    "PortalIdentity",
    "Sent",
    "VoteView",
    "router",
]

router = APIRouter()

PortalDep = Annotated[Portal, Provided(Portal)]
SettingsDep = Annotated[HapSettings, Provided(HapSettings)]


class Compose(BaseModel):
    type: str = "meta_discussion"
    text: str = Field(min_length=1)
    thread: str | None = None
    task: str | None = None


class PortalIdentity(BaseModel):
    """The person this portal speaks as."""

    agent: str
    role: str
    public_key: str
    feed_seq: int


class VoteView(BaseModel):
    agent: str
    choice: Choice
    comment: str


class DecisionView(BaseModel):
    decision_id: str
    title: str
    author: str
    quorum: int
    closed: bool
    outcome: str | None
    tally: dict[str, int]
    address: str | None
    votes: list[VoteView]


class DecisionsPage(BaseModel):
    decisions: list[DecisionView]


class Sent(BaseModel):
    """A signed envelope on the bus: its id, stream sequence, feed sequence and subjects."""

    id: str
    seq: int
    feed_seq: int | None
    subjects: list[str]


@router.get("/v1/identity", tags=["hap"], responses=problem_responses(503))
async def identity(portal: PortalDep, settings: SettingsDep) -> PortalIdentity:
    person = await portal.person(settings.agent_id())
    return PortalIdentity(
        agent=person.agent,
        role=settings.hap_role,
        public_key=person.key.public_key,
        feed_seq=person.writer.state.seq,
    )


@router.get("/v1/decisions", tags=["hap"])
async def decisions(portal: PortalDep) -> DecisionsPage:
    return DecisionsPage.model_validate(
        {"decisions": [d.as_dict() for d in portal.book.decisions.values()]}
    )


@router.post(
    "/v1/hmmm",
    dependencies=[Requires(Scope.ADMIN)],
    status_code=201,
    tags=["hap"],
    responses=problem_responses(503),
)
async def hmmm(body: Compose, portal: PortalDep, settings: SettingsDep) -> Sent:
    """Compose, redact, sign and send an HMMM message as this portal's person."""
    preview = await portal.compose(
        settings.agent_id(), body.type, body.text, thread=body.thread, task=body.task
    )
    return Sent.model_validate(await portal.send(settings.agent_id(), preview))
