"""UCXL values on the DHT: the sealed writes, reads, tombstones and listings the REST
routes serve, each audited by who asked and timed on the beat."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from chorus_common.backbeat import Phase, Tracker
from chorus_common.errors import ChorusError, OversizeError
from chorus_common.sealed import SealedValue, check_shape, seal
from chorus_common.ucxl import UcxlAddress
from chorus_dht.audit import Action, AuditLog
from chorus_dht.metrics import DhtMetrics
from chorus_dht.node import DhtNode, QuorumError
from chorus_dht.roles import RoleKeys

__all__ = ["Stored", "UcxlValues"]

Record = dict[str, Any]


@dataclass(frozen=True)
class Stored:
    """A value (or tombstone) acknowledged by W replicas."""

    address: str
    key: str
    replicas: list[str]
    roles: list[str]


class UcxlValues:
    def __init__(
        self,
        node: DhtNode,
        roles: RoleKeys,
        audit: AuditLog,
        metrics: DhtMetrics,
        tracker: Tracker,
        *,
        max_value_bytes: int,
        default_ttl: float,
    ) -> None:
        self.node, self.roles, self.audit = node, roles, audit
        self.metrics, self.tracker = metrics, tracker
        self.max_value_bytes, self.default_ttl = max_value_bytes, default_ttl

    def parse(self, address: str) -> UcxlAddress:
        """An address a route was given: within the length limit, then by the grammar
        (the limit first, so a 60,000-character address is not echoed back in the error)."""
        self.node.check_address(address)
        return UcxlAddress.parse(address)

    @asynccontextmanager
    async def audited(self, action: Action, who: str, address: str) -> AsyncIterator[None]:
        """Record ``action`` on ``address`` by ``who`` (the caller's token's identity) in
        the audit log, with what came of it; a quorum refusal is counted as well."""
        try:
            yield
        except ChorusError as exc:
            if isinstance(exc, QuorumError):
                operation = "read" if action in ("read", "list") else "write"
                self.metrics.quorum_failures.labels(operation).inc()
            self.audit.record(action, who, address, exc.code)
            raise
        self.audit.record(action, who, address)

    async def put(
        self,
        address: UcxlAddress,
        value: Any,
        roles: list[str],
        ttl: float | None,
        quorum: int | None = None,
        sealed: SealedValue | None = None,
    ) -> Stored:
        """One ``dht.store`` operation on the beat: find replicas, store.

        ``sealed`` is the value as the client sealed it; the node checks its shape and
        stores it unopened (it cannot open it). Without it, ``value`` is plaintext the
        node seals to the roles' keys itself (deprecated: the node sees the value).
        """
        async with self.tracker.operation("dht.store") as op:
            started = time.perf_counter()
            limit = self.max_value_bytes
            if sealed is not None:
                check_shape(sealed, roles, limit)
                await op.phase(Phase.CONNECTING)
            else:
                plaintext = json.dumps(value).encode()
                if len(plaintext) > limit:
                    raise OversizeError(f"value is {len(plaintext)} bytes; the limit is {limit}")
                await op.phase(Phase.CONNECTING)
                recipients = await self.roles.for_sealing(roles)
                await op.phase(Phase.NEGOTIATING)
                sealed = seal(plaintext, recipients, aad=str(address).encode())
            key = address.key().hex()
            now = time.time()
            record = {
                "key": key,
                "address": str(address),
                "sealed": sealed.model_dump(),
                "version": time.time_ns(),
                "stored_at": now,
                "expires_at": now + (ttl or self.default_ttl),
                "deleted": False,
            }
            await op.phase(Phase.EXECUTING)
            replicas = await self.node.store(record, quorum)
            self.metrics.hops.observe(self.node.last_hops)
            self.metrics.latency.labels("put").observe(time.perf_counter() - started)
            return Stored(str(address), key, replicas, sorted(sealed.wrapped))

    async def get(self, address: str, who: str) -> Record:
        """The newest intact record at ``address`` (404 when there is none, or a tombstone)."""
        started = time.perf_counter()
        parsed = self.parse(address)
        async with self.audited("read", who, str(parsed)):
            record = await self.node.find(parsed.key().hex())
        self.metrics.latency.labels("get").observe(time.perf_counter() - started)
        return record

    async def delete(self, address: str, who: str, quorum: int | None) -> Stored:
        """Store a tombstone at the address, acknowledged like a write (W copies)."""
        parsed = self.parse(address)
        key = parsed.key().hex()
        async with self.audited("delete", who, str(parsed)):
            await self.node.find(key)  # 404 if absent
            now = time.time()
            tomb = {
                "key": key,
                "address": str(parsed),
                "sealed": None,
                "version": time.time_ns(),
                "stored_at": now,
                "expires_at": now + self.default_ttl,
                "deleted": True,
            }
            replicas = await self.node.store(tomb, quorum)
        return Stored(str(parsed), key, replicas, [])

    async def list(self, prefix: str, who: str) -> list[Record]:
        """The newest live record of every address under ``prefix``, by address."""
        self.node.check_address(prefix)
        async with self.audited("list", who, prefix):
            return await self.node.list(prefix)
