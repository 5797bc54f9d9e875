"""Subjects: each group routes as ARCHITECTURE.md §2 says; filters validate and match like NATS."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import SubjectError
from chorus_common.subjects import (
    BACKBEAT_BEAT,
    STREAM_EVENTS_SUBJECTS,
    backbeat_status_subject,
    dht_rpc_subject,
    election_subject,
    msg_id,
    primary_subject,
    routes,
    subject_matches,
    validate_filter,
)

TOKEN = st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True)


def env(t: MessageType, **kw: object) -> Envelope:
    return Envelope(type=t, sender="a", payload=SAMPLE_PAYLOADS[t], **kw)


def test_primary_subject_per_group() -> None:
    assert routes(env(MessageType.TASK_CLAIM)) == ["chorus.coord.task_claim"]
    assert routes(env(MessageType.META_DISCUSSION, thread="th1")) == [
        "chorus.hmmm.th1.meta_discussion"
    ]
    assert (
        routes(env(MessageType.META_DISCUSSION, task="t9"))[0] == "chorus.hmmm.t9.meta_discussion"
    )
    assert routes(env(MessageType.META_DISCUSSION))[0] == "chorus.hmmm.general.meta_discussion"
    assert routes(env(MessageType.STATUS_UPDATE, sender_role="qa")) == [
        "chorus.role.qa.status_update"
    ]
    assert routes(env(MessageType.CONTEXT_REQUEST)) == ["chorus.context.context_request"]
    assert routes(env(MessageType.SLURP_EVENT_ACK)) == ["chorus.context.slurp_event_ack"]


def test_hmmm_prefers_the_thread_over_the_task() -> None:
    e = env(MessageType.ESCALATION_TRIGGER, thread="th1", task="t9")
    assert primary_subject(e) == "chorus.hmmm.th1.escalation_trigger"


def test_role_group_primary_without_a_project() -> None:
    assert primary_subject(env(MessageType.ROLE_ANNOUNCEMENT)) == (
        "chorus.role.all.role_announcement"
    )
    targeted = env(MessageType.MENTORSHIP_REQUEST, sender_role="dev", to_roles=["lead", "qa"])
    assert routes(targeted) == [
        "chorus.role.lead.mentorship_request",
        "chorus.role.qa.mentorship_request",
    ]


def test_role_fan_out_and_project_copy_without_duplicates() -> None:
    e = env(MessageType.EXPERTISE_REQUEST, project="web", to_roles=["backend", "qa", "backend"])
    assert routes(e) == [
        "chorus.project.web.expertise_request",
        "chorus.role.backend.expertise_request",
        "chorus.role.qa.expertise_request",
    ]
    c = env(MessageType.TASK_ANNOUNCEMENT, project="web", to_roles=["backend"])
    assert routes(c) == [
        "chorus.coord.task_announcement",
        "chorus.role.backend.task_announcement",
        "chorus.project.web.task_announcement",
    ]
    assert msg_id(c, 0) == c.id and msg_id(c, 2) == f"{c.id}:2"


@settings(max_examples=150, deadline=None)
@given(
    message_type=st.sampled_from(list(MessageType)),
    roles=st.lists(TOKEN, max_size=4),
    sender_role=st.none() | TOKEN,
    project=st.none() | TOKEN,
    thread=st.none() | TOKEN,
    task=st.none() | TOKEN,
)
def test_every_route_is_captured_by_the_events_stream(
    message_type: MessageType,
    roles: list[str],
    sender_role: str | None,
    project: str | None,
    thread: str | None,
    task: str | None,
) -> None:
    e = env(
        message_type,
        to_roles=roles,
        sender_role=sender_role,
        project=project,
        thread=thread,
        task=task,
    )
    subjects = routes(e)
    assert subjects[0] == primary_subject(e)
    assert len(subjects) == len(set(subjects))
    assert len({msg_id(e, i) for i in range(len(subjects))}) == len(subjects)
    for subject in subjects:
        assert validate_filter(subject) == subject
        assert subject.endswith(f".{message_type.value}")
        assert any(subject_matches(f, subject) for f in STREAM_EVENTS_SUBJECTS)
    for role in roles:
        assert f"chorus.role.{role}.{message_type.value}" in subjects
    if project:
        assert f"chorus.project.{project}.{message_type.value}" in subjects


def test_service_subjects() -> None:
    assert election_subject("heartbeat") == "chorus.election.heartbeat"
    assert election_subject("*") == "chorus.election.*"
    assert BACKBEAT_BEAT == "chorus.backbeat.beat"
    assert backbeat_status_subject("agent-1") == "chorus.backbeat.status.agent-1"
    assert dht_rpc_subject("node_7") == "chorus.dht.rpc.node_7"
    assert not any(subject_matches(f, BACKBEAT_BEAT) for f in STREAM_EVENTS_SUBJECTS)


@pytest.mark.parametrize("bad", ["", "a.b", "has space", "x>"])
def test_service_subject_parts_are_single_tokens(bad: str) -> None:
    for helper in (election_subject, backbeat_status_subject, dht_rpc_subject):
        with pytest.raises(SubjectError):
            helper(bad)


@pytest.mark.parametrize(
    "good",
    [
        "chorus.>",
        "chorus.role.backend.>",
        "chorus.*.x",
        "a",
        ">",
        "*",
        "chorus.hmmm.*.meta_discussion",
        "x" * 256,
    ],
)
def test_valid_filters(good: str) -> None:
    assert validate_filter(good) == good


@pytest.mark.parametrize(
    ("bad", "token"),
    [
        ("chorus..x", "''"),
        ("chorus.>.x", "'>'"),
        ("chorus role", "'chorus role'"),
        ("chorus.a$b", "'a$b'"),
        (">x", "'>x'"),
        ("chorus.*x", "'*x'"),
        ("chorus.", "''"),
        (".chorus", "''"),
    ],
)
def test_invalid_filters_name_the_bad_token(bad: str, token: str) -> None:
    with pytest.raises(SubjectError) as info:
        validate_filter(bad)
    assert f"invalid token {token}" in info.value.detail
    assert info.value.to_problem()["code"] == "subject_invalid"


@pytest.mark.parametrize("bad", ["", "x" * 257])
def test_filter_length_is_bounded(bad: str) -> None:
    with pytest.raises(SubjectError) as info:
        validate_filter(bad)
    assert "1 to 256 characters" in info.value.detail


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("chorus.>", "chorus.coord.task_claim", True),
        ("chorus.>", "chorus", False),
        (">", "chorus", True),
        ("chorus.*.task_claim", "chorus.coord.task_claim", True),
        ("chorus.*", "chorus.coord.task_claim", False),
        ("chorus.*", "chorus", False),
        ("chorus.*.>", "chorus.coord", False),
        ("chorus.*.>", "chorus.hmmm.th1.meta_discussion", True),
        ("chorus.coord.task_claim", "chorus.coord.task_claim", True),
        ("chorus.coord.task_claim", "chorus.coord.task_progress", False),
        ("chorus.coord.task_claim", "chorus.coord.task_claim.extra", False),
    ],
)
def test_matching(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(TOKEN, min_size=1, max_size=6), data=st.data())
def test_wildcards_match_like_nats(tokens: list[str], data: st.DataObject) -> None:
    subject = ".".join(tokens)
    assert subject_matches(subject, subject)
    i = data.draw(st.integers(0, len(tokens) - 1))
    star = ".".join([*tokens[:i], "*", *tokens[i + 1 :]])
    assert subject_matches(validate_filter(star), subject)
    tail = ".".join([*tokens[:i], ">"])
    assert subject_matches(validate_filter(tail), subject)
    assert not subject_matches(".".join([*tokens, ">"]), subject)
    assert not subject_matches(".".join([*tokens, "*"]), subject)
