"""The core NATS subjects that cross a package boundary, each declared once with its model.

chorus_common's own modules speak these with the services: every agent's BACKBEAT
:class:`~chorus_common.backbeat.Tracker` (:data:`BEATS`, :data:`STATUS_CLAIMS`), the
election :class:`~chorus_common.election.Participant` (``chorus.election.<event>``), the
:class:`~chorus_common.license_gate.LicenseGate` (the licensing service's seat endpoints),
the agent SDK (the coordinator's task endpoints) and every service's micro ``health``
endpoint; the DHT nodes' RPC and announcements are in :mod:`chorus_common.dht_wire`.
Declaring them here puts them in :data:`chorus_common.bus.topics.DECLARED`, from
which the gateway's AsyncAPI document is generated.

The models are the JSON that was on the wire before they existed: the same field names
and types, optional where a reader treated a field as optional, and unknown fields
ignored, so replicas of the previous and the next version interoperate in a rolling
upgrade. Messages signed with a detached signature (beat frames, bar reports, every
election message) are encoded once and published with
:meth:`~chorus_common.bus.Topic.publish_raw`, so the signature covers the bytes sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SerializerFunctionWrapHandler,
    StrictInt,
    model_serializer,
)

from chorus_common import dht_wire  # noqa: F401  (declares the DHT's node RPC too)
from chorus_common.backbeat import BarReport, BeatFrame, StatusClaim
from chorus_common.bus import TopicSpec, declare_topic
from chorus_common.subjects import BACKBEAT_BEAT

__all__ = [
    "BARS",
    "BAR_SUBJECT",
    "BEATS",
    "CLAIM_SUBJECTS",
    "COORDINATOR_TASKS",
    "ELECTION_CANDIDACY",
    "ELECTION_DISCOVERY",
    "ELECTION_HEARTBEAT",
    "ELECTION_STARTED",
    "ELECTION_STEPDOWN",
    "ELECTION_TOPICS",
    "ELECTION_WINNER",
    "LICENSE_GRANT",
    "LICENSE_RELEASE",
    "LICENSE_RENEW",
    "SERVICE_HEALTH",
    "STATUS_CLAIMS",
    "Candidacy",
    "DiscoveryRequest",
    "DiscoveryResponse",
    "ElectionSpeaker",
    "ElectionStartedMessage",
    "GrantAnswer",
    "HealthQuery",
    "Heartbeat",
    "Lease",
    "LeaseGranted",
    "LeaseRef",
    "LeaseRefused",
    "LeaseReleased",
    "LeaseRequest",
    "ReleaseAnswer",
    "ServiceHealth",
    "Stepdown",
    "TaskAnswer",
    "TaskCall",
    "Winner",
]

_WIRE = ConfigDict(extra="ignore")

# -- BACKBEAT ------------------------------------------------------------------------------

BEATS = declare_topic(
    BACKBEAT_BEAT,
    BeatFrame,
    "The pulse leader's beat frame, one per beat, signed (detached) by the backbeat replica",
)

STATUS_CLAIMS = declare_topic(
    "chorus.backbeat.status.{agent}",
    StatusClaim,
    "An agent's status claim on the beat: a heartbeat, or one of an operation's six phases",
)

BAR_SUBJECT = "chorus.backbeat.bar"

BARS = declare_topic(
    BAR_SUBJECT,
    BarReport,
    "The report of a bar that ended, signed (detached) by the pulse leader's replica",
)

#: what the BACKBEAT view listens on: every agent's claims
CLAIM_SUBJECTS = STATUS_CLAIMS.wildcard

# -- the admin election ----------------------------------------------------------------------


class ElectionSpeaker(BaseModel):
    """The one field every election message has: the node it speaks for (``node``), read
    before the message's own model so a signature can be checked against it."""

    model_config = _WIRE
    node: Any = None


class DiscoveryRequest(BaseModel):
    """A starting participant asks whether there is an admin (the admin answers)."""

    model_config = _WIRE
    node: str | None = None


class DiscoveryResponse(BaseModel):
    """The admin's answer to a discovery request, on the requester's inbox."""

    model_config = _WIRE
    admin: str
    term: int


class Candidacy(BaseModel):
    """A participant's (smoothed) score, every heartbeat, and whether it stands."""

    model_config = _WIRE
    node: str
    total: float
    components: dict[str, float]
    eligible: bool = True


class Heartbeat(BaseModel):
    """The admin's heartbeat in its term (the followers' failover clock runs from it)."""

    model_config = _WIRE
    node: str = Field(min_length=1)
    #: strictly an integer: a stray ``true`` or ``3.0`` is noise, not a term
    term: StrictInt = 0
    at: float | None = None


class Stepdown(BaseModel):
    """The admin gave up (or lost) its seat, and why: the others elect at once."""

    model_config = _WIRE
    node: str
    term: int | None = None
    #: a :class:`~chorus_common.election.StepDownReason` value
    reason: str
    total: float | None = None
    challenger: str | None = None
    challenger_total: float | None = None
    at: float | None = None

    @model_serializer(mode="wrap")
    def _challenger_when_known(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.challenger is None:  # written only for a challenge, as always
            out.pop("challenger", None)
            out.pop("challenger_total", None)
        return out


class ElectionStartedMessage(BaseModel):
    """A participant started an election (kept in the ``CHORUS_ELECTION`` stream)."""

    model_config = _WIRE
    node: str | None = None
    #: a :class:`~chorus_common.election.Trigger` value
    trigger: str
    at: float | None = None


class Winner(BaseModel):
    """A participant won the admin lease in ``term`` (kept in the ``CHORUS_ELECTION`` stream)."""

    model_config = _WIRE
    node: str
    term: int
    score: dict[str, float] = Field(default_factory=dict)
    at: float | None = None


ELECTION_DISCOVERY = declare_topic(
    "chorus.election.discovery_request",
    DiscoveryRequest,
    "A starting participant asks for the admin; the admin answers on the inbox (signed)",
    reply=DiscoveryResponse,
)
ELECTION_CANDIDACY = declare_topic(
    "chorus.election.candidacy",
    Candidacy,
    "Every participant's score and standing, each heartbeat, signed by its election replica",
)
ELECTION_HEARTBEAT = declare_topic(
    "chorus.election.heartbeat",
    Heartbeat,
    "The admin's heartbeat with its term, signed by its election replica",
)
ELECTION_STEPDOWN = declare_topic(
    "chorus.election.stepdown",
    Stepdown,
    "The admin stepped down (or lost its lease) and why; kept in CHORUS_ELECTION, signed",
)
ELECTION_STARTED = declare_topic(
    "chorus.election.started",
    ElectionStartedMessage,
    "A participant started an election and why; kept in CHORUS_ELECTION, signed",
)
ELECTION_WINNER = declare_topic(
    "chorus.election.winner",
    Winner,
    "A participant took the admin lease in a term; kept in CHORUS_ELECTION, signed",
)

#: the election's topics by event, the last token of ``chorus.election.<event>``
ELECTION_TOPICS: dict[str, TopicSpec[Any]] = {
    spec.pattern.rsplit(".", 1)[-1]: spec
    for spec in (
        ELECTION_DISCOVERY,
        ELECTION_CANDIDACY,
        ELECTION_HEARTBEAT,
        ELECTION_STEPDOWN,
        ELECTION_STARTED,
        ELECTION_WINNER,
    )
}

# -- license seats (the licensing service's micro endpoints) --------------------------------


class LeaseRequest(BaseModel):
    """Ask for a seat (``lease-grant``; also the REST body)."""

    model_config = _WIRE
    holder: str = Field(min_length=1, max_length=128)
    kind: str = Field(default="service", min_length=1, max_length=64)


class LeaseRef(BaseModel):
    """A request naming a lease (``lease-renew``, ``lease-release``); REST has it in the path."""

    model_config = _WIRE
    lease_id: str = Field(min_length=1, max_length=128)


class Lease(BaseModel):
    """A seat lease: who holds which seat, until when (Unix times)."""

    model_config = _WIRE
    lease_id: str
    seat: int
    holder: str
    kind: str
    expires_at: float
    granted_at: float
    expires_in_seconds: float


class LeaseGranted(BaseModel):
    """The answer to grant or renew: ``ok`` and the lease. A gate needs only the lease id
    and how long it runs; the rest is what the licensing service says of the lease."""

    model_config = _WIRE
    ok: Literal[True] = True
    lease_id: str
    expires_in_seconds: float
    seat: int | None = None
    holder: str | None = None
    kind: str | None = None
    expires_at: float | None = None
    granted_at: float | None = None


class LeaseReleased(BaseModel):
    model_config = _WIRE
    ok: Literal[True] = True


class LeaseRefused(BaseModel):
    model_config = _WIRE
    ok: Literal[False] = False
    #: the refusal as a problem document (RFC 9457)
    error: dict[str, Any]


class GrantAnswer(RootModel[LeaseGranted | LeaseRefused]):
    """What grant and renew answer: the lease, or the refusal."""


class ReleaseAnswer(RootModel[LeaseReleased | LeaseRefused]):
    """What release answers."""


LICENSE_GRANT = declare_topic(
    "chorus.svc.licensing.lease-grant",
    LeaseRequest,
    "A service's license gate asks the licensing service for a seat",
    reply=GrantAnswer,
)
LICENSE_RENEW = declare_topic(
    "chorus.svc.licensing.lease-renew",
    LeaseRef,
    "A license gate renews its seat lease (at a third of its TTL)",
    reply=GrantAnswer,
)
LICENSE_RELEASE = declare_topic(
    "chorus.svc.licensing.lease-release",
    LeaseRef,
    "A stopping service gives its seat back",
    reply=ReleaseAnswer,
)

# -- every service's micro health endpoint ---------------------------------------------------


class HealthQuery(BaseModel):
    """A micro ``health`` request: it carries nothing (the endpoint reads no body)."""

    model_config = _WIRE


class ServiceHealth(BaseModel):
    """A service's health document (chorus_common.service ``health_document``): the status
    of each check by name (``license`` among them) and whether the service is ready."""

    model_config = _WIRE
    service: str | None = None
    version: str | None = None
    node_id: str | None = None
    status: str | None = None
    ready: bool | None = None
    uptime_seconds: float | None = None
    checks: dict[str, str]


SERVICE_HEALTH = declare_topic(
    "chorus.svc.{service}.health",
    HealthQuery,
    "A service's NATS micro health endpoint: its status, readiness and checks",
    reply=ServiceHealth,
)

# -- the coordinator's task endpoints (the agent SDK) ----------------------------------------


class TaskCall(BaseModel):
    """An agent's claim, progress or complete of a task; what it does not say is not sent
    (the coordinator's defaults apply)."""

    model_config = _WIRE
    agent: str
    task_id: str
    progress: float | None = None
    success: bool | None = None

    @model_serializer(mode="wrap")
    def _only_present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        return {k: v for k, v in out.items() if v is not None}


class TaskAnswer(BaseModel):
    """``{"ok": true, "task": <the task>}`` or ``{"ok": false, "error": <problem>}``."""

    model_config = _WIRE
    ok: bool
    task: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


COORDINATOR_TASKS = declare_topic(
    "chorus.svc.coordinator.{verb}",
    TaskCall,
    "An agent claims, reports progress on or completes a task (verb: claim, progress, "
    "complete); a replica without a license seat refuses with license_unavailable",
    reply=TaskAnswer,
)
