"""The node RPC's JSON is the previous version's, both ways: a rolling upgrade mixes them.

The previous node spoke plain JSON: ``{"op": …, "from": …, **fields}`` requests and
answers with only the fields an op sets. Here a raw NATS peer speaks exactly that to a
typed node, and asks it the way the previous node asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from chorus_common.bus import Bus
from chorus_common.testing import wait_until
from chorus_dht.node import DhtNode, record_digest
from chorus_dht.storage import SqliteStorage

KEY = "ab" * 32
MISSING = "cd" * 32


def _record(key: str = KEY, version: int = 5) -> dict[str, Any]:
    record: dict[str, Any] = {
        "key": key,
        "address": "ucxl://a:b@p:t/*^/x.json",
        "sealed": {"ciphertext": "x", "wrapped": {"r": "w"}},
        "version": version,
        "deleted": False,
        "expires_at": None,
        "stored_at": 1.5,  # a field outside the digest travels untouched
    }
    record["digest"] = record_digest(record)
    return record


@pytest.fixture
async def node(bus_client: Bus, tmp_path: Path) -> AsyncIterator[DhtNode]:
    n = DhtNode(bus_client, "n1", SqliteStorage(tmp_path / "n1.sqlite3"), announce_interval=0.2)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def _ask(bus: Bus, node: str, request: dict[str, Any]) -> Any:
    msg = await bus.client.request(f"chorus.dht.rpc.{node}", json.dumps(request).encode(), 5)
    return json.loads(msg.data)


async def test_a_typed_node_answers_the_previous_requests_as_the_previous_node_did(
    node: DhtNode, bus_client: Bus
) -> None:
    assert node.storage is not None
    await node.storage.put(KEY, _record())
    nodes = [[f"{node.node_id:064x}", "n1"]]
    expected: list[tuple[dict[str, Any], Any]] = [
        ({"op": "PING", "from": "p1"}, {"name": "n1", "server": True}),
        ({"op": "FIND_NODE", "from": "p1", "target": KEY}, {"nodes": nodes}),
        ({"op": "FIND_VALUE", "from": "p1", "key": KEY}, {"record": _record()}),
        ({"op": "FIND_VALUE", "key": MISSING}, {"nodes": nodes}),  # no "from": still asked
        ({"op": "HAS", "from": "p1", "key": KEY}, {"version": 5}),
        ({"op": "HAS", "from": "p1", "key": MISSING}, {"version": None}),
        ({"op": "HAS_MANY", "from": "p1", "keys": [KEY, MISSING]}, {"versions": {KEY: 5}}),
        ({"op": "LIST", "from": "p1", "prefix": "ucxl://a:b@"}, {"records": [_record()]}),
        ({"op": "STORE", "from": "p1", "record": _record(version=6)}, {"stored": True}),
        ({"op": "STORE", "record": {"key": KEY}}, {"error": "not a record: address missing"}),
        ({"op": "NOPE"}, {"error": "unknown op 'NOPE'"}),
    ]
    for request, answer in expected:
        assert await _ask(bus_client, "n1", request) == answer, request
    # a known op in no shape it has is refused at once (the previous node read a string of
    # keys as its characters), not left to time out
    misshapen = await _ask(bus_client, "n1", {"op": "HAS_MANY", "keys": "not a list"})
    assert misshapen == {"error": "malformed HAS_MANY request"}
    # bytes that are no request at all are answered too, as the previous node answered them
    garbage = await bus_client.client.request("chorus.dht.rpc.n1", b"\xff not json", 5)
    assert "error" in json.loads(garbage.data)
    damaged = {**_record(version=7), "address": "ucxl://a:b@p:t/*^/changed.json"}
    await node.storage.put(KEY, damaged)
    corrupt = await _ask(bus_client, "n1", {"op": "FIND_VALUE", "from": "p1", "key": KEY})
    assert corrupt == {"corrupt": True, "nodes": []}


async def test_a_typed_node_asks_and_announces_as_the_previous_node_did(
    node: DhtNode, bus_client: Bus
) -> None:
    """``p1`` is a node of the previous version: plain JSON on raw subjects."""
    held: dict[str, dict[str, Any]] = {}
    asked: list[dict[str, Any]] = []
    announced: list[Any] = []

    async def serve(msg: Msg) -> None:
        req = json.loads(msg.data)
        asked.append(req)
        if req["op"] == "STORE":
            held[req["record"]["key"]] = req["record"]
            answer: dict[str, Any] = {"stored": True}
        elif req["op"] == "FIND_VALUE" and req["key"] in held:
            answer = {"record": held[req["key"]]}
        elif req["op"] == "LIST":
            answer = {"records": list(held.values())}
        else:
            answer = {"error": f"unknown op {req['op']!r}"}
        await msg.respond(json.dumps(answer).encode())

    async def hear(msg: Msg) -> None:
        announced.append(json.loads(msg.data))

    async def announce() -> None:
        while True:
            body = {"name": "p1", "server": True}
            await bus_client.client.publish("chorus.dht.announce", json.dumps(body).encode())
            await asyncio.sleep(0.1)

    subs = [
        await bus_client.client.subscribe("chorus.dht.rpc.p1", cb=serve),
        await bus_client.client.subscribe("chorus.dht.announce", cb=hear),
    ]
    beat = asyncio.create_task(announce())
    try:
        await wait_until(lambda: "p1" in node.members(), timeout=10, message="p1 is a peer")
        await wait_until(lambda: {"name": "n1", "server": True} in announced, timeout=5)
        record = _record()
        del record["digest"]
        assert sorted(await node.store(record)) == ["n1", "p1"]
        stores = [r for r in asked if r["op"] == "STORE"]
        assert stores == [{"op": "STORE", "from": "n1", "record": _record()}]
        asked.clear()
        node.settle = 0.0  # ask only the closest servers, as a settled node does
        assert (await node.find(KEY))["stored_at"] == 1.5
        assert {"op": "FIND_VALUE", "from": "n1", "key": KEY} in asked
        assert [r["key"] for r in await node.list("ucxl://a:b@")] == [KEY]
        assert {"op": "LIST", "from": "n1", "prefix": "ucxl://a:b@"} in asked
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        for sub in subs:
            await sub.unsubscribe()


async def test_a_damaged_copy_found_by_its_node_and_a_peer_at_once_is_counted_once(
    bus_client: Bus, tmp_path: Path
) -> None:
    """The node's own repair finds the damage while a peer's repair sends a good copy: one
    of them finds the damage and the other the good copy. Reading and replacing a key is
    one writer at a time (both read the damaged copy before either wrote, and counted it)."""
    found: list[int] = []
    n = DhtNode(
        bus_client,
        "n2",
        SqliteStorage(tmp_path / "n2.sqlite3"),
        announce_interval=0.2,
        on_corrupt=lambda: found.append(1),
    )
    await n.start()
    try:
        assert n.storage is not None
        for _ in range(5):
            found.clear()
            damaged = {**_record(), "address": "ucxl://a:b@p:t/*^/changed.json"}
            await n.storage.put(KEY, damaged)
            store = {"op": "STORE", "from": "p1", "record": _record()}
            _, answer = await asyncio.gather(
                n._quarantine_damaged(KEY), _ask(bus_client, "n2", store)
            )
            assert answer == {"stored": True}
            assert found == [1]
    finally:
        await n.stop()
