"""NATS users and their subject permissions: the machinery compose and Helm are built with.

Each CHORUS service connects to NATS as its own user, allowed to publish and
subscribe only on the subjects its code uses (ARCHITECTURE.md §2), so that a
compromised or buggy service cannot, say, vote in the election, take the admin
lease or rewrite the task board.  This module holds what such a user is
(:class:`NatsUser`, :func:`service_user`), the subjects it is built from and how a
list of users is rendered; which users exist is the application's to declare
(``chorus_cli.nats_users``, one per service of its roster).  ``deploy/nats/generate.py``
renders :func:`render_authorization` of those users into
``deploy/compose/nats-auth.conf`` and the Helm chart's ``files/nats-auth.conf``; a
test runs the whole constellation under them, so a subject a service starts using
without being listed there fails that test instead of failing in production.

Passwords never appear in a file: the block names them as nats-server
environment references (``$CHORUS_NATS_PASSWORD_ELECTION``), which the server
resolves from its own environment at start (and refuses to start if one is
missing).  Each service reads its own as ``CHORUS_NATS_USER`` /
``CHORUS_NATS_PASSWORD``.

What the lists cannot express: every service creates the shared streams and
buckets at start (:func:`chorus_common.topology.declare_topology`), so each
needs the JetStream API, and through it can read any stream or bucket.  The
destructive JetStream calls no service makes (delete, purge, snapshot, restore,
cluster operations) are denied; the writes that matter (publishing envelopes,
KV keys) are allowed per service and per key prefix.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass

from chorus_common.license_gate import SUBJECT as LICENSE_SUBJECT
from chorus_common.service_signing import SERVICE_KEY_PREFIX
from chorus_common.subjects import (
    BACKBEAT_BEAT,
    STREAM_EVENTS_SUBJECTS,
    backbeat_status_subject,
    subject_matches,
)
from chorus_common.topology import (
    BUCKET_ELECTION,
    BUCKET_REGISTRY,
)

__all__ = [
    "ENVELOPES",
    "HEADER",
    "INBOX",
    "JETSTREAM",
    "JETSTREAM_DENY",
    "LICENSE_REQUESTS",
    "NatsUser",
    "client_env",
    "kv",
    "leader_lease",
    "micro_subjects",
    "new_password",
    "new_passwords",
    "render_authorization",
    "render_user_index",
    "service_identity",
    "service_user",
    "unique_subjects",
]

#: each user's password comes from this environment variable of nats-server
PASSWORD_ENV_PREFIX = "CHORUS_NATS_PASSWORD_"

INBOX = "_INBOX.>"
#: JetStream API calls (topology, KV reads and writes, consumers), acks and flow control
JETSTREAM = ("$JS.API.>", "$JS.ACK.>", "$JS.FC.>")
#: what no service does through the JetStream API: destroy or move shared state
JETSTREAM_DENY = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.STREAM.SNAPSHOT.>",
    "$JS.API.STREAM.RESTORE.>",
    "$JS.API.STREAM.PEER.>",
    "$JS.API.STREAM.LEADER.>",
    "$JS.API.CONSUMER.LEADER.>",
    "$JS.API.META.>",
    "$JS.API.SERVER.>",
    "$JS.API.ACCOUNT.>",
)
#: the seat-lease requests of the license gate every service but licensing passes
LICENSE_REQUESTS = tuple(LICENSE_SUBJECT.format(verb=v) for v in ("grant", "renew", "release"))
#: envelopes, wherever :func:`chorus_common.subjects.routes` may send a copy
ENVELOPES = STREAM_EVENTS_SUBJECTS


def kv(bucket: str, key: str = ">") -> str:
    """The subject a KV write of ``key`` (a put, create, update or delete) is published to."""
    return f"$KV.{bucket}.{key}"


def leader_lease(scope: str) -> str:
    """The KV subject of :class:`chorus_common.leadership.LeaderLease` ``scope`` (key ``leader.<scope>``)."""
    return kv(BUCKET_ELECTION, f"leader.{scope}")


def service_identity(service: str) -> str:
    """The registry keys of ``service``'s replicas (``service.<service>.<sender>``,
    chorus_common.service_signing): only that service writes them, so what is stored there
    speaks for it."""
    return kv(BUCKET_REGISTRY, f"{SERVICE_KEY_PREFIX}.{service}.>")


def micro_subjects(service: str) -> tuple[str, ...]:
    """What :class:`chorus_common.service.Service` subscribes to as NATS micro ``chorus-<service>``.

    ``$SRV.<verb>``, ``$SRV.<verb>.chorus-<service>``, ``$SRV.<verb>.chorus-<service>.<id>``
    for discovery, and the endpoint group ``chorus.svc.<service>.*``: no service
    can answer discovery or RPC in another's name.
    """
    kind = f"chorus-{service}"
    return ("$SRV.*", f"$SRV.*.{kind}", f"$SRV.*.{kind}.*", f"chorus.svc.{service}.>")


@dataclass(frozen=True)
class NatsUser:
    """One NATS user: who it is for, and what it may publish and subscribe to.

    ``allow_responses`` lets a user answer requests it received (NATS micro
    endpoints, DHT RPC, election discovery) without a blanket publish right on
    ``_INBOX.>``, which would let it forge replies to anyone.
    """

    name: str
    purpose: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    publish_deny: tuple[str, ...] = ()
    allow_responses: bool = False
    #: no permissions block at all: operators
    unrestricted: bool = False

    @property
    def password_env(self) -> str:
        """The nats-server environment variable holding this user's password."""
        return PASSWORD_ENV_PREFIX + self.name.upper().replace("-", "_")

    def may_publish(self, subject: str) -> bool:
        """What nats-server decides for a publish (allow-listed and not denied), in pure code."""
        if self.unrestricted:
            return True
        allowed = any(subject_matches(a, subject) for a in self.publish)
        return allowed and not any(subject_matches(d, subject) for d in self.publish_deny)

    def may_subscribe(self, subject: str) -> bool:
        if self.unrestricted:
            return True
        return any(subject_matches(a, subject) for a in self.subscribe)


def service_user(
    name: str,
    purpose: str,
    *,
    publish: Iterable[str] = (),
    subscribe: Iterable[str] = (),
    licensed: bool = True,
) -> NatsUser:
    """A service user: its own lists plus what the shared service base does for every service.

    The base declares the topology and uses KV (JetStream), registers as NATS
    micro, reports its operations on the beat (``Tracker``), takes requests'
    replies on ``_INBOX`` and, unless it is the licensing service, asks for a
    seat lease.
    """
    base_publish = [*JETSTREAM, backbeat_status_subject("*")]
    if licensed:
        base_publish += LICENSE_REQUESTS
    return NatsUser(
        name=name,
        purpose=purpose,
        publish=unique_subjects([*base_publish, *publish]),
        subscribe=unique_subjects([INBOX, *micro_subjects(name), BACKBEAT_BEAT, *subscribe]),
        publish_deny=JETSTREAM_DENY,
        allow_responses=True,
    )


def unique_subjects(items: Iterable[str]) -> tuple[str, ...]:
    """Keep order, drop repeats and subjects another entry's wildcard already covers."""
    kept = tuple(dict.fromkeys(items))
    return tuple(s for s in kept if not any(o != s and subject_matches(o, s) for o in kept))


#: the first lines of a rendered file; ``{source}`` names where its users are declared
HEADER = (
    "# NATS users and subject permissions of the CHORUS constellation.\n"
    "# Generated from {source} by deploy/nats/generate.py;\n"
    "# do not edit. Passwords are nats-server environment variables ($CHORUS_NATS_PASSWORD_*).\n"
)


def _subjects(items: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{s}"' for s in items) + "]"


def _render_user(user: NatsUser) -> list[str]:
    lines = [f"    # {user.name}: {user.purpose}", "    {", f'      user: "{user.name}"']
    lines.append(f"      password: ${user.password_env}")
    if not user.unrestricted:
        lines.append("      permissions: {")
        lines.append("        publish: {")
        lines.append(f"          allow: {_subjects(user.publish)}")
        if user.publish_deny:
            lines.append(f"          deny: {_subjects(user.publish_deny)}")
        lines.append("        }")
        lines.append(f"        subscribe: {{allow: {_subjects(user.subscribe)}}}")
        if user.allow_responses:
            lines.append("        allow_responses: true")
        lines.append("      }")
    lines.append("    }")
    return lines


def render_authorization(users: Iterable[NatsUser], source: str) -> str:
    """The nats-server ``authorization { users = [...] }`` block of ``users`` (declared in
    ``source``, named in the header), for a file ``include``d by nats.conf."""
    lines = [HEADER.format(source=source).rstrip("\n"), "authorization {", "  users = ["]
    for user in users:
        lines += _render_user(user)
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def render_user_index(users: Iterable[NatsUser], source: str) -> str:
    """YAML ``users: {name: password env}`` of ``users`` for the Helm chart's Secret and NATS pod env."""
    lines = [HEADER.format(source=source).rstrip("\n"), "users:"]
    lines += [f"  {u.name}: {u.password_env}" for u in users]
    return "\n".join(lines) + "\n"


#: passwords start with a letter and use only these, because nats-server parses an
#: environment value as a config token: "12345" would be a number, "true" a boolean
PASSWORD_ALPHABET = string.ascii_letters + string.digits


def new_password(length: int = 32) -> str:
    """A random password nats-server reads back as exactly this string."""
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length - 1))


def new_passwords(users: Iterable[NatsUser]) -> dict[str, str]:
    """Fresh passwords for every user, by environment variable (for nats-server's environment)."""
    return {u.password_env: new_password() for u in users}


def client_env(user: NatsUser, passwords: dict[str, str]) -> dict[str, str]:
    """The ``CHORUS_NATS_USER`` / ``CHORUS_NATS_PASSWORD`` a process connecting as ``user`` needs."""
    return {"CHORUS_NATS_USER": user.name, "CHORUS_NATS_PASSWORD": passwords[user.password_env]}
