"""A DHT node on the bus: RPC on ``chorus.dht.rpc.<node>``, membership, lookups, replication, repair."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus, Received
from chorus_common.dht_wire import (
    ANNOUNCE,
    RPC,
    RPC_OPS,
    Announcement,
    FindNode,
    FindValue,
    Has,
    HasMany,
    ListAnswer,
    ListRecords,
    NodesAnswer,
    Ping,
    PingAnswer,
    RpcAnswer,
    RpcOp,
    RpcRequest,
    Store,
    StoreAnswer,
    ValueAnswer,
    VersionAnswer,
    VersionsAnswer,
    encode_answer,
)
from chorus_common.errors import (
    MalformedBodyError,
    NotFoundError,
    RequestInvalidError,
    SubjectError,
    UnavailableError,
)
from chorus_common.subjects import dht_rpc_subject
from chorus_dht.records import intact, malformed, record_digest
from chorus_dht.routing import Lookup, RoutingTable, distance, node_id_of
from chorus_dht.storage import Storage

__all__ = [
    "ANNOUNCE",
    "REPAIR_STAGES",
    "DhtNode",
    "Peer",
    "QuorumError",
    "intact",
    "majority",
    "record_digest",
]

#: locks the keys of local copies are spread over (see DhtNode._key_lock)
KEY_LOCK_STRIPES = 64

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

log = logging.getLogger("chorus.dht")
A = TypeVar("A", bound=RpcAnswer)
#: (named here because DhtNode.list shadows the builtin inside the class)
Records = list[dict[str, Any]]
Mode = Literal["client", "server", "auto"]
#: the stages of a repair round whose failures are counted apart
REPAIR_STAGES = ("page", "record", "peer", "restore")
_KEY = re.compile(r"^[0-9a-f]{64}$")
#: quarantined keys a pass tries to fetch a good copy of (each costs up to 2R RPCs)
RESTORE_PER_PASS = 100


def majority(replication: int) -> int:
    """The default write quorum W: a majority of R (2 of 3), so any two writes share a copy."""
    return replication // 2 + 1


class QuorumError(UnavailableError):
    """Fewer servers than a quorum answered: 503 naming how many were ``reached`` and
    how many are ``needed`` (a write: stored copies; a read: servers that answered)."""

    def __init__(self, detail: str, *, reached: int, needed: int, **extra: Any) -> None:
        super().__init__(detail, reached=reached, needed=needed, **extra)
        self.reached, self.needed = reached, needed


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
        scrub_interval: float = 60.0,
        repair_batch: int = 500,
        settle: float | None = None,
        write_quorum: int | None = None,
        max_address_bytes: int = 1024,
        on_rpc: Callable[[str, str], None] = lambda op, r: None,
        on_repair: Callable[[], None] = lambda: None,
        on_corrupt: Callable[[], None] = lambda: None,
        on_quarantine: Callable[[str, str], None] = lambda key, reason: None,
        on_repair_error: Callable[[str], None] = lambda stage: None,
        on_peer_store: Callable[[str, str], None] = lambda peer, address: None,
        admit: Callable[[], bool] = lambda: True,
    ) -> None:
        """``admit`` says whether this node may take and push copies now (its license seat):
        without one it refuses STORE and pauses repair, and reads still answer.

        ``write_quorum`` is W, the copies a store needs before it is acknowledged
        (default a majority of R); reads need answers from R − W + 1 servers, so that
        they meet at least one copy of the latest acknowledged write.
        """
        if write_quorum is not None and not 1 <= write_quorum <= replication:
            raise UnavailableError(
                f"write quorum {write_quorum} must be between 1 and R = {replication}"
            )
        self.bus, self.name, self.storage = bus, name, storage
        self.write_quorum = majority(replication) if write_quorum is None else write_quorum
        self.max_address_bytes = max_address_bytes
        self.on_quarantine, self.on_repair_error = on_quarantine, on_repair_error
        self.on_peer_store = on_peer_store
        if storage is not None:
            storage.on_quarantine = on_quarantine
        self.admit = admit
        self.node_id = node_id_of(name)
        self.server = mode == "server" or (mode == "auto" and storage is not None)
        if mode == "server" and storage is None:
            raise UnavailableError("server mode needs storage (CHORUS_DHT_ENGINE)")
        self.mode = mode
        self.replication, self.k, self.alpha = replication, k, alpha
        self.announce_interval, self.repair_interval = announce_interval, repair_interval
        self.scrub_interval, self.repair_batch = scrub_interval, repair_batch
        self._repair_cursor = ""
        #: how long after a change of membership reads still ask 2R candidates: every
        #: node's view has converged (3 announce intervals) and its repair pass has begun
        self.settle = 3 * announce_interval + repair_interval if settle is None else settle
        self._members_changed_at = time.monotonic()
        #: when the last complete repair pass began (it covered the membership of then)
        self._repaired_from = float("-inf")
        #: live servers when the current (or last) repair pass began, and when it began
        self._pass_members: frozenset[str] | None = None
        self._pass_started = 0.0
        self._pass_under = 0
        #: local records the last complete repair pass left with fewer than R live copies
        self.under_replicated = 0
        self.table = RoutingTable(self.node_id, k)
        self.peers: dict[str, Peer] = {}
        self.on_rpc, self.on_repair, self.on_corrupt = on_rpc, on_repair, on_corrupt
        #: one lock per stripe of keys: what a key's copy is and what replaces it are decided
        #: one writer at a time (two peers' repairs arriving together each read the damaged
        #: copy before either wrote, and the damage was counted twice)
        self._key_locks = [asyncio.Lock() for _ in range(KEY_LOCK_STRIPES)]
        self.last_hops = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._rpc = bus.topic(RPC)
        self._subs: list[Subscription] = []

    @property
    def read_quorum(self) -> int:
        """R − W + 1: that many answers among a key's servers include a copy of the
        latest acknowledged write, since W of its R servers hold it."""
        return self.replication - self.write_quorum + 1

    def check_address(self, address: str) -> None:
        """Refuse an address (or prefix) over the configured length, naming the limit."""
        size = len(address.encode())
        if size > self.max_address_bytes:
            raise RequestInvalidError(
                f"the UCXL address is {size} bytes; the limit is {self.max_address_bytes} "
                "(CHORUS_DHT_MAX_ADDRESS_BYTES)",
                reason="address_too_long",
                limit=self.max_address_bytes,
                length=size,
            )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self.storage is not None:
            await self.storage.open()
        rpc = self.bus.topic(RPC)
        self._subs.append(
            await rpc.subscribe(
                self._serve,
                subject=RPC.subject(node=self.name),
                malformed_reply=lambda exc: encode_answer(RpcAnswer(error=f"not a request: {exc}")),
            )
        )
        self._subs.append(await self.bus.topic(ANNOUNCE).subscribe(self._on_announce))
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
        with contextlib.suppress(Exception):
            await self.bus.topic(ANNOUNCE).publish(Announcement(name=self.name, server=self.server))

    async def _announce_loop(self) -> None:
        while True:
            await asyncio.sleep(self.announce_interval)
            await self._announce()
            self._evict(time.monotonic())

    async def _on_announce(self, message: Received[Announcement]) -> None:
        name = message.value.name
        if name == self.name:
            return
        try:
            dht_rpc_subject(name)  # a name no RPC can reach is no peer
        except SubjectError:
            return
        peer = Peer(name, node_id_of(name), message.value.server, time.monotonic())
        known = self.peers.get(name)
        if known is None or known.server != peer.server:
            self._members_changed_at = peer.seen
        self.peers[name] = peer
        if peer.server:
            self.table.add(peer.node_id, name)

    def _evict(self, now: float) -> None:
        for name, peer in list(self.peers.items()):
            if now - peer.seen > 3 * self.announce_interval:
                del self.peers[name]
                self.table.remove(peer.node_id)
                self._members_changed_at = now

    def live_servers(self) -> list[tuple[int, str]]:
        out = list(self.table.nodes().items())
        if self.server:
            out.append((self.node_id, self.name))
        return out

    def members(self) -> frozenset[str]:
        return frozenset(name for _, name in self.live_servers())

    def settled(self) -> bool:
        """Whether the R closest servers can be trusted to hold the newest copy of a value.

        Membership has been steady for ``settle`` seconds, so every writer stored on the
        same R closest servers this node sees, and (on a server) a repair pass that began
        after the last change is complete, so copies a departed or new server held have
        moved. This node's pass stands for the others': records spread evenly over
        the servers, so their passes take about as long.
        """
        if time.monotonic() - self._members_changed_at < self.settle:
            return False
        return not self.server or self._repaired_from >= self._members_changed_at

    # -- RPC ----------------------------------------------------------------------------------

    async def rpc(self, node: str, request: RpcOp, reply: type[A], timeout: float = 1.0) -> A:
        """Ask ``node`` and decode its answer as ``reply`` (which may carry only ``error``);
        this node's own requests are answered in place."""
        if node == self.name:
            return _as(reply, await self.handle(request))
        try:
            answer = await self._rpc.request(RpcRequest(request), reply, timeout=timeout, node=node)
        except MalformedBodyError:
            self.on_rpc(request.op, "ok")  # it answered, with something that is no answer
            raise
        except Exception as exc:
            self.on_rpc(request.op, "error")
            raise UnavailableError(
                f"DHT node {node} did not answer {request.op}: {exc or type(exc).__name__}"
            ) from None
        self.on_rpc(request.op, "ok")
        return answer

    async def _serve(self, message: Received[RpcRequest]) -> None:
        try:
            answer = await self.handle(message.value.root)
        except Exception as exc:
            answer = RpcAnswer(error=str(exc))
        await message.respond(encode_answer(answer))

    async def handle(self, request: RpcOp) -> RpcAnswer:
        """The answer to one RPC request (``{"error": …}`` when it is refused)."""
        if isinstance(request, Ping):
            return PingAnswer(name=self.name, server=self.server)
        if isinstance(request, FindNode):
            return NodesAnswer(nodes=self._closest_hex(int(request.target, 16)))
        if request.op in ("PING", "FIND_NODE"):  # one of those ops, in no shape it has
            return RpcAnswer(error=f"malformed {request.op} request")
        if not self.server or self.storage is None:
            return RpcAnswer(error=f"{self.name} is a client node and stores nothing")
        if isinstance(request, FindValue):
            record = await self.storage.get(request.key)
            if record is not None and not intact(record):
                return ValueAnswer(corrupt=True, nodes=[])
            if record is not None:
                return ValueAnswer(record=record)
            return ValueAnswer(nodes=self._closest_hex(int(request.key, 16)))
        if isinstance(request, Store):
            return await self._store_here(request)
        if isinstance(request, Has):
            record = await self.storage.get(request.key)
            return VersionAnswer(
                version=record["version"] if record is not None and intact(record) else None
            )
        if isinstance(request, HasMany):  # repair's question for a whole batch
            held = await self.storage.get_many(request.keys)
            versions = {}
            for i, (k, r) in enumerate(held.items()):
                if i % 50 == 49:
                    await asyncio.sleep(0)
                if intact(r):
                    versions[k] = r["version"]
            return VersionsAnswer(versions=versions)
        if isinstance(request, ListRecords):
            prefix = request.prefix
            if len(prefix.encode()) > self.max_address_bytes:
                return RpcAnswer(error=f"prefix longer than {self.max_address_bytes} bytes")
            return ListAnswer(
                records=[
                    r
                    for r in await self.storage.all()
                    if r["address"].startswith(prefix) and intact(r)
                ]
            )
        if request.op in RPC_OPS:
            return RpcAnswer(error=f"malformed {request.op} request")
        return RpcAnswer(error=f"unknown op {request.op!r}")

    async def _store_here(self, request: Store) -> RpcAnswer:
        assert self.storage is not None
        if not self.admit():
            return RpcAnswer(error=f"license_unavailable: {self.name} holds no license seat")
        record = request.record
        wrong = malformed(record)
        if wrong is not None or not _KEY.match(record["key"]):
            return RpcAnswer(error=f"not a record: {wrong or 'key is not 64 hex digits'}")
        if len(record["address"].encode()) > self.max_address_bytes:
            return RpcAnswer(error=f"address longer than {self.max_address_bytes} bytes")
        if not intact(record):
            return RpcAnswer(error="record digest does not match its content")
        async with self._key_lock(record["key"]):
            # past the cache: a copy damaged on disk behind a cached intact entry must be
            # seen (and counted) here, or a peer's repair would overwrite it unnoticed
            current = (await self.storage.get_many([record["key"]])).get(record["key"])
            if current is not None and not intact(current):
                self.on_corrupt()  # a peer's repair found our copy damaged, sent a good one
                await self.storage.quarantine(record["key"], "digest mismatch")
                await self.storage.put(record["key"], record)
            elif current is None or current["version"] <= record["version"]:
                await self.storage.put(record["key"], record)
        peer = request.sender
        if peer is not None and peer != self.name:
            self.on_peer_store(peer, record["address"])
        return StoreAnswer(stored=True)

    def _closest_hex(self, target: int) -> list[tuple[str, str]]:
        """The k closest servers known, as FIND_NODE answers them: (hex id, name)."""
        return [(f"{n:064x}", s) for n, s in self._closest_known(target, self.k)]

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
            ask = FindNode(target=f"{target:064x}", sender=self.name)
            answers = await asyncio.gather(
                *(self.rpc(name, ask, NodesAnswer) for _, name in batch),
                return_exceptions=True,
            )
            for (node, _), answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException) or answer.nodes is None:
                    search.fail(node)
                    continue
                search.answer([(int(h, 16), s) for h, s in answer.nodes])
        self.last_hops = search.hops
        return search.closest()

    async def replicas_for(self, key: str) -> list[str]:
        return [name for _, name in (await self.lookup(int(key, 16)))[: self.replication]]

    # -- values ------------------------------------------------------------------------------------

    async def store(self, record: dict[str, Any], quorum: int | None = None) -> list[str]:
        """Store on the R closest servers; the servers that hold it, once W of them do.

        ``quorum`` overrides W for this write (1..R). With fewer copies the write
        raises :class:`QuorumError` (503): the copies that were stored stay where they
        are (a later write of the address replaces them, and repair spreads them like
        any record) but the value counts as not written, and the caller is told so.
        """
        needed = self.write_quorum if quorum is None else quorum
        if not 1 <= needed <= self.replication:
            raise RequestInvalidError(
                f"write quorum {needed} must be between 1 and R = {self.replication}",
                reason="quorum_invalid",
            )
        record["digest"] = record_digest(record)
        targets = await self.replicas_for(record["key"])
        ask = Store(record=record, sender=self.name)
        results = await asyncio.gather(
            *(self.rpc(t, ask, StoreAnswer) for t in targets), return_exceptions=True
        )
        stored = [
            t
            for t, r in zip(targets, results, strict=True)
            if isinstance(r, StoreAnswer) and r.stored
        ]
        if len(stored) < needed:
            raise QuorumError(
                f"the value reached {len(stored)} of the {needed} replicas a write needs "
                f"(W = {needed} of R = {self.replication}; tried {', '.join(targets) or 'none'})"
                ": it is not acknowledged, write it again once more DHT servers are up",
                reached=len(stored),
                needed=needed,
                replicas=stored,
            )
        return stored

    async def find(self, key: str) -> dict[str, Any]:
        """Newest intact copy among the replicas; NotFoundError when there is none.

        A settled constellation answers from the R closest servers when all R hold the
        same intact version: those are the servers every put stored on. Otherwise (one
        of them lacks the value, holds another version, a damaged copy or does not
        answer; or membership changed recently, when a writer may have seen other
        closest servers and repair may not have moved the copies yet) the read asks up
        to 2R candidates and takes the newest. Asking 2R every time cost every read
        the slowest of 2R processes, and on a small host most of its latency.
        """
        candidates = (await self.lookup(int(key, 16)))[: max(self.replication * 2, 4)]
        first = candidates[: self.replication] if self.settled() else candidates
        records, answered = await self._find_values(key, first)
        versions = {r["version"] for r in records}
        if len(first) < len(candidates) and (len(records) < len(first) or len(versions) > 1):
            more, also = await self._find_values(key, candidates[len(first) :])
            records, answered = records + more, answered + also
        if answered < self.read_quorum:
            raise QuorumError(
                f"the read reached {answered} of the {self.read_quorum} DHT servers it needs "
                f"(R - W + 1 with R = {self.replication}, W = {self.write_quorum}), too few to "
                "be sure of the latest write; try again once more servers are up",
                reached=answered,
                needed=self.read_quorum,
            )
        best = max(records, key=lambda r: r["version"], default=None)
        if best is None or best.get("deleted"):
            raise NotFoundError("no such UCXL address in the DHT")
        return best

    async def _find_values(self, key: str, nodes: list[tuple[int, str]]) -> tuple[Records, int]:
        """The intact copies of ``key`` that ``nodes`` hold (a failed RPC holds none), and
        how many of the nodes answered at all (holding a copy or not)."""
        ask = FindValue(key=key, sender=self.name)
        answers = await asyncio.gather(
            *(self.rpc(name, ask, ValueAnswer) for _, name in nodes),
            return_exceptions=True,
        )
        answered = [a for a in answers if isinstance(a, ValueAnswer) and a.error is None]
        records = (a.record for a in answered)
        return [r for r in records if r is not None and intact(r)], len(answered)

    async def list(self, prefix: str) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for _, name in self.live_servers():
            with contextlib.suppress(UnavailableError):
                ask = ListRecords(prefix=prefix, sender=self.name)
                for record in (await self.rpc(name, ask, ListAnswer)).records:
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
        """Repair rounds for ever: a round that fails is logged and counted, and its pass
        starts over when the next one is due (a page that cannot be read is not retried
        in a tight loop). Records that cannot be read do not fail a round: the storage
        quarantines them. This loop used to swallow every error, so a node whose storage
        raised never pushed a copy again, without a word."""
        while True:
            await asyncio.sleep(self.repair_interval)
            try:
                if self.admit() and self.repair_due():
                    await self.repair()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._repair_failed("page", "a repair round failed")
                self._repair_cursor = ""  # start over with a new pass next time

    def _repair_failed(self, stage: str, what: str) -> None:
        self.on_repair_error(stage)
        log.exception("dht repair (%s): %s", stage, what)

    def repair_due(self) -> bool:
        """Whether to take the next repair round now.

        A pass over the local records runs when the set of live servers changed since
        the last pass began (a node left or joined: copies must move), and otherwise
        every ``scrub_interval`` (to find damaged copies and any a failed put left
        short). Once begun, a pass goes on round by round until it has seen every
        record. Between passes a steady constellation does no repair work at all; a
        pass every two seconds cost each node tens of milliseconds of event loop per
        round and showed up as the tail of read latency.
        """
        if self._repair_cursor:
            return True
        members = self.members()
        if (
            members != self._pass_members
            or time.monotonic() - self._pass_started >= self.scrub_interval
        ):
            self._pass_members, self._pass_started = members, time.monotonic()
            return True
        return False

    async def repair(self) -> int:
        """Bring the next batch of local records back to R copies on the R closest live servers.

        Each round takes up to ``repair_batch`` records from where the last one stopped,
        so a round's work and memory stay bounded however many records a node holds, and
        asks each peer about all of the batch's records it should hold in one HAS_MANY:
        a round costs one RPC per peer, plus one STORE per missing copy, rather than one
        RPC per record and replica.
        """
        assert self.storage is not None
        restored = 0
        if not self._repair_cursor:  # a new pass
            self._pass_under = 0
            restored = await self._restore_quarantined()
        # a row that does not decode is quarantined by the storage itself and not in the page
        records, self._repair_cursor = await self.storage.page(
            self._repair_cursor, self.repair_batch
        )
        owed: dict[str, Records] = {}  # peer → records it should hold
        no_room: set[str] = set()  # fewer live servers than R: nowhere for a copy
        for i, record in enumerate(records):
            if i % 50 == 49:
                await asyncio.sleep(0)  # digests cost CPU: let requests in between
            try:
                if not intact(record):
                    await self._quarantine_damaged(record["key"])
                    continue
                holders = self._closest_known(int(record["key"], 16), self.replication)
            except Exception:
                self._repair_failed("record", f"record {record.get('key')!r} skipped")
                continue
            if len(holders) < self.replication:
                no_room.add(record["key"])
            for _, name in holders:
                if name != self.name:
                    owed.setdefault(name, []).append(record)
        short: set[str] = set()  # a copy a peer should hold is neither confirmed nor restored
        counts = await asyncio.gather(
            *(self._repair_peer(name, batch, short) for name, batch in owed.items())
        )
        self._pass_under += len(no_room | short)
        if not self._repair_cursor:  # the pass is complete
            self.under_replicated = self._pass_under
            self._repaired_from = self._pass_started
        return sum(counts) + restored

    async def _quarantine_damaged(self, key: str) -> None:
        """Put aside a local copy whose digest no longer matches, unless a peer's STORE
        replaced it since the page was read (re-read past the cache: it must see the disk)."""
        assert self.storage is not None
        async with self._key_lock(key):
            current = (await self.storage.get_many([key])).get(key)
            if current is not None and not intact(current):
                self.on_corrupt()
                await self.storage.quarantine(key, "digest mismatch")

    def _key_lock(self, key: str) -> asyncio.Lock:
        return self._key_locks[int(key[:8], 16) % KEY_LOCK_STRIPES]

    async def _restore_quarantined(self) -> int:
        """Fetch a good copy of each quarantined key this node no longer holds from the
        servers that should hold one (newest intact copy wins); those with none anywhere
        stay pending, tried again next pass. Each key's failure is counted, not fatal."""
        assert self.storage is not None
        try:
            pending = await self.storage.quarantine_pending()
        except Exception:
            self._repair_failed("restore", "quarantine unreadable")
            return 0
        restored = 0
        for key in pending[:RESTORE_PER_PASS]:
            if not _KEY.match(key):
                continue  # no DHT key: nothing anywhere to fetch it from
            try:
                peers = [
                    item
                    for item in self._closest_known(int(key, 16), 2 * self.replication)
                    if item[1] != self.name
                ]
                copies, _ = await self._find_values(key, peers)
                best = max(copies, key=lambda r: r["version"], default=None)
                if best is None:
                    continue
                current = (await self.storage.get_many([key])).get(key)
                if current is None or not intact(current) or current["version"] < best["version"]:
                    await self.storage.put(key, best)
                    restored += 1
                    self.on_repair()
            except Exception:
                self._repair_failed("restore", f"quarantined key {key} not restored")
        return restored

    async def _repair_peer(self, name: str, records: Records, short: set[str]) -> int:
        """Send ``name`` each of ``records`` it lacks or holds in an older version; add to
        ``short`` the keys whose copy there is neither confirmed nor restored."""
        try:
            ask = HasMany(keys=[r["key"] for r in records], sender=self.name)
            answer = await self.rpc(name, ask, VersionsAnswer, timeout=5.0)
        except UnavailableError:
            short.update(r["key"] for r in records)
            return 0
        except Exception:
            self._repair_failed("peer", f"HAS_MANY to {name} failed")
            short.update(r["key"] for r in records)
            return 0
        if answer.versions is not None:
            versions = answer.versions
        else:  # a node from before HAS_MANY (a rolling upgrade): ask record by record
            versions = {}
            for r in records:
                with contextlib.suppress(UnavailableError):
                    has = await self.rpc(name, Has(key=r["key"], sender=self.name), VersionAnswer)
                    if has.version is not None:
                        versions[r["key"]] = has.version
        repaired = 0
        for record in records:
            held = versions.get(record["key"])
            if held is None or held < record["version"]:
                try:
                    stored = await self.rpc(
                        name, Store(record=record, sender=self.name), StoreAnswer
                    )
                except UnavailableError:
                    stored = StoreAnswer()
                if stored.stored:
                    repaired += 1
                    self.on_repair()
                else:
                    short.add(record["key"])
        return repaired


def _as(reply: type[A], answer: RpcAnswer) -> A:
    """A locally handled request's answer as the caller's ``reply`` (an error answer is
    any op's)."""
    if isinstance(answer, reply):
        return answer
    return reply.model_validate(answer.model_dump(exclude_unset=True))
