"""Subject routing for envelopes and subject-filter validation (ARCHITECTURE.md §2)."""

from __future__ import annotations

import re

from chorus_common.envelopes import Envelope, MessageGroup
from chorus_common.errors import SubjectError

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
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def election_subject(event: str) -> str:
    return f"chorus.election.{event}"


def backbeat_status_subject(agent: str) -> str:
    return f"chorus.backbeat.status.{agent}"


def dht_rpc_subject(node_id: str) -> str:
    return f"chorus.dht.rpc.{node_id}"


def primary_subject(env: Envelope) -> str:
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
    """Primary subject first, then role and project copies, without duplicates."""
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
    return env.id if index == 0 else f"{env.id}:{index}"


def validate_filter(subject_filter: str) -> str:
    if not subject_filter or len(subject_filter) > 256:
        raise SubjectError("a subject filter must be 1 to 256 characters")
    tokens = subject_filter.split(".")
    for i, token in enumerate(tokens):
        if token == ">" and i == len(tokens) - 1:
            continue
        if token == "*" or _TOKEN.match(token):
            continue
        raise SubjectError(
            f"invalid token {token!r} in subject filter {subject_filter!r}: tokens are "
            f"letters, digits, '_' or '-', '*' for one token, '>' only at the end"
        )
    return subject_filter


def subject_matches(subject_filter: str, subject: str) -> bool:
    f_tokens = subject_filter.split(".")
    s_tokens = subject.split(".")
    for i, f in enumerate(f_tokens):
        if f == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (f != "*" and f != s_tokens[i]):
            return False
    return len(s_tokens) == len(f_tokens)
