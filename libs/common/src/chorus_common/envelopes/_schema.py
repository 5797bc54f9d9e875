"""JSON Schemas of the 31 types, generated from the models that validate them."""

from __future__ import annotations

from typing import Any

from chorus_common.envelopes._envelope import Envelope, payload_model
from chorus_common.envelopes._types import MessageType


def envelope_json_schema() -> dict[str, Any]:
    return Envelope.model_json_schema()


def type_schemas() -> dict[str, dict[str, Any]]:
    """For each type: its group, its payload schema and the envelope schema with that payload."""
    envelope = envelope_json_schema()
    out: dict[str, dict[str, Any]] = {}
    for message_type in MessageType:
        model = payload_model(message_type)
        payload_schema = model.model_json_schema()
        inner = dict(payload_schema)
        defs = {**envelope.get("$defs", {}), **inner.pop("$defs", {})}
        full = {
            **envelope,
            "$defs": defs,
            "title": f"Envelope[{message_type.value}]",
            "properties": {
                **envelope["properties"],
                "type": {"const": message_type.value},
                "payload": inner,
            },
        }
        out[message_type.value] = {
            "type": message_type.value,
            "group": message_type.group.value,
            "description": (model.__doc__ or "").strip(),
            "payload_schema": payload_schema,
            "envelope_schema": full,
        }
    return out
