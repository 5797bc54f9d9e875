"""Reads between real DhtNodes on a real bus: R closest when settled, 2R when in doubt."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chorus_common.bus import Bus
from chorus_common.errors import NotFoundError
from chorus_common.testing import wait_until
from chorus_dht.node import DhtNode, record_digest
from chorus_dht.storage import SqliteStorage

KEY = f"{0xC0FFEE:064x}"
NAMES = [f"q{i}" for i in range(1, 6)]


class Reads:
    """Five servers with R = 2; ``reader`` is the one farthest from KEY, so every copy
    it reads comes over an RPC that ``sent`` counts."""

    def __init__(self, nodes: dict[str, DhtNode], sent: collections.Counter[str]) -> None:
        self.nodes, self.sent = nodes, sent
        order = [name for _, name in nodes[NAMES[0]]._closest_known(int(KEY, 16), 5)]
        self.closest, self.reader = order[:4], nodes[order[4]]

    async def hold(self, name: str, version: int, *, damaged: bool = False) -> None:
        record: dict[str, Any] = {
            "key": KEY,
            "address": "ucxl://a:b@p:t/*^/read.json",
            "sealed": {"ciphertext": f"v{version}"},
            "version": version,
            "deleted": False,
            "expires_at": None,
        }
        record["digest"] = record_digest(record)
        if damaged:
            record["sealed"] = {"ciphertext": "flipped bits"}
        storage = self.nodes[name].storage
        assert storage is not None
        await storage.put(KEY, record)

    async def settle(self) -> None:
        """Let the reader finish a repair pass over the current membership and wait out
        the settle time, as a steady constellation does by itself."""
        if self.reader.repair_due():
            while True:
                await self.reader.repair()
                if not self.reader._repair_cursor:
                    break
        await wait_until(self.reader.settled, timeout=5, message="the reader settles")

    async def read(self) -> tuple[int, int]:
        """(version found, FIND_VALUE RPCs it took)."""
        self.sent.clear()
        record = await self.reader.find(KEY)
        return record["version"], self.sent["FIND_VALUE"]


@pytest.fixture
async def reads(bus_client: Bus, tmp_path: Path) -> AsyncIterator[Reads]:
    sent: collections.Counter[str] = collections.Counter()
    nodes: dict[str, DhtNode] = {}
    for name in NAMES:
        nodes[name] = DhtNode(
            bus_client,
            name,
            SqliteStorage(tmp_path / f"{name}.sqlite3"),
            replication=2,
            announce_interval=0.2,
            repair_interval=3600,  # the test drives repair itself
            scrub_interval=3600,
            settle=0.5,
            on_rpc=lambda op, result: sent.update([op]),
        )
        await nodes[name].start()
    try:
        await wait_until(
            lambda: all(len(n.live_servers()) == 5 for n in nodes.values()),
            timeout=10,
            message="five servers know each other",
        )
        yield Reads(nodes, sent)
    finally:
        for n in nodes.values():
            await n.stop()


async def test_a_settled_read_asks_the_r_closest_and_widens_when_they_are_in_doubt(
    reads: Reads,
) -> None:
    assert not reads.reader.settled()  # membership has only just formed
    await reads.settle()
    first, second, third, _ = reads.closest

    # both of the R closest hold the same version: their answer is the read
    await reads.hold(first, 1)
    await reads.hold(second, 1)
    assert await reads.read() == (1, 2)

    # they disagree: the read asks 2R and takes the newest there is
    await reads.hold(third, 3)
    await reads.hold(second, 2)
    assert await reads.read() == (3, 4)

    # one of them lacks the value: 2R again
    storage = reads.nodes[second].storage
    assert storage is not None
    await storage.delete(KEY)
    assert await reads.read() == (3, 4)

    # one holds a damaged copy: it counts as none
    await reads.hold(second, 1, damaged=True)
    assert await reads.read() == (3, 4)

    # nowhere at all: 404 after asking 2R
    for name in reads.closest:
        storage = reads.nodes[name].storage
        assert storage is not None
        await storage.delete(KEY)
    reads.sent.clear()
    with pytest.raises(NotFoundError):
        await reads.reader.find(KEY)
    assert reads.sent["FIND_VALUE"] == 4


async def test_reads_ask_2r_while_membership_changes(reads: Reads) -> None:
    await reads.settle()
    first, second, third, fourth = reads.closest
    # the two closest agree on v1; v2 reached only the third, as from a writer that did
    # not see the two closest servers (they were away, or it was cut off from them)
    await reads.hold(first, 1)
    await reads.hold(second, 1)
    await reads.hold(third, 2)

    await reads.nodes[fourth].stop()
    await wait_until(
        lambda: len(reads.reader.live_servers()) == 4,
        timeout=15,
        message="the reader notices a server has gone",
    )
    assert not reads.reader.settled()
    version, asked = await reads.read()
    assert version == 2  # the newest, not the two closest's unanimous v1
    assert asked == 3  # 2R candidates among four servers, the reader one of them

    await asyncio.sleep(0.6)  # the settle time alone is not enough: a pass must complete
    assert not reads.reader.settled()
    await reads.settle()
    assert reads.reader.settled()
