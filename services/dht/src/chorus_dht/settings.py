"""DHT settings: CHORUS_* common ones plus the node's own (CHORUS_DHT_*)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from chorus_common.config import ChorusSettings

__all__ = ["DhtSettings"]


class DhtSettings(ChorusSettings):
    dht_mode: Literal["client", "server", "auto"] = "auto"
    dht_engine: Literal["sqlite", "redis", "none"] = "sqlite"
    dht_replication: int = Field(default=3, ge=1, le=20)
    #: W, copies a store needs before it is acknowledged; unset: a majority of R
    dht_write_quorum: int | None = Field(default=None, ge=1, le=20)
    dht_max_value_bytes: int = Field(default=256 * 1024, ge=1024)
    #: longest UCXL address (or prefix) in bytes any route or RPC takes
    dht_max_address_bytes: int = Field(default=1024, ge=64)
    dht_default_ttl_seconds: float = Field(default=30 * 24 * 3600.0, gt=0)
    dht_announce_interval_seconds: float = Field(default=1.0, gt=0)
    dht_repair_interval_seconds: float = Field(default=2.0, gt=0)
    dht_scrub_interval_seconds: float = Field(default=60.0, gt=0)
    #: the cache in front of storage: entries (0 turns it off) and how long each is kept
    dht_cache_entries: int = Field(default=4096, ge=0)
    dht_cache_ttl_seconds: float = Field(default=10.0, gt=0)
    #: audit events each node keeps for GET /v1/audit (each is also a log line)
    dht_audit_events: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _quorum_within_replication(self) -> Self:
        if self.dht_write_quorum is not None and self.dht_write_quorum > self.dht_replication:
            raise ValueError(
                f"CHORUS_DHT_WRITE_QUORUM={self.dht_write_quorum} is more than "
                f"CHORUS_DHT_REPLICATION={self.dht_replication}: W must be between 1 and R"
            )
        return self
