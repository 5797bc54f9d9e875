import pytest

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import SubjectError
from chorus_common.subjects import msg_id, routes, subject_matches, validate_filter


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


@pytest.mark.parametrize(
    "good",
    ["chorus.>", "chorus.role.backend.>", "chorus.*.x", "a", "chorus.hmmm.*.meta_discussion"],
)
def test_valid_filters(good: str) -> None:
    assert validate_filter(good) == good


@pytest.mark.parametrize(
    "bad", ["", "chorus..x", "chorus.>.x", "chorus role", "chorus.a$b", "x" * 300, ">x"]
)
def test_invalid_filters_name_the_problem(bad: str) -> None:
    with pytest.raises(SubjectError):
        validate_filter(bad)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("chorus.>", "chorus.coord.task_claim", True),
        ("chorus.>", "chorus", False),
        ("chorus.*.task_claim", "chorus.coord.task_claim", True),
        ("chorus.*", "chorus.coord.task_claim", False),
        ("chorus.coord.task_claim", "chorus.coord.task_claim", True),
        ("chorus.coord.task_claim", "chorus.coord.task_progress", False),
    ],
)
def test_matching(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected
