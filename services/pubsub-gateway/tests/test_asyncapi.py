"""The AsyncAPI document renders every declared core topic from its declaration."""

from __future__ import annotations

from typing import Any

import httpx

import chorus_common.topics
from chorus_common.bus.topics import DECLARED
from chorus_gateway import GatewayService

GatewayFixture = tuple[GatewayService, httpx.AsyncClient]


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for token in ref.removeprefix("#/").split("/"):
        node = node[token]
    return node


async def test_asyncapi_renders_every_declared_topic_with_its_payload_schema(
    gateway: GatewayFixture,
) -> None:
    _, client = gateway
    doc = (await client.get("/asyncapi.json")).json()
    by_address = {c["address"]: (cid, c) for cid, c in doc["channels"].items()}
    shared = {spec.pattern for spec in DECLARED}
    # the shared contracts chorus_common speaks with the services are all declared
    for pattern in (
        chorus_common.topics.BEATS.pattern,
        chorus_common.topics.STATUS_CLAIMS.pattern,
        chorus_common.topics.BARS.pattern,
        *(spec.pattern for spec in chorus_common.topics.ELECTION_TOPICS.values()),
        chorus_common.topics.LICENSE_GRANT.pattern,
        chorus_common.topics.LICENSE_RENEW.pattern,
        chorus_common.topics.LICENSE_RELEASE.pattern,
        chorus_common.topics.SERVICE_HEALTH.pattern,
        chorus_common.topics.COORDINATOR_TASKS.pattern,
    ):
        assert pattern in shared, pattern
    for spec in DECLARED:
        assert spec.pattern in by_address, f"{spec.pattern} is not a channel"
        cid, channel = by_address[spec.pattern]
        payloads = [m["payload"] for m in channel["messages"].values()]
        assert payloads == [spec.model.model_json_schema(mode="serialization")], spec.pattern
        assert set(channel.get("parameters", {})) == set(spec.parts), spec.pattern
        send = doc["operations"][f"send.{cid}"]
        assert _resolve(doc, send["channel"]["$ref"]) == channel
        if spec.reply is None:
            assert "reply" not in send, spec.pattern
        else:
            [reply] = [_resolve(doc, m["$ref"]) for m in send["reply"]["messages"]]
            assert reply["payload"] == spec.reply.model_json_schema(mode="serialization")
    # the hand-written election channel is gone; the envelope channels are as before
    assert "election" not in doc["channels"]
    assert "chorus.election.{event}" not in by_address
    assert "chorus.coord.task_claim" in by_address
    assert len(doc["components"]["messages"]) == 31


async def test_the_dht_node_rpc_is_a_declared_channel(gateway: GatewayFixture) -> None:
    """The DHT's wire contract lives in chorus_common.dht_wire, so the document has it."""
    _, client = gateway
    doc = (await client.get("/asyncapi.json")).json()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"chorus.dht.rpc.{node}", "chorus.dht.announce"} <= addresses
    heartbeat = doc["channels"]["election.heartbeat"]
    [message] = heartbeat["messages"].values()
    assert set(message["payload"]["required"]) == {"node"}
    assert {"node", "term", "at"} <= set(message["payload"]["properties"])
