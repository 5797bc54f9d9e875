"""The shared core topics read the JSON that was on the wire before they existed, and write it."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from chorus_common import topics
from chorus_common.bus.topics import DECLARED
from chorus_common.errors import MalformedBodyError


def test_every_shared_subject_is_declared_once() -> None:
    patterns = [spec.pattern for spec in DECLARED]
    assert len(patterns) == len(set(patterns))
    for spec in (
        topics.BEATS,
        topics.STATUS_CLAIMS,
        topics.BARS,
        *topics.ELECTION_TOPICS.values(),
        topics.LICENSE_GRANT,
        topics.LICENSE_RENEW,
        topics.LICENSE_RELEASE,
        topics.SERVICE_HEALTH,
        topics.COORDINATOR_TASKS,
    ):
        assert spec in DECLARED
    assert set(topics.ELECTION_TOPICS) == {
        "discovery_request",
        "candidacy",
        "heartbeat",
        "stepdown",
        "started",
        "winner",
    }
    assert topics.CLAIM_SUBJECTS == "chorus.backbeat.status.*"


@pytest.mark.parametrize(
    ("event", "body"),
    [
        (
            "candidacy",
            {"node": "n1", "total": 0.5, "components": {"uptime": 1.0}, "eligible": True},
        ),
        ("heartbeat", {"node": "n1", "term": 3, "at": 1.5}),
        ("stepdown", {"node": "n1", "term": 3, "reason": "manual", "total": None, "at": 1.5}),
        (
            "stepdown",
            {
                "node": "n1",
                "term": 3,
                "reason": "challenge",
                "total": 0.4,
                "challenger": "n2",
                "challenger_total": 0.9,
                "at": 1.5,
            },
        ),
        ("started", {"node": "n1", "trigger": "manual_trigger", "at": 1.5}),
        ("winner", {"node": "n1", "term": 4, "score": {"uptime": 1.0}, "at": 1.5}),
        ("discovery_request", {"node": "n1"}),
    ],
)
def test_election_messages_of_the_previous_version_decode_and_encode_the_same(
    event: str, body: dict[str, object]
) -> None:
    spec = topics.ELECTION_TOPICS[event]
    old = json.dumps(body).encode()  # what the previous participant sent
    value = spec.decode(old)
    assert json.loads(value.model_dump_json()) == body
    # a field a later version adds is ignored, not refused
    assert spec.decode(json.dumps({**body, "later": [1]}).encode()) == value


def test_a_heartbeat_names_its_node_and_an_integer_term() -> None:
    spec = topics.ELECTION_HEARTBEAT
    assert spec.decode(b'{"node": "n1"}').term == 0
    for noise in (b"{}", b'{"term": 7}', b'{"node": 5, "term": 1}', b"[1]", b'{"node": ""}'):
        with pytest.raises(MalformedBodyError):
            spec.decode(noise)
    for term in (b"true", b"3.0", b'"3"', b"null"):
        with pytest.raises(MalformedBodyError):
            spec.decode(b'{"node": "n1", "term": %s}' % term)
    assert topics.ElectionSpeaker.model_validate_json(b'{"node": 5}').node == 5


def test_the_discovery_answer_is_the_admin_and_its_term() -> None:
    answer = topics.DiscoveryResponse.model_validate_json(b'{"admin": "n1", "term": 2}')
    assert (answer.admin, answer.term) == ("n1", 2)
    assert json.loads(answer.model_dump_json()) == {"admin": "n1", "term": 2}


def test_seat_answers_read_as_granted_released_or_refused() -> None:
    granted = {
        "ok": True,
        "lease_id": "l1",
        "seat": 0,
        "holder": "svc",
        "kind": "service",
        "expires_at": 2.0,
        "granted_at": 1.0,
        "expires_in_seconds": 1.0,
    }
    answer = topics.GrantAnswer.model_validate_json(json.dumps(granted).encode()).root
    assert isinstance(answer, topics.LeaseGranted) and answer.lease_id == "l1"
    refused = {"ok": False, "error": {"status": 404, "detail": "no such lease"}}
    answer2 = topics.GrantAnswer.model_validate_json(json.dumps(refused).encode()).root
    assert isinstance(answer2, topics.LeaseRefused) and answer2.error["status"] == 404
    released = topics.ReleaseAnswer.model_validate_json(b'{"ok": true}').root
    assert isinstance(released, topics.LeaseReleased)
    with pytest.raises(ValidationError):
        topics.GrantAnswer.model_validate_json(b'{"ok": true}')
    # a gate's request goes out as given: the licensing service judges it
    request = topics.LeaseRequest.model_construct(holder="h", kind="service")
    assert json.loads(request.model_dump_json()) == {"holder": "h", "kind": "service"}


def test_service_health_reads_a_health_document_and_needs_its_checks() -> None:
    document = {
        "service": "licensing",
        "version": "1",
        "node_id": "n1",
        "status": "ok",
        "ready": True,
        "uptime_seconds": 1.5,
        "checks": {"license": "ok", "bus": "ok"},
    }
    health = topics.ServiceHealth.model_validate_json(json.dumps(document).encode())
    assert health.checks["license"] == "ok"
    with pytest.raises(ValidationError):
        topics.ServiceHealth.model_validate_json(b'{"service": "licensing", "status": "ok"}')
    assert topics.SERVICE_HEALTH.subject(service="licensing") == "chorus.svc.licensing.health"


def test_a_task_call_sends_only_what_the_agent_says() -> None:
    claim = topics.TaskCall(agent="a1", task_id="t-1")
    assert json.loads(claim.model_dump_json()) == {"agent": "a1", "task_id": "t-1"}
    progress = topics.TaskCall(agent="a1", task_id="t-1", progress=0.5)
    assert json.loads(progress.model_dump_json()) == {
        "agent": "a1",
        "task_id": "t-1",
        "progress": 0.5,
    }
    answer = topics.TaskAnswer.model_validate_json(b'{"ok": false, "error": {"code": "conflict"}}')
    assert not answer.ok and answer.error == {"code": "conflict"}


def test_backbeat_documents_ignore_fields_a_later_version_adds() -> None:
    frame = {
        "type": "backbeat.beatframe.v1",
        "cluster_id": "c",
        "beat_index": 3,
        "downbeat": False,
        "phase": "plan",
        "hlc": "1:0:n",
        "deadline_at": "2026-01-01T00:00:00Z",
        "tempo_bpm": 2.0,
        "window_id": "0" * 32,
        "later": True,
    }
    assert topics.BEATS.decode(json.dumps(frame).encode()).beat_index == 3
    claim = topics.STATUS_CLAIMS.decode(
        b'{"agent_id": "a", "beat_index": 1, "state": "idle", "hlc": "1:0:a", "later": 1}'
    )
    assert claim.agent_id == "a"
    assert topics.STATUS_CLAIMS.subject(agent="a") == "chorus.backbeat.status.a"
