"""An AsyncAPI 3 document of the whole bus, generated from the envelope models and from
every declared core topic (:data:`chorus_common.bus.topics.DECLARED`).

Importing :mod:`chorus_common.topics` declares the core subjects chorus_common itself
speaks with the services (BACKBEAT, the election, license seats, service health, the
coordinator's task verbs); a topic a service declares in its own package (the DHT's node
RPC) is rendered when that package is imported in this process, and otherwise appears
through the hand-written channels below.
"""

from __future__ import annotations

import re
from typing import Any

import chorus_common.topics  # noqa: F401  (declares the shared core topics)
from chorus_common.bus import TopicSpec
from chorus_common.bus.topics import DECLARED
from chorus_common.envelopes import MessageGroup, MessageType, type_schemas

_CHANNEL_OF_GROUP = {
    MessageGroup.COORDINATION: ("coordination", "chorus.coord.{type}", {}),
    MessageGroup.HMMM: (
        "hmmm",
        "chorus.hmmm.{thread}.{type}",
        {"thread": {"description": "HMMM thread, task or issue id ('general' if none)"}},
    ),
    MessageGroup.ROLE: (
        "project",
        "chorus.project.{project}.{type}",
        {"project": {"description": "project id"}},
    ),
    MessageGroup.SLURP: ("context", "chorus.context.{type}", {}),
    MessageGroup.CONTEXT: ("context", "chorus.context.{type}", {}),
}


def _channel_id(spec: TopicSpec[Any]) -> str:
    """``chorus.election.heartbeat`` -> ``election.heartbeat``; ``{part}`` tokens dropped."""
    tokens = [t for t in spec.pattern.split(".") if not t.startswith("{")]
    if tokens and tokens[0] == "chorus":
        tokens = tokens[1:]
    return ".".join(tokens) or spec.pattern


def _message(name: str, title: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary or title,
        "contentType": "application/json",
        "payload": schema,
    }


def topic_channels(
    specs: list[TopicSpec[Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Channels and operations for declared core topics: the address is the pattern, its
    ``{part}`` tokens the parameters, the payload the model's JSON schema; a request/reply
    topic also gets its reply model, on the requester's inbox."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in specs:
        cid = _channel_id(spec)
        if cid in channels:
            cid = re.sub(r"[{}]", "", spec.pattern)
        name = spec.model.__name__
        channel: dict[str, Any] = {
            "address": spec.pattern,
            "description": spec.description,
            "messages": {
                name: _message(
                    name, name, spec.description, spec.model.model_json_schema(mode="serialization")
                )
            },
        }
        if spec.parts:
            channel["parameters"] = {part: {"description": part} for part in spec.parts}
        operation: dict[str, Any] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"}],
        }
        channels[cid] = channel
        if spec.reply is not None:
            reply_id = f"{cid}.reply"
            reply_name = spec.reply.__name__
            channels[reply_id] = {
                "address": None,
                "description": f"the answer to {spec.pattern}, on the requester's inbox",
                "messages": {
                    reply_name: _message(
                        reply_name,
                        reply_name,
                        f"the answer to {name}",
                        spec.reply.model_json_schema(mode="serialization"),
                    )
                },
            }
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{reply_id}"},
                "messages": [{"$ref": f"#/channels/{reply_id}/messages/{reply_name}"}],
            }
        operations[f"send.{cid}"] = operation
        operations[f"receive.{cid}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"}],
        }
    return channels, operations


def asyncapi_document(version: str, server_url: str) -> dict[str, Any]:
    schemas = type_schemas()
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for message_type in MessageType:
        info = schemas[message_type.value]
        messages[message_type.value] = {
            "name": message_type.value,
            "title": message_type.value.replace("_", " "),
            "summary": info["description"] or message_type.value,
            "contentType": "application/json",
            "payload": info["envelope_schema"],
        }
        group_name, pattern, params = _CHANNEL_OF_GROUP[message_type.group]
        channel_id = f"{group_name}.{message_type.value}"
        address = pattern.replace("{type}", message_type.value)
        channels[channel_id] = {
            "address": address,
            "messages": {
                message_type.value: {"$ref": f"#/components/messages/{message_type.value}"}
            },
            **({"parameters": params} if params else {}),
        }
        role_id = f"role.{message_type.value}"
        channels[role_id] = {
            "address": f"chorus.role.{{role}}.{message_type.value}",
            "description": "copy for each role in to_roles",
            "parameters": {"role": {"description": "target role"}},
            "messages": {
                message_type.value: {"$ref": f"#/components/messages/{message_type.value}"}
            },
        }
        for cid in (channel_id, role_id):
            operations[f"receive.{cid}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{cid}"},
            }
        operations[f"send.{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
        }
    declared_channels, declared_operations = topic_channels(list(DECLARED))
    channels.update(declared_channels)
    operations.update(declared_operations)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CHORUS bus",
            "version": version,
            "description": "Every subject on the CHORUS NATS JetStream bus and the 31 envelope types. "
            "Envelope payloads are JSON envelopes; headers carry Nats-Msg-Id (the envelope id) and "
            "traceparent. Core subjects (beats, status claims, election messages, seat leases, "
            "health, task verbs) carry the JSON of their declared model; signed ones carry a "
            "detached signature in headers.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": server_url.split("://", 1)[-1], "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
