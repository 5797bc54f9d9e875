"""JSON Schemas of the 31 types, generated from the models that validate them.

Generated rather than written so ``GET /v1/types`` and the AsyncAPI document can
never disagree with what the bus actually accepts.
"""

from __future__ import annotations

from typing import Any

from chorus_common.envelopes._envelope import Envelope, payload_model
from chorus_common.envelopes._types import MessageType

_REF = "#/$defs/{model}"


def _base() -> tuple[dict[str, Any], dict[str, Any]]:
    """The envelope schema without the placeholder ``Payload`` definition, and its defs."""
    envelope = Envelope.model_json_schema(ref_template=_REF)
    defs = dict(envelope.pop("$defs", {}))
    defs.pop("Payload", None)
    return envelope, defs


def envelope_json_schema() -> dict[str, Any]:
    """One schema for any envelope: ``type`` selects the payload's schema (if/then per type)."""
    envelope, defs = _base()
    rules: list[dict[str, Any]] = []
    for message_type in MessageType:
        model = payload_model(message_type)
        payload_schema = model.model_json_schema(ref_template=_REF)
        defs.update(payload_schema.pop("$defs", {}))
        defs[model.__name__] = payload_schema
        rules.append(
            {
                "if": {"properties": {"type": {"const": message_type.value}}, "required": ["type"]},
                "then": {"properties": {"payload": {"$ref": _REF.format(model=model.__name__)}}},
            }
        )
    return {
        **envelope,
        "$defs": defs,
        "properties": {
            **envelope["properties"],
            "payload": {"type": "object", "description": "Shape depends on `type`."},
        },
        "allOf": rules,
    }


def type_schemas() -> dict[str, dict[str, Any]]:
    """For each type: its group, its payload schema and the envelope schema with that payload."""
    out: dict[str, dict[str, Any]] = {}
    for message_type in MessageType:
        envelope, defs = _base()
        model = payload_model(message_type)
        payload_schema = model.model_json_schema(ref_template=_REF)
        inner = dict(payload_schema)
        defs.update(inner.pop("$defs", {}))
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
