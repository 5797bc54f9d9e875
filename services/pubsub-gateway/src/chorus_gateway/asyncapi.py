"""An AsyncAPI 3 document of the whole bus, generated from the envelope models."""

from __future__ import annotations

from typing import Any

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
    channels["election"] = {
        "address": "chorus.election.{event}",
        "parameters": {
            "event": {
                "enum": [
                    "discovery_request",
                    "discovery_response",
                    "started",
                    "candidacy",
                    "vote",
                    "winner",
                    "heartbeat",
                    "stepdown",
                ]
            }
        },
    }
    channels["backbeat.beat"] = {"address": "chorus.backbeat.beat"}
    channels["backbeat.status"] = {
        "address": "chorus.backbeat.status.{agent}",
        "parameters": {"agent": {}},
    }
    channels["dht.rpc"] = {"address": "chorus.dht.rpc.{node_id}", "parameters": {"node_id": {}}}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CHORUS bus",
            "version": version,
            "description": "Every subject on the CHORUS NATS JetStream bus and the 31 envelope types. "
            "Payloads are JSON envelopes; headers carry Nats-Msg-Id (the envelope id) and traceparent.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": server_url.split("://", 1)[-1], "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
