"""The NATS users of the constellation: one per service of the roster, plus operators and agents.

Each service connects to NATS as its own user, allowed to publish and subscribe
only on the subjects its code uses (docs/architecture.md, *NATS users and
permissions*). What a user is and how users are rendered is
:mod:`chorus_common.nats_auth`; which users exist, and what each service may do,
is declared here, above the services, since it names them all.
``deploy/nats/generate.py`` renders :func:`render_authorization` into
``deploy/compose/nats-auth.conf`` and the Helm chart's ``files/nats-auth.conf``.
"""

from __future__ import annotations

from chorus_common.nats_auth import (
    ENVELOPES,
    INBOX,
    JETSTREAM,
    JETSTREAM_DENY,
    NatsUser,
    kv,
    leader_lease,
    service_identity,
    service_user,
    unique_subjects,
)
from chorus_common.nats_auth import render_authorization as _render_authorization
from chorus_common.nats_auth import render_user_index as _render_user_index
from chorus_common.subjects import (
    BACKBEAT_BEAT,
    backbeat_status_subject,
    dht_rpc_subject,
    election_subject,
)
from chorus_common.topology import (
    AUDIT_SUBJECT_PREFIX,
    BUCKET_ELECTION,
    BUCKET_FEEDS,
    BUCKET_HAP_SESSIONS,
    BUCKET_LEASES,
    BUCKET_REGISTRY,
    BUCKET_TASKS,
)

__all__ = [
    "ADMIN",
    "AGENT",
    "BACKBEAT",
    "COORDINATOR",
    "DHT",
    "ELECTION",
    "HAP",
    "LICENSING",
    "PUBSUB_GATEWAY",
    "SERVICE_USERS",
    "SOURCE",
    "USERS",
    "render_authorization",
    "render_user_index",
]

#: where the users are declared, as the rendered files' header names it
SOURCE = "apps/chorus/src/chorus_cli/nats_users.py"

ADMIN = NatsUser(
    name="admin",
    purpose="operators: the nats CLI, `chorus tail`, maintenance; every subject",
    unrestricted=True,
)

LICENSING = service_user(
    "licensing",
    "seat leases in chorus-leases; answers the license gate on chorus.svc.licensing.*",
    publish=[kv(BUCKET_LEASES)],
    licensed=False,
)

ELECTION = service_user(
    "election",
    "candidacies, heartbeats and outcomes on chorus.election.*; holds the admin lease",
    publish=[election_subject("*"), leader_lease("admin"), service_identity("election")],
    subscribe=[election_subject("*")],
)

PUBSUB_GATEWAY = service_user(
    "pubsub-gateway",
    "publishes verified envelopes, streams chorus.> to HTTP clients, keeps keys and feed "
    "heads, enrols agents (identity, challenge and enrolment keys) and audits it",
    publish=[
        *ENVELOPES,
        kv(BUCKET_REGISTRY, "agent.>"),
        kv(BUCKET_REGISTRY, "feed.>"),
        kv(BUCKET_FEEDS),
        kv(BUCKET_REGISTRY, "identity.>"),
        kv(BUCKET_REGISTRY, "challenge.>"),
        kv(BUCKET_REGISTRY, "enrolment.>"),
        f"{AUDIT_SUBJECT_PREFIX}.>",
    ],
    subscribe=["chorus.>"],
)

DHT = service_user(
    "dht",
    "node RPC on chorus.dht.rpc.* and announcements; registers role keys",
    publish=[dht_rpc_subject("*"), "chorus.dht.announce", kv(BUCKET_REGISTRY, "role.>")],
    subscribe=[dht_rpc_subject("*"), "chorus.dht.announce"],
)

COORDINATOR = service_user(
    "coordinator",
    "the task board in chorus-tasks, its own leader lease, coordination envelopes",
    publish=[
        *ENVELOPES,
        kv(BUCKET_TASKS),
        leader_lease("coordinator"),
        service_identity("coordinator"),
    ],
)

BACKBEAT = service_user(
    "backbeat",
    "the pulse and bar reports on chorus.backbeat.*; the beat clock and its leader lease",
    # ``backbeat.clock`` is chorus_backbeat.service.CLOCK_KEY (a test keeps them equal)
    publish=[
        "chorus.backbeat.>",
        leader_lease("backbeat"),
        kv(BUCKET_ELECTION, "backbeat.clock"),
        service_identity("backbeat"),
    ],
    subscribe=["chorus.backbeat.>"],
)

HAP = service_user(
    "hap",
    "people's signed envelopes and directory entries, web sessions; reads chorus.> for the feed",
    publish=[
        *ENVELOPES,
        kv(BUCKET_REGISTRY, "agent.>"),
        kv(BUCKET_HAP_SESSIONS),
        "chorus.svc.licensing.health",
    ],
    subscribe=["chorus.>"],
)

AGENT = NatsUser(
    name="agent",
    purpose=(
        "SDK agents on the bus (chorus_common.agent.Agent): envelopes, their directory entry, "
        "task calls to the coordinator; agents using the gateway's HTTP API need no NATS user"
    ),
    publish=unique_subjects(
        [
            *JETSTREAM,
            *ENVELOPES,
            kv(BUCKET_REGISTRY, "agent.>"),
            "chorus.svc.coordinator.>",
            backbeat_status_subject("*"),
        ]
    ),
    subscribe=unique_subjects([INBOX, *ENVELOPES, BACKBEAT_BEAT]),
    publish_deny=JETSTREAM_DENY,
)

#: the NATS user of each service, by service name (the names of ``roster.ROSTER``)
SERVICE_USERS: dict[str, NatsUser] = {
    u.name: u for u in (LICENSING, ELECTION, PUBSUB_GATEWAY, DHT, COORDINATOR, BACKBEAT, HAP)
}
#: every user in the rendered configuration, in its order
USERS: tuple[NatsUser, ...] = (ADMIN, *SERVICE_USERS.values(), AGENT)


def render_authorization() -> str:
    """The nats-server ``authorization`` block of every user (:data:`USERS`)."""
    return _render_authorization(USERS, SOURCE)


def render_user_index() -> str:
    """YAML ``users: {name: password env}`` of every user, for the Helm chart."""
    return _render_user_index(USERS, SOURCE)
