"""Repair between real DhtNodes on a real bus: when it runs, what it costs, mixed versions."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chorus_common.bus import Bus
from chorus_common.dht_wire import RpcAnswer, RpcOp
from chorus_common.testing import wait_until
from chorus_dht.node import DhtNode, record_digest
from chorus_dht.storage import SqliteStorage


class OldNode(DhtNode):
    """A node from before HAS_MANY, as seen during a rolling upgrade."""

    async def handle(self, req: RpcOp) -> RpcAnswer:
        if req.op == "HAS_MANY":
            return RpcAnswer(error="unknown op 'HAS_MANY'")
        return await super().handle(req)


@pytest.fixture
async def cluster(
    bus_client: Bus, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, DhtNode], collections.Counter[str]]]:
    """Three server nodes (one of them old) and a count of the RPCs r1 sends, by op."""
    sent: collections.Counter[str] = collections.Counter()
    made: dict[str, DhtNode] = {}
    for name, cls in (("r1", DhtNode), ("r2", DhtNode), ("r3", OldNode)):
        made[name] = cls(
            bus_client,
            name,
            SqliteStorage(tmp_path / f"{name}.sqlite3"),
            announce_interval=0.2,
            repair_interval=3600,  # the test drives repair rounds itself
            scrub_interval=3600,
            on_rpc=(
                lambda op, result, c=sent if name == "r1" else collections.Counter(): c.update([op])
            ),
        )
        await made[name].start()
    try:
        await wait_until(
            lambda: all(len(n.live_servers()) == 3 for n in made.values()),
            timeout=10,
            message="three servers know each other",
        )
        yield made, sent
    finally:
        for n in made.values():
            await n.stop()


def _record(i: int) -> dict[str, Any]:
    return {
        "key": f"{i:064x}",
        "address": f"ucxl://a:b@p:t/*^/r{i}",
        "sealed": {"ciphertext": "x" * 40},
        "version": 1,
        "deleted": False,
        "expires_at": None,
    }


async def test_repair_asks_each_peer_once_per_round_and_runs_when_membership_changes(
    cluster: tuple[dict[str, DhtNode], collections.Counter[str]],
) -> None:
    nodes, sent = cluster
    r1 = nodes["r1"]
    assert r1.storage is not None
    # 60 records only r1 holds (as after a put whose other STOREs failed)
    for i in range(60):
        record = _record(i)
        record["digest"] = record_digest(record)
        await r1.storage.put(record["key"], record)
    sent.clear()

    assert r1.repair_due()  # the first pass of this membership
    repaired = await r1.repair()
    assert repaired == 120  # each record to both other servers (R = 3)
    # one HAS_MANY to the current node; the old node is asked record by record
    assert sent["HAS_MANY"] == 2 and sent["HAS"] == 60 and sent["STORE"] == 120
    for peer in ("r2", "r3"):
        storage = nodes[peer].storage
        assert storage is not None
        assert len(await storage.all()) == 60
    assert r1.under_replicated == 0

    # steady membership: no pass until the scrub interval; a server leaving starts one
    assert not r1.repair_due()
    await nodes["r3"].stop()
    await wait_until(
        lambda: len(r1.live_servers()) == 2, timeout=15, message="r1 notices r3 has gone"
    )
    assert r1.repair_due()
    await r1.repair()
    assert r1.under_replicated == 60  # two servers cannot hold three copies
