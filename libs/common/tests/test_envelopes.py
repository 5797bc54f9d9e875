"""Envelopes: every type round-trips; each kind of bad envelope fails with its own error."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.envelopes import Envelope, MessageGroup, MessageType, payload_model, type_schemas
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import (
    MalformedEnvelopeError,
    OversizeError,
    PayloadError,
    UnknownTypeError,
)


def test_there_are_31_types_in_five_groups() -> None:
    assert len(MessageType) == 31
    sizes = {g: sum(1 for t in MessageType if t.group is g) for g in MessageGroup}
    assert sizes == {
        MessageGroup.COORDINATION: 6,
        MessageGroup.HMMM: 7,
        MessageGroup.ROLE: 10,
        MessageGroup.SLURP: 3,
        MessageGroup.CONTEXT: 5,
    }


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_type_round_trips_with_its_typed_payload(message_type: MessageType) -> None:
    env = Envelope(type=message_type, sender="agent-1", payload=SAMPLE_PAYLOADS[message_type])
    decoded = Envelope.decode(env.encode())
    assert decoded == env
    assert type(decoded.payload) is payload_model(message_type)
    assert decoded.digest() == env.digest()


@pytest.mark.parametrize("message_type", list(MessageType))
def test_unknown_payload_field_is_a_payload_error(message_type: MessageType) -> None:
    raw = Envelope(type=message_type, sender="a", payload=SAMPLE_PAYLOADS[message_type])
    doc = json.loads(raw.encode())
    doc["payload"]["not_a_field"] = 1
    with pytest.raises(PayloadError) as info:
        Envelope.decode(json.dumps(doc))
    assert message_type.value in info.value.detail and "not_a_field" in info.value.detail


def test_missing_payload_field_names_the_field() -> None:
    with pytest.raises(PayloadError) as info:
        Envelope.decode(
            json.dumps({"type": "task_claim", "sender": "a", "payload": {"task_id": "t"}})
        )
    assert "repository" in info.value.detail and "agent" in info.value.detail


def test_unknown_type() -> None:
    with pytest.raises(UnknownTypeError) as info:
        Envelope.decode(json.dumps({"type": "task_steal", "sender": "a", "payload": {}}))
    assert "task_steal" in info.value.detail


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"[]",
        json.dumps({"type": "task_claim", "payload": SAMPLE_PAYLOADS[MessageType.TASK_CLAIM]}),
        json.dumps(
            {
                "type": "task_claim",
                "sender": "has space",
                "payload": SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
            }
        ),
        json.dumps(
            {
                "type": "task_claim",
                "sender": "a",
                "hop": -1,
                "payload": SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
            }
        ),
        json.dumps(
            {
                "type": "task_claim",
                "sender": "a",
                "extra": 1,
                "payload": SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
            }
        ),
    ],
)
def test_malformed_envelopes(data: bytes | str) -> None:
    with pytest.raises(MalformedEnvelopeError):
        Envelope.decode(data)


def test_oversize_on_encode_and_decode() -> None:
    env = Envelope(
        type=MessageType.TASK_COMPLETE,
        sender="a",
        payload={"task_id": "t", "agent": "a", "summary": "x" * 4000},
    )
    with pytest.raises(OversizeError) as info:
        env.encode(max_bytes=2048)
    assert "2048" in info.value.detail
    with pytest.raises(OversizeError):
        Envelope.decode(env.encode(), max_bytes=2048)


def test_payload_object_of_the_wrong_type_is_refused() -> None:
    claim = payload_model(MessageType.TASK_CLAIM).model_validate(
        SAMPLE_PAYLOADS[MessageType.TASK_CLAIM]
    )
    with pytest.raises(PayloadError):
        Envelope(type=MessageType.TASK_PROGRESS, sender="a", payload=claim)


def test_ids_sort_by_creation_time() -> None:
    ids = [
        Envelope(type="task_claim", sender="a", payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM]).id
        for _ in range(50)
    ]
    from chorus_common.envelopes import new_id

    assert new_id(now_ms=1000) < new_id(now_ms=2000)
    assert len(set(ids)) == 50


def test_json_schema_for_every_type() -> None:
    schemas = type_schemas()
    assert len(schemas) == 31
    claim = schemas["task_claim"]
    assert claim["group"] == "coordination"
    assert {"task_id", "repository", "agent"} <= set(claim["payload_schema"]["required"])
    assert claim["envelope_schema"]["properties"]["type"] == {"const": "task_claim"}


@settings(max_examples=60, deadline=None)
@given(
    message_type=st.sampled_from(list(MessageType)),
    sender=st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True),
    roles=st.lists(st.from_regex(r"[a-z]{1,12}", fullmatch=True), max_size=3),
    hop=st.integers(0, 10),
    text=st.text(min_size=1, max_size=200),
)
def test_generated_envelopes_round_trip(
    message_type: MessageType, sender: str, roles: list[str], hop: int, text: str
) -> None:
    payload = dict(SAMPLE_PAYLOADS[message_type])
    for field in ("summary", "note", "content", "detail", "reason", "answer", "comment"):
        if field in payload_model(message_type).model_fields and field not in ("reason",):
            payload[field] = text
            break
    env = Envelope(type=message_type, sender=sender, to_roles=roles, hop=hop, payload=payload)
    assert Envelope.decode(env.encode()) == env
