"""Envelopes: the one wire model for the 31 CHORUS message types."""

from chorus_common.envelopes._envelope import (
    DEFAULT_MAX_BYTES,
    Envelope,
    Payload,
    Priority,
    Redaction,
    payload_model,
    register_payload,
    registered_types,
)
from chorus_common.envelopes._ids import new_id
from chorus_common.envelopes._payloads import *  # noqa: F403
from chorus_common.envelopes._payloads import __all__ as _payload_names
from chorus_common.envelopes._schema import envelope_json_schema, type_schemas
from chorus_common.envelopes._types import MessageGroup, MessageType

__all__ = [
    *_payload_names,
    "DEFAULT_MAX_BYTES",
    "Envelope",
    "MessageGroup",
    "MessageType",
    "Payload",
    "Priority",
    "Redaction",
    "envelope_json_schema",
    "new_id",
    "payload_model",
    "register_payload",
    "registered_types",
    "type_schemas",
]
