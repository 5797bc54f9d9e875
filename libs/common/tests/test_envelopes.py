"""Envelopes: every type round-trips; each kind of bad envelope fails with its own error."""

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.envelopes import (
    DependencyInfo,
    Envelope,
    MessageGroup,
    MessageType,
    MetaDiscussion,
    envelope_json_schema,
    payload_model,
    registered_types,
    type_schemas,
)
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import (
    MalformedEnvelopeError,
    OversizeError,
    PayloadError,
    UnknownTypeError,
)


def test_every_type_has_a_model_and_a_sample() -> None:
    assert set(registered_types()) == set(MessageType)
    assert set(SAMPLE_PAYLOADS) == set(MessageType)
    assert len({model.__name__ for model in registered_types().values()}) == 31


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


@pytest.mark.parametrize(
    ("message_type", "payload", "field"),
    [
        (MessageType.TASK_PROGRESS, {"task_id": "t", "agent": "a", "progress": 1.5}, "progress"),
        (
            MessageType.WORK_ALLOCATION,
            {"task_id": "t", "agent": "a", "score": 1, "term": 0},
            "term",
        ),
        (MessageType.AVAILABILITY_BROADCAST, {"agent": "a", "status": "sleepy"}, "status"),
        (
            MessageType.CONTEXT_RELEVANCE,
            {"ucxl_address": "u", "task_id": "t", "relevance": -0.1},
            "relevance",
        ),
        (MessageType.TASK_CLAIM, {"task_id": "", "repository": "r", "agent": "a"}, "task_id"),
        (MessageType.META_DISCUSSION, {"max_hops": -1}, "max_hops"),
    ],
)
def test_out_of_range_payload_value_is_a_payload_error(
    message_type: MessageType, payload: dict[str, object], field: str
) -> None:
    with pytest.raises(PayloadError) as info:
        Envelope.decode(json.dumps({"type": message_type.value, "sender": "a", "payload": payload}))
    assert field in info.value.detail
    assert info.value.extra["errors"][0]["loc"][0] == field


def test_payload_that_is_not_an_object_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        Envelope.decode(json.dumps({"type": "task_claim", "sender": "a", "payload": [1, 2]}))


def test_missing_type_is_malformed() -> None:
    with pytest.raises(MalformedEnvelopeError):
        Envelope.decode(json.dumps({"sender": "a", "payload": {}}))


def test_dependency_detected_meta_discussion_defaults_to_three_hops() -> None:
    """The shape SPEC.md §10 gives for a detected dependency round-trips intact."""
    env = Envelope(
        type=MessageType.META_DISCUSSION,
        sender="coordinator",
        thread="dep-1",
        payload={
            "message_type": "dependency_detected",
            "content": "api:t-1 and web:t-7 must be coordinated",
            "dependency": {
                "rule": "API_Contract",
                "confidence": 0.8,
                "reason": "API definition and implementation dependency",
                "task_a": "api:t-1",
                "task_b": "web:t-7",
            },
            "agents": ["agent-1", "agent-2"],
            "repositories": ["api", "web"],
            "detected_at": "2025-01-01T00:00:00Z",
        },
    )
    decoded = Envelope.decode(env.encode())
    assert isinstance(decoded.payload, MetaDiscussion)
    assert isinstance(decoded.payload.dependency, DependencyInfo)
    assert decoded.payload.hop_count == 0 and decoded.payload.max_hops == 3
    assert decoded.payload.detected_at is not None and decoded.payload.detected_at.tzinfo


def _validator(schema: dict[str, object]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("message_type", list(MessageType))
def test_exported_schemas_accept_what_the_models_accept(message_type: MessageType) -> None:
    """The schemas served by GET /v1/types agree with the models on good and bad envelopes."""
    info = type_schemas()[message_type.value]
    assert info["group"] == message_type.group.value and info["description"]
    env = Envelope(
        type=message_type,
        sender="a",
        to_roles=["qa"],
        project="web",
        payload=SAMPLE_PAYLOADS[message_type],
    )
    doc = json.loads(env.encode())
    with_extra = {**doc, "payload": {**doc["payload"], "not_a_field": 1}}
    for schema in (info["envelope_schema"], envelope_json_schema()):
        validator = _validator(schema)
        assert list(validator.iter_errors(doc)) == []
        assert list(validator.iter_errors(with_extra)) != []
    assert list(_validator(info["payload_schema"]).iter_errors(doc["payload"])) == []
    other = next(t for t in MessageType if t is not message_type)
    assert list(_validator(info["envelope_schema"]).iter_errors({**doc, "type": other.value}))


_FREE_TEXT = ("summary", "note", "content", "detail", "answer", "comment", "guidance")


@settings(max_examples=100, deadline=None)
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
    fields = payload_model(message_type).model_fields
    field = next((f for f in _FREE_TEXT if f in fields), None)
    if field is not None:
        payload[field] = text
    env = Envelope(type=message_type, sender=sender, to_roles=roles, hop=hop, payload=payload)
    decoded = Envelope.decode(env.encode())
    assert decoded == env
    assert decoded.signing_bytes() == env.signing_bytes()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    message_type=st.sampled_from(list(MessageType)),
    mutation=st.dictionaries(st.text(max_size=20), _JSON, max_size=3),
    drop=st.booleans(),
)
def test_any_payload_for_any_type_decodes_or_names_its_fault(
    message_type: MessageType, mutation: dict[str, object], drop: bool
) -> None:
    """Whatever an agent sends as a payload, decoding gives the envelope or a ChorusError with a
    stable code (what the gateway answers and the bus counts as poison), never a crash."""
    payload = dict(SAMPLE_PAYLOADS[message_type])
    if drop and payload:
        payload.pop(next(iter(payload)))
    payload.update(mutation)
    raw = {"type": message_type.value, "sender": "agent-1", "payload": payload}
    try:
        env = Envelope.decode(json.dumps(raw))
    except (PayloadError, MalformedEnvelopeError, OversizeError) as exc:
        assert exc.code and exc.detail
        return
    assert env.type is message_type
    assert Envelope.decode(env.encode()) == env


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | _JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_decode_to_a_chorus_error(data: bytes) -> None:
    try:
        env = Envelope.decode(data)
    except (MalformedEnvelopeError, PayloadError, UnknownTypeError, OversizeError) as exc:
        assert exc.code and exc.detail  # anything else escaping is the failure
        return
    assert Envelope.decode(env.encode()) == env
