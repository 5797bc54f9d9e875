"""The DHT service: one Kademlia node per process, with encrypted UCXL storage over REST.

Wiring and lifecycle only: the routes are in :mod:`chorus_dht.app`, what they do on the
node in :mod:`chorus_dht.values`, the node (membership, replication, its announce and
repair loops) in :mod:`chorus_dht.node`.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import APIRouter

from chorus_common.errors import ConfigError
from chorus_common.service import Service
from chorus_dht.app import router
from chorus_dht.audit import AuditLog
from chorus_dht.cache import CachedStorage, TtlCache
from chorus_dht.metrics import DhtMetrics, storage_check
from chorus_dht.node import DhtNode
from chorus_dht.roles import RoleKeys
from chorus_dht.settings import DhtSettings
from chorus_dht.storage import RedisStorage, SqliteStorage, Storage
from chorus_dht.values import UcxlValues

__all__ = ["DhtService", "DhtSettings"]


def open_storage(s: DhtSettings, metrics: DhtMetrics) -> Storage | None:
    """The storage ``s`` configures (None for a client node), behind the TTL cache."""
    if s.dht_mode == "client" or s.dht_engine == "none":
        return None
    if s.dht_engine == "redis":
        if not s.redis_url:
            raise ConfigError("CHORUS_DHT_ENGINE=redis needs CHORUS_REDIS_URL")
        inner: Storage = RedisStorage(s.redis_url, s.node_id)
    else:
        inner = SqliteStorage(s.data_dir / "dht.sqlite3")
    if s.dht_cache_entries == 0:
        return inner
    return CachedStorage(
        inner,
        TtlCache(s.dht_cache_entries, s.dht_cache_ttl_seconds),
        on_hit=metrics.cache_hits.inc,
        on_miss=metrics.cache_misses.inc,
    )


class DhtService(Service):
    name = "dht"
    description = "Kademlia DHT node over NATS with encrypted UCXL storage"
    settings_class = DhtSettings
    settings: DhtSettings
    routers: ClassVar[tuple[APIRouter, ...]] = (router,)

    def __init__(self, settings: DhtSettings | None = None) -> None:
        super().__init__(settings)
        self.dht_metrics = DhtMetrics(self.metrics.registry)
        self.audit = self.provide(AuditLog(self.settings.dht_audit_events))

    async def setup(self) -> None:
        s, m, audit = self.settings, self.dht_metrics, self.audit

        def peer_stored(peer: str, address: str) -> None:
            """A STORE over NATS RPC: the writer (or a repairing node) is the peer."""
            audit.record("store", f"node:{peer}", address)

        self.node = DhtNode(
            self.bus,
            s.node_id,
            open_storage(s, m),
            mode=s.dht_mode,
            replication=s.dht_replication,
            announce_interval=s.dht_announce_interval_seconds,
            repair_interval=s.dht_repair_interval_seconds,
            scrub_interval=s.dht_scrub_interval_seconds,
            write_quorum=s.dht_write_quorum,
            max_address_bytes=s.dht_max_address_bytes,
            on_rpc=lambda kind, result: m.rpcs.labels(kind, result).inc(),
            on_repair=m.repairs.inc,
            on_corrupt=m.corrupt.inc,
            on_quarantine=lambda key, reason: m.quarantined.inc(),
            on_repair_error=lambda stage: m.repair_errors.labels(stage).inc(),
            on_peer_store=peer_stored,
            admit=lambda: self.licensed,
        )
        await self.node.start()
        node = self.node
        m.under_replicated.set_function(lambda: node.under_replicated)
        roles = RoleKeys.open(self.bus)
        self.provide(node)
        self.provide(roles)
        self.provide(
            UcxlValues(
                node,
                roles,
                audit,
                m,
                self.tracker,
                max_value_bytes=s.dht_max_value_bytes,
                default_ttl=s.dht_default_ttl_seconds,
            )
        )
        self.health.add("storage", storage_check(node, m), critical=True)

    async def teardown(self) -> None:
        await self.node.stop()
