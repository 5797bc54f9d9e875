"""What HAP reads that other services wrote, read as their writers store it: the admin
lease (chorus_common.leadership), agents' registry documents (chorus_common.registry)
and the licensing service's micro health document, against a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg

from chorus_common.bus import Bus
from chorus_common.leadership import LeaseRecord
from chorus_common.topology import BUCKET_ELECTION, BUCKET_REGISTRY
from chorus_hap.portal import Portal
from chorus_hap.settings import HapSettings
from chorus_hap.tui import Terminal


async def test_status_and_peers_read_what_the_other_services_wrote(
    bus_client: Bus, nats_url: str, tmp_path: Path
) -> None:
    portal = Portal(bus_client, tmp_path, quorum=1, role="maintainer", dht_url=None)
    await portal.start()
    other = await nats.connect(nats_url)  # another service's connection, raw bytes
    try:
        assert await portal.admin() == {"admin": None, "term": None}
        election = await other.jetstream().key_value(BUCKET_ELECTION)
        await election.put("leader.admin", LeaseRecord("election-n1", 4, 1.0).encode())
        assert await portal.admin() == {"admin": "election-n1", "term": 4}
        await election.put("leader.admin", LeaseRecord(None, 4, 1.0).encode())  # released
        assert await portal.admin() == {"admin": None, "term": 4}

        registry = await other.jetstream().key_value(BUCKET_REGISTRY)
        bob: dict[str, Any] = {
            "agent": "bob",
            "public_key": "not shown",
            "roles": ["reviewer"],
            "capabilities": ["python"],
            "availability": "ready",
            "kind": "human",
            "updated_at": 12.5,
            "max_tasks": 3,
        }
        await registry.put("agent.bob", json.dumps(bob).encode())
        await registry.put("agent.carol", json.dumps({"agent": "carol"}).encode())
        await registry.put("agent.junk", b"not json")
        await portal.person("alice")  # registers alice's key
        peers = await portal.peers()
        assert [p["agent"] for p in peers] == ["alice", "bob", "carol"]
        assert all("public_key" not in p for p in peers)
        assert peers[1] == {k: v for k, v in bob.items() if k != "public_key"}
        assert peers[2] == {"agent": "carol"}

        async def licensing_health(msg: Msg) -> None:  # what chorus_common.service answers
            document = {
                "service": "licensing",
                "version": "0.1.0",
                "node_id": "n1",
                "status": "ok",
                "ready": True,
                "uptime_seconds": 3.2,
                "checks": {"nats": "ok", "license": "ok"},
            }
            await msg.respond(json.dumps(document).encode())

        said: list[str] = []
        settings = HapSettings(nats_url=nats_url, data_dir=tmp_path)
        term = Terminal(portal, bus_client, "alice", settings, session=object())  # type: ignore[arg-type]
        term.say = said.append  # type: ignore[method-assign]
        await term.status([])
        assert said[1] == "admin: none elected (term 4)"
        assert said[-1] == "license: licensing service not reachable"
        sub = await other.subscribe("chorus.svc.licensing.health", cb=licensing_health)
        await other.flush()
        said.clear()
        await term.status([])
        assert said[-1] == "license: ok"
        await sub.unsubscribe()
    finally:
        await other.close()
        await portal.stop()
