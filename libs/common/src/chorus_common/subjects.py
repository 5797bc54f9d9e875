"""Subject routing for envelopes and subject-filter validation (ARCHITECTURE.md §2).

Pure functions only: the bus, the gateway and the CLI all route and filter the
same way because they all call this module, and none of it needs a connection.
"""

from __future__ import annotations

import re

from chorus_common.envelopes import Envelope, MessageGroup
from chorus_common.errors import SubjectError

__all__ = [
    "BACKBEAT_BEAT",
    "STREAM_EVENTS_SUBJECTS",
    "backbeat_status_subject",
    "dht_rpc_subject",
    "election_subject",
    "msg_id",
    "primary_subject",
    "routes",
    "subject_matches",
    "validate_filter",
]

#: Every subject the ``CHORUS_EVENTS`` stream captures; routes() never leaves it.
STREAM_EVENTS_SUBJECTS: tuple[str, ...] = (
    "chorus.coord.>",
    "chorus.hmmm.>",
    "chorus.role.>",
    "chorus.project.>",
    "chorus.context.>",
    "chorus.expertise.>",
    "chorus.hierarchy.>",
)
BACKBEAT_BEAT = "chorus.backbeat.beat"
MAX_FILTER_LENGTH = 256
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def _one_token(value: str, what: str) -> str:
    """Refuse a value that would silently add or drop subject tokens (a dot, a space)."""
    if value in ("*", ">") or _TOKEN.match(value):
        return value
    raise SubjectError(
        f"invalid {what} {value!r} for a subject token: use letters, digits, '_' or '-'"
    )


def election_subject(event: str) -> str:
    """``chorus.election.<event>``; ``"*"`` gives the filter for every election event."""
    return f"chorus.election.{_one_token(event, 'election event')}"


def backbeat_status_subject(agent: str) -> str:
    """Per-agent status claims, so one agent's claims can be read without the rest."""
    return f"chorus.backbeat.status.{_one_token(agent, 'agent id')}"


def dht_rpc_subject(node_id: str) -> str:
    """Request/reply subject of one DHT node."""
    return f"chorus.dht.rpc.{_one_token(node_id, 'node id')}"


def primary_subject(env: Envelope) -> str:
    """The one subject whose stream copy is the envelope of record (its id de-duplicates)."""
    t = env.type.value
    group = env.type.group
    if group is MessageGroup.COORDINATION:
        return f"chorus.coord.{t}"
    if group is MessageGroup.HMMM:
        return f"chorus.hmmm.{env.thread or env.task or 'general'}.{t}"
    if group is MessageGroup.ROLE:
        if env.project:
            return f"chorus.project.{env.project}.{t}"
        role = env.to_roles[0] if env.to_roles else (env.sender_role or "all")
        return f"chorus.role.{role}.{t}"
    return f"chorus.context.{t}"


def routes(env: Envelope) -> list[str]:
    """Primary subject first, then role and project copies, without duplicates.

    Copies let a subscriber of one role or project topic see everything meant
    for it without subscribing to every group's subjects.
    """
    t = env.type.value
    out = [primary_subject(env)]
    for role in env.to_roles:
        subject = f"chorus.role.{role}.{t}"
        if subject not in out:
            out.append(subject)
    if env.project:
        subject = f"chorus.project.{env.project}.{t}"
        if subject not in out:
            out.append(subject)
    return out


def msg_id(env: Envelope, index: int) -> str:
    """``Nats-Msg-Id`` of route ``index``: copies need their own id or JetStream drops them."""
    return env.id if index == 0 else f"{env.id}:{index}"


def validate_filter(subject_filter: str) -> str:
    """Check a user's subject filter before NATS sees it, naming the bad token."""
    if not subject_filter or len(subject_filter) > MAX_FILTER_LENGTH:
        raise SubjectError(
            f"a subject filter must be 1 to {MAX_FILTER_LENGTH} characters "
            f"(got {len(subject_filter)})"
        )
    tokens = subject_filter.split(".")
    for i, token in enumerate(tokens):
        if token == ">" and i == len(tokens) - 1:
            continue
        if token == "*" or _TOKEN.match(token):
            continue
        raise SubjectError(
            f"invalid token {token!r} in subject filter {subject_filter!r}: tokens are "
            f"letters, digits, '_' or '-', '*' for one token, '>' only at the end",
            token=token,
        )
    return subject_filter


def subject_matches(subject_filter: str, subject: str) -> bool:
    """NATS matching: ``*`` is exactly one token, ``>`` one or more trailing tokens."""
    f_tokens = subject_filter.split(".")
    s_tokens = subject.split(".")
    for i, f in enumerate(f_tokens):
        if f == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (f != "*" and f != s_tokens[i]):
            return False
    return len(s_tokens) == len(f_tokens)
