"""The envelope: one model for all 31 types, with a typed payload chosen by ``type``."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from chorus_common.envelopes._ids import new_id
from chorus_common.envelopes._types import MessageType
from chorus_common.errors import (
    MalformedEnvelopeError,
    OversizeError,
    PayloadError,
    UnknownTypeError,
)

#: Subject-safe token: envelope fields that end up in NATS subjects must match it.
TOKEN_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
Token = Annotated[str, Field(pattern=TOKEN_PATTERN)]

DEFAULT_MAX_BYTES = 1024 * 1024


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Payload(BaseModel):
    """Base of every typed payload; unknown fields are refused so typos surface."""

    model_config = ConfigDict(extra="forbid")
    envelope_type: ClassVar[MessageType]


class Redaction(BaseModel):
    """Left on an envelope that SHHH changed: the original's digest keeps its feed verifiable."""

    model_config = ConfigDict(extra="forbid")
    original_digest: str
    findings: dict[str, int]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    SCHEMA_VERSION: ClassVar[int] = 1

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    type: MessageType
    v: int = Field(default=1, ge=1)
    sender: Token
    sender_role: Token | None = None
    to_roles: list[Token] = Field(default_factory=list, max_length=32)
    project: Token | None = None
    task: Token | None = None
    thread: Token | None = None
    priority: Priority = Priority.NORMAL
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    hop: int = Field(default=0, ge=0)
    feed_seq: int | None = Field(default=None, ge=1)
    prev: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    payload: SerializeAsAny[Payload]
    sig: str | None = None
    redaction: Redaction | None = None

    @model_validator(mode="before")
    @classmethod
    def _typed_payload(cls, data: Any) -> Any:
        """Validate ``payload`` with the model registered for ``type``."""
        if not isinstance(data, dict):
            return data
        raw_type = data.get("type")
        payload = data.get("payload")
        if raw_type is None:
            return data
        try:
            message_type = MessageType(raw_type)
        except ValueError:
            raise UnknownTypeError(
                f"unknown message type {raw_type!r}; expected one of the 31 types "
                f"listed by GET /v1/types",
                message_type=str(raw_type),
            ) from None
        model = payload_model(message_type)
        if isinstance(payload, Payload):
            if not isinstance(payload, model):
                raise PayloadError(
                    f"payload {type(payload).__name__} does not belong to type "
                    f"{message_type.value!r} (expected {model.__name__})",
                    message_type=message_type.value,
                )
            return data
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise PayloadError(
                f"payload of {message_type.value!r} must be a JSON object",
                message_type=message_type.value,
            )
        try:
            typed = model.model_validate(payload)
        except ValidationError as exc:
            raise PayloadError(
                f"payload of {message_type.value!r} is invalid: {_describe(exc)}",
                message_type=message_type.value,
                errors=_error_list(exc),
            ) from None
        return {**data, "payload": typed}

    def signing_bytes(self) -> bytes:
        """Canonical bytes that the signature and the feed chain cover (no sig, no redaction)."""
        body = self.model_dump(mode="json", exclude={"sig", "redaction"})
        return _canonical_json(body)

    def digest(self) -> str:
        """Hex SHA-256 of :meth:`signing_bytes`; after redaction, the original's digest."""
        if self.redaction is not None:
            return self.redaction.original_digest
        return hashlib.sha256(self.signing_bytes()).hexdigest()

    def content_digest(self) -> str:
        """Digest of the envelope as it is now, even if it was redacted."""
        return hashlib.sha256(self.signing_bytes()).hexdigest()

    def encode(self, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        data = self.model_dump_json().encode()
        if len(data) > max_bytes:
            raise OversizeError(
                f"envelope {self.id} is {len(data)} bytes; the limit is {max_bytes} bytes "
                f"(CHORUS_MAX_MESSAGE_BYTES)",
                size=len(data),
                limit=max_bytes,
            )
        return data

    @classmethod
    def decode(cls, data: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
        """Parse and validate one envelope, raising a specific :class:`EnvelopeError`."""
        size = len(data)
        if size > max_bytes:
            raise OversizeError(
                f"message is {size} bytes; the limit is {max_bytes} bytes "
                f"(CHORUS_MAX_MESSAGE_BYTES)",
                size=size,
                limit=max_bytes,
            )
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise MalformedEnvelopeError(
                f"envelope is malformed: {_describe(exc)}", errors=_error_list(exc)
            ) from None

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MalformedEnvelopeError(
                f"envelope is malformed: {_describe(exc)}", errors=_error_list(exc)
            ) from None

    def b64sig(self) -> bytes | None:
        return base64.urlsafe_b64decode(self.sig + "==") if self.sig else None


def _canonical_json(value: Any) -> bytes:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _error_list(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


_REGISTRY: dict[MessageType, type[Payload]] = {}


def register_payload(message_type: MessageType) -> Any:
    """Class decorator binding a payload model to its message type."""

    def bind(model: type[Payload]) -> type[Payload]:
        model.envelope_type = message_type
        _REGISTRY[message_type] = model
        return model

    return bind


def payload_model(message_type: MessageType) -> type[Payload]:
    return _REGISTRY[message_type]


def registered_types() -> dict[MessageType, type[Payload]]:
    return dict(_REGISTRY)
