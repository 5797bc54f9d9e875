"""A DHT node on the bus: RPC on ``chorus.dht.rpc.<node>``, membership, lookups, replication, repair."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nats.aio.msg import Msg

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.errors import NotFoundError, SubjectError, UnavailableError
from chorus_common.subjects import dht_rpc_subject
from chorus_dht.routing import Lookup, RoutingTable, distance, node_id_of
from chorus_dht.storage import Storage

log = logging.getLogger("chorus.dht")
ANNOUNCE = "chorus.dht.announce"
Mode = Literal["client", "server", "auto"]


def record_digest(record: dict[str, Any]) -> str:
    body = {
        k: record.get(k) for k in ("key", "address", "sealed", "version", "deleted", "expires_at")
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def intact(record: dict[str, Any] | None) -> bool:
    """A replica whose bytes changed is detected (and repaired from a good copy)."""
    return record is not None and record.get("digest") == record_digest(record)


@dataclass
class Peer:
    name: str
    node_id: int
    server: bool
    seen: float


class DhtNode:
    def __init__(
        self,
        bus: Bus,
        name: str,
        storage: Storage | None,
        *,
        mode: Mode = "auto",
        replication: int = 3,
        k: int = 20,
        alpha: int = 3,
        announce_interval: float = 1.0,
        repair_interval: float = 2.0,
        repair_batch: int = 500,
        on_rpc: Callable[[str, str], None] = lambda op, r: None,
        on_repair: Callable[[], None] = lambda: None,
        on_corrupt: Callable[[], None] = lambda: None,
    ) -> None:
        self.bus, self.name, self.storage = bus, name, storage
        self.node_id = node_id_of(name)
        self.server = mode == "server" or (mode == "auto" and storage is not None)
        if mode == "server" and storage is None:
            raise UnavailableError("server mode needs storage (CHORUS_DHT_ENGINE)")
        self.mode = mode
        self.replication, self.k, self.alpha = replication, k, alpha
        self.announce_interval, self.repair_interval = announce_interval, repair_interval
        self.repair_batch = repair_batch
        self._repair_cursor = ""
        self.table = RoutingTable(self.node_id, k)
        self.peers: dict[str, Peer] = {}
        self.on_rpc, self.on_repair, self.on_corrupt = on_rpc, on_repair, on_corrupt
        self.last_hops = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self.storage is not None:
            await self.storage.open()
        self._subs.append(await self.bus.nc.subscribe(dht_rpc_subject(self.name), cb=self._serve))
        self._subs.append(await self.bus.nc.subscribe(ANNOUNCE, cb=self._on_announce))
        await self._announce()
        self._tasks.append(asyncio.create_task(self._announce_loop()))
        if self.server:
            self._tasks.append(asyncio.create_task(self._repair_loop()))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.storage is not None:
            await self.storage.close()

    # -- membership ----------------------------------------------------------------------

    async def _announce(self) -> None:
        body = {"name": self.name, "server": self.server}
        with contextlib.suppress(Exception):
            await self.bus.publish_core(ANNOUNCE, json.dumps(body).encode())

    async def _announce_loop(self) -> None:
        while True:
            await asyncio.sleep(self.announce_interval)
            await self._announce()
            self._evict(time.monotonic())

    async def _on_announce(self, msg: Msg) -> None:
        try:
            doc = json.loads(msg.data)
        except (ValueError, RecursionError):
            return  # not an announcement
        name = doc.get("name") if isinstance(doc, dict) else None
        if not isinstance(name, str) or name == self.name:
            return
        try:
            dht_rpc_subject(name)  # a name no RPC can reach is no peer
        except SubjectError:
            return
        peer = Peer(name, node_id_of(name), doc.get("server") is True, time.monotonic())
        self.peers[name] = peer
        if peer.server:
            self.table.add(peer.node_id, name)

    def _evict(self, now: float) -> None:
        for name, peer in list(self.peers.items()):
            if now - peer.seen > 3 * self.announce_interval:
                del self.peers[name]
                self.table.remove(peer.node_id)

    def live_servers(self) -> list[tuple[int, str]]:
        out = list(self.table.nodes().items())
        if self.server:
            out.append((self.node_id, self.name))
        return out

    # -- RPC ----------------------------------------------------------------------------------

    async def rpc(self, node: str, op: str, timeout: float = 1.0, **body: Any) -> dict[str, Any]:
        if node == self.name:
            return await self.handle({"op": op, **body})
        try:
            msg = await self.bus.nc.request(
                dht_rpc_subject(node), json.dumps({"op": op, **body}).encode(), timeout=timeout
            )
        except Exception as exc:
            self.on_rpc(op, "error")
            raise UnavailableError(
                f"DHT node {node} did not answer {op}: {exc or type(exc).__name__}"
            ) from None
        self.on_rpc(op, "ok")
        answer: dict[str, Any] = json.loads(msg.data)
        return answer

    async def _serve(self, msg: Msg) -> None:
        try:
            answer = await self.handle(json.loads(msg.data))
        except Exception as exc:
            answer = {"error": str(exc)}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(answer).encode())

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "PING":
            return {"name": self.name, "server": self.server}
        if op == "FIND_NODE":
            target = int(req["target"], 16)
            return {"nodes": [[f"{n:064x}", s] for n, s in self._closest_known(target, self.k)]}
        if not self.server or self.storage is None:
            return {"error": f"{self.name} is a client node and stores nothing"}
        key = str(req.get("key", ""))
        if op == "FIND_VALUE":
            record = await self.storage.get(key)
            if record is not None and not intact(record):
                return {"corrupt": True, "nodes": []}
            if record is not None:
                return {"record": record}
            target = int(key, 16)
            return {"nodes": [[f"{n:064x}", s] for n, s in self._closest_known(target, self.k)]}
        if op == "STORE":
            record = req["record"]
            if not intact(record):
                return {"error": "record digest does not match its content"}
            current = await self.storage.get(record["key"])
            if current is not None and not intact(current):
                self.on_corrupt()  # a peer's repair found our copy damaged and sent a good one
                await self.storage.put(record["key"], record)
            elif current is None or current["version"] <= record["version"]:
                await self.storage.put(record["key"], record)
            return {"stored": True}
        if op == "HAS":
            record = await self.storage.get(key)
            return {"version": record["version"] if record is not None and intact(record) else None}
        if op == "LIST":
            prefix = str(req.get("prefix", ""))
            return {
                "records": [
                    r
                    for r in await self.storage.all()
                    if r["address"].startswith(prefix) and intact(r)
                ]
            }
        return {"error": f"unknown op {op!r}"}

    def _closest_known(self, target: int, count: int) -> list[tuple[int, str]]:
        return sorted(self.live_servers(), key=lambda item: distance(item[0], target))[:count]

    # -- lookups -------------------------------------------------------------------------------

    async def lookup(self, target: int) -> list[tuple[int, str]]:
        """Iterative FIND_NODE with parallelism α; returns the k closest live servers."""
        if len(self.table) < self.k:
            # no bucket is full, so this node already knows every server: the iterative
            # rounds could only return what it has (Kademlia's buckets are complete below k)
            self.last_hops = 0
            return self._closest_known(target, self.k)
        search = Lookup(target, self.k, self.alpha)
        search.seed(self._closest_known(target, self.k))
        while not search.done:
            batch = search.next_batch()
            if not batch:
                break
            answers = await asyncio.gather(
                *(self.rpc(name, "FIND_NODE", target=f"{target:064x}") for _, name in batch),
                return_exceptions=True,
            )
            for (node, _), answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException) or "nodes" not in answer:
                    search.fail(node)
                    continue
                search.answer([(int(h, 16), s) for h, s in answer["nodes"]])
        self.last_hops = search.hops
        return search.closest()

    async def replicas_for(self, key: str) -> list[str]:
        return [name for _, name in (await self.lookup(int(key, 16)))[: self.replication]]

    # -- values ------------------------------------------------------------------------------------

    async def store(self, record: dict[str, Any]) -> list[str]:
        record["digest"] = record_digest(record)
        targets = await self.replicas_for(record["key"])
        if not targets:
            raise UnavailableError("no DHT server node is reachable to store the value")
        results = await asyncio.gather(
            *(self.rpc(t, "STORE", record=record) for t in targets), return_exceptions=True
        )
        stored = [
            t
            for t, r in zip(targets, results, strict=True)
            if isinstance(r, dict) and r.get("stored")
        ]
        if not stored:
            raise UnavailableError(f"no replica accepted the value (tried {targets})")
        return stored

    async def find(self, key: str) -> dict[str, Any]:
        """Newest intact copy among the replicas; NotFoundError when there is none."""
        best: dict[str, Any] | None = None
        candidates = (await self.lookup(int(key, 16)))[: max(self.replication * 2, 4)]
        answers = await asyncio.gather(
            *(self.rpc(name, "FIND_VALUE", key=key) for _, name in candidates),
            return_exceptions=True,
        )
        for answer in answers:
            record = answer.get("record") if isinstance(answer, dict) else None
            if (
                record is not None
                and intact(record)
                and (best is None or record["version"] > best["version"])
            ):
                best = record
        if best is None or best.get("deleted"):
            raise NotFoundError("no such UCXL address in the DHT")
        return best

    async def list(self, prefix: str) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for _, name in self.live_servers():
            with contextlib.suppress(UnavailableError):
                for record in (await self.rpc(name, "LIST", prefix=prefix)).get("records", []):
                    if (
                        record["key"] not in merged
                        or merged[record["key"]]["version"] < record["version"]
                    ):
                        merged[record["key"]] = record
        return sorted(
            (r for r in merged.values() if not r.get("deleted")), key=lambda r: r["address"]
        )

    # -- repair ------------------------------------------------------------------------------------

    async def _repair_loop(self) -> None:
        while True:
            await asyncio.sleep(self.repair_interval)
            with contextlib.suppress(Exception):
                await self.repair()

    async def repair(self) -> int:
        """Bring the next batch of local records back to R copies on the R closest live servers.

        Each round takes up to ``repair_batch`` records from where the last one stopped,
        so a round's work and memory stay bounded however many records a node holds.
        """
        assert self.storage is not None
        repaired = 0
        records, self._repair_cursor = await self.storage.page(
            self._repair_cursor, self.repair_batch
        )
        for record in records:
            if not intact(record):
                # re-read: a peer's STORE may have replaced the damaged copy since the page was read
                current = await self.storage.get(record["key"])
                if current is not None and not intact(current):
                    self.on_corrupt()
                    await self.storage.delete(record["key"])  # a good copy comes back by repair
                continue
            target = int(record["key"], 16)
            for _, name in self._closest_known(target, self.replication):
                if name == self.name:
                    continue
                with contextlib.suppress(UnavailableError):
                    has = await self.rpc(name, "HAS", key=record["key"])
                    if has.get("version") is None or has["version"] < record["version"]:
                        await self.rpc(name, "STORE", record=record)
                        repaired += 1
                        self.on_repair()
        return repaired
