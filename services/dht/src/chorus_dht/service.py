"""The DHT service: one Kademlia node per process, with encrypted UCXL storage over REST."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, Self

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from nats.js.errors import KeyNotFoundError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, Field, model_validator

from chorus_common.backbeat import Phase
from chorus_common.config import ChorusSettings
from chorus_common.errors import (
    ChorusError,
    ConfigError,
    NotFoundError,
    OversizeError,
    RequestInvalidError,
)
from chorus_common.metrics import LATENCY_BUCKETS
from chorus_common.sealed import SealedValue, check_shape, seal
from chorus_common.service import Service, problem_responses
from chorus_common.topology import BUCKET_REGISTRY
from chorus_common.ucxl import UcxlAddress, decision_address
from chorus_dht.audit import Action, AuditLog
from chorus_dht.cache import CachedStorage, TtlCache
from chorus_dht.node import REPAIR_STAGES, DhtNode, QuorumError, intact
from chorus_dht.storage import RedisStorage, SqliteStorage, Storage

log = logging.getLogger("chorus.dht")
#: routes that took a plaintext write in this process (each is warned about once)
_PLAINTEXT_WARNED: set[str] = set()


def _warn_plaintext(route: str) -> None:
    """Log once per process and route that a writer still sends plaintext, so operators
    find the clients to upgrade without a line per write."""
    if route in _PLAINTEXT_WARNED:
        return
    _PLAINTEXT_WARNED.add(route)
    log.warning(
        "%s took a plaintext value (deprecated): this node saw it while sealing it. Seal on "
        "the client (chorus_common.ucxl_client.UcxlClient.put, keys from GET "
        "/v1/roles/{role}/keys) and send `sealed`; logged once per process",
        route,
    )


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


#: role names end up in registry keys (``role.<name>``): letters, digits, '_' and '-'
ROLE = r"^[A-Za-z0-9_\-]{1,64}$"
RoleName = Annotated[str, Field(pattern=ROLE)]


#: what the OpenAPI document shows (and the fuzzer starts from)
EXAMPLE_ADDRESS = "ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/x.json"
EXAMPLE_ROLE_KEY = "Wt-yYY1viC6vq6jHc6EApr5LHWr54PMHi2-oPbXY_zk"
Address = PathParam(description="a UCXL address", examples=[EXAMPLE_ADDRESS])
WriteQuorum = Query(
    None,
    ge=1,
    le=20,
    description="copies this write needs before it is acknowledged (1..R; default the node's W)",
)


EXAMPLE_SEALED: dict[str, Any] = {
    "v": 2,
    "alg": "hpke-x25519-sha256-chacha20poly1305",
    "ciphertext": "Y2lwaGVydGV4dCBhbmQgaXRzIHRhZyE",
    "nonce": "AAECAwQFBgcICQoL",
    "wrapped": {
        "architect": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BBQkNERUZHSElKS0xNTk8"
    },
}


class SealedBody(SealedValue):
    """A v2 sealed value as a writer sends it: ``v`` and ``alg`` must be given, not assumed,
    so a body in another format is a 422 rather than being taken for this one."""

    v: Literal[2]
    alg: Literal["hpke-x25519-sha256-chacha20poly1305"]


def _exactly_one(sealed: bool, plaintext: bool, plain: str) -> None:
    """A write body carries either ``sealed`` or the deprecated plaintext field, not both."""
    if sealed == plaintext:
        raise ValueError(
            f"send `sealed` (the value sealed on the client to the roles' keys, from "
            f"GET /v1/roles/{{role}}/keys) or the deprecated plaintext `{plain}`, exactly one"
        )


class PutValue(BaseModel):
    model_config = {
        "json_schema_extra": {"examples": [{"sealed": EXAMPLE_SEALED, "roles": ["architect"]}]}
    }

    sealed: SealedBody | None = Field(
        default=None,
        description="the value sealed on the client (chorus_common.ucxl_client) with the "
        "HPKE info bound to this PUT's address; the node stores it without opening it",
    )
    value: Any = Field(
        default=None,
        description="deprecated: plaintext the node seals itself, so the node sees it",
        json_schema_extra={"deprecated": True},
    )
    roles: list[RoleName] = Field(min_length=1, description="roles that may read it")
    ttl_seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _sealed_or_value(self) -> Self:
        _exactly_one(self.sealed is not None, "value" in self.model_fields_set, "value")
        return self


class RoleKey(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"public_key": EXAMPLE_ROLE_KEY}]}}

    public_key: str = Field(min_length=40, max_length=64, description="X25519, URL-safe base64")


class DecisionRecord(BaseModel):
    """A decision to publish: sealed by the caller (``decision_id`` and the address fields
    say where, and the caller sealed to that address), or, deprecated, in plaintext."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "decision_id": "5f2c9a01be7d",
                    "author": "gpt4",
                    "role": "architect",
                    "project": "chorus",
                    "sealed": EXAMPLE_SEALED,
                    "roles": ["architect"],
                }
            ]
        }
    }

    sealed: SealedBody | None = Field(
        default=None,
        description="the decision record sealed on the client to the address "
        "chorus_common.ucxl.decision_address gives for these fields",
    )
    decision_id: str | None = Field(
        default=None, pattern=r"^[a-f0-9]{6,32}$", description="chosen by a sealing caller"
    )
    decision: str | None = Field(
        default=None,
        min_length=1,
        description="deprecated: plaintext the node seals itself",
        json_schema_extra={"deprecated": True},
    )
    rationale: str = ""
    author: str = Field(pattern=r"^[a-zA-Z0-9_\-]+$")
    role: str = Field(default="any", pattern=r"^[a-zA-Z0-9_\-]+$")
    project: str = Field(pattern=r"^[a-zA-Z0-9_\-]+$")
    task: str = Field(default="any", pattern=r"^[a-zA-Z0-9_\-]+$")
    related: list[str] = Field(default_factory=list)
    roles: list[RoleName] = Field(min_length=1)

    @model_validator(mode="after")
    def _sealed_or_plaintext(self) -> Self:
        _exactly_one(self.sealed is not None, self.decision is not None, "decision")
        if self.sealed is not None:
            plain = sorted({"rationale", "related"} & self.model_fields_set)
            if plain:
                raise ValueError(
                    f"a sealed decision carries {plain} inside `sealed`, not beside it"
                )
            if self.decision_id is None:
                raise ValueError("a sealed decision names the `decision_id` it was sealed for")
        elif self.decision_id is not None:
            raise ValueError("`decision_id` goes with `sealed`; the node picks it otherwise")
        return self


class DhtService(Service):
    name = "dht"
    description = "Kademlia DHT node over NATS with encrypted UCXL storage"
    settings_class = DhtSettings
    settings: DhtSettings

    def __init__(self, settings: DhtSettings | None = None) -> None:
        super().__init__(settings)
        r = self.metrics.registry
        self.m_rpcs = Counter(
            "chorus_dht_rpcs_total",
            "Node RPCs sent, by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.m_hops = Histogram(
            "chorus_dht_lookup_hops",
            "Rounds of an iterative lookup",
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15),
            registry=r,
        )
        self.m_latency = Histogram(
            "chorus_dht_operation_duration_seconds",
            "put/get/delete/list latency",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.m_records = Gauge("chorus_dht_stored_records", "Records held by this node", registry=r)
        self.m_bytes = Gauge(
            "chorus_dht_stored_bytes", "Bytes of records held by this node", registry=r
        )
        self.m_repairs = Counter(
            "chorus_dht_replication_repairs_total", "Copies re-sent to restore R", registry=r
        )
        self.m_corrupt = Counter(
            "chorus_dht_corrupt_replicas_total",
            "Local replicas whose digest no longer matched, dropped or replaced by a good copy",
            registry=r,
        )
        self.m_routing = Gauge(
            "chorus_dht_routing_table_size", "Nodes in the routing table", registry=r
        )
        self.m_under = Gauge(
            "chorus_dht_under_replicated_records",
            "Local records left with fewer than R live copies by the last complete repair pass",
            registry=r,
        )
        self.m_quarantined = Counter(
            "chorus_dht_quarantined_records_total",
            "Local rows put aside because they could not be read or their digest did not match",
            registry=r,
        )
        self.m_quarantine_pending = Gauge(
            "chorus_dht_quarantine_pending_records",
            "Quarantined keys this node holds no good copy of yet (repair fetches one)",
            registry=r,
        )
        self.m_repair_errors = Counter(
            "chorus_dht_repair_errors_total",
            "Repair failures by stage (page, record, peer, restore); each is also logged",
            ["stage"],
            registry=r,
        )
        for stage in REPAIR_STAGES:
            self.m_repair_errors.labels(stage)
        self.m_quorum = Counter(
            "chorus_dht_quorum_failures_total",
            "Writes and reads answered 503 because too few replicas stored or answered",
            ["operation"],
            registry=r,
        )
        for operation in ("write", "read"):
            self.m_quorum.labels(operation)
        self.m_cache_hits = Counter(
            "chorus_dht_cache_hits_total", "Storage lookups answered by the TTL cache", registry=r
        )
        self.m_cache_misses = Counter(
            "chorus_dht_cache_misses_total",
            "Storage lookups the TTL cache did not hold (read from storage)",
            registry=r,
        )
        self.audit = AuditLog(self.settings.dht_audit_events)

    def _storage(self) -> Storage | None:
        s = self.settings
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
            on_hit=self.m_cache_hits.inc,
            on_miss=self.m_cache_misses.inc,
        )

    async def setup(self) -> None:
        s = self.settings
        self.node = DhtNode(
            self.bus,
            s.node_id,
            self._storage(),
            mode=s.dht_mode,
            replication=s.dht_replication,
            announce_interval=s.dht_announce_interval_seconds,
            repair_interval=s.dht_repair_interval_seconds,
            scrub_interval=s.dht_scrub_interval_seconds,
            write_quorum=s.dht_write_quorum,
            max_address_bytes=s.dht_max_address_bytes,
            on_rpc=lambda kind, result: self.m_rpcs.labels(kind, result).inc(),
            on_repair=self.m_repairs.inc,
            on_corrupt=self.m_corrupt.inc,
            on_quarantine=lambda key, reason: self.m_quarantined.inc(),
            on_repair_error=lambda stage: self.m_repair_errors.labels(stage).inc(),
            on_peer_store=self._peer_stored,
            admit=lambda: self.licensed,
        )
        await self.node.start()
        self.m_under.set_function(lambda: self.node.under_replicated)
        self.registry_kv = await self.bus.js.key_value(BUCKET_REGISTRY)

        async def storage_check() -> str:
            if self.node.storage is None:
                return "client mode: no storage"
            count, size = await self.node.storage.stats()  # runs every health interval
            self.m_records.set(count)
            self.m_bytes.set(size)
            self.m_quarantine_pending.set(len(await self.node.storage.quarantine_pending()))
            self.m_routing.set(len(self.node.table))
            return f"{count} records, {len(self.node.table)} peers"

        self.health.add("storage", storage_check, critical=True)

    async def teardown(self) -> None:
        await self.node.stop()

    async def role_keys(self, roles: list[str]) -> dict[str, str]:
        out = {}
        for role in roles:
            try:
                entry = await self.registry_kv.get(f"role.{role}")
            except KeyNotFoundError:
                raise RequestInvalidError(
                    f"unknown role {role!r}: register its key with POST /v1/roles/{role}/keys"
                ) from None
            out[role] = json.loads(entry.value or b"{}")["public_key"]
        return out

    def _peer_stored(self, peer: str, address: str) -> None:
        """A STORE over NATS RPC: the writer (or a repairing node) is the peer."""
        self.audit.record("store", f"node:{peer}", address)

    def parse(self, address: str) -> UcxlAddress:
        """An address a route was given: within the length limit, then by the grammar
        (the limit first, so a 60,000-character address is not echoed back in the error)."""
        self.node.check_address(address)
        return UcxlAddress.parse(address)

    @asynccontextmanager
    async def audited(self, action: Action, request: Request, address: str) -> AsyncIterator[None]:
        """Record ``action`` on ``address`` by the caller (its token's identity) in the
        audit log, with what came of it; a quorum refusal is counted as well."""
        identity = getattr(request.state, "identity", None)
        who = f"{identity.kind}:{identity.name}" if identity is not None else "anonymous"
        try:
            yield
        except ChorusError as exc:
            if isinstance(exc, QuorumError):
                self.m_quorum.labels("read" if action in ("read", "list") else "write").inc()
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
    ) -> dict[str, Any]:
        """One ``dht.store`` operation on the beat: find replicas, store.

        ``sealed`` is the value as the client sealed it; the node checks its shape and
        stores it unopened (it cannot open it). Without it, ``value`` is plaintext the
        node seals to the roles' keys itself (deprecated: the node sees the value).
        """
        async with self.tracker.operation("dht.store") as op:
            started = time.perf_counter()
            limit = self.settings.dht_max_value_bytes
            if sealed is not None:
                check_shape(sealed, roles, limit)
                await op.phase(Phase.CONNECTING)
            else:
                plaintext = json.dumps(value).encode()
                if len(plaintext) > limit:
                    raise OversizeError(f"value is {len(plaintext)} bytes; the limit is {limit}")
                await op.phase(Phase.CONNECTING)
                recipients = await self.role_keys(roles)
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
                "expires_at": now + (ttl or self.settings.dht_default_ttl_seconds),
                "deleted": False,
            }
            await op.phase(Phase.EXECUTING)
            replicas = await self.node.store(record, quorum)
            self.m_hops.observe(self.node.last_hops)
            self.m_latency.labels("put").observe(time.perf_counter() - started)
            return {
                "address": str(address),
                "key": key,
                "replicas": replicas,
                "roles": sorted(sealed.wrapped),
            }

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        @app.put(
            "/v1/ucxl/{address:path}",
            dependencies=[Depends(admin)],
            tags=["ucxl"],
            # 404: an address with a line break matches no route ({address:path} stops there)
            responses=problem_responses(400, 404, 413, 422, 503),
        )
        async def put_value(
            request: Request,
            body: PutValue,
            address: str = Address,
            w: int | None = WriteQuorum,
        ) -> dict[str, Any]:
            """Store a value sealed on the client on the R closest nodes; acknowledged once
            W of them hold it (503 with ``reached`` and ``needed`` otherwise).

            The node checks the sealed value's shape (v2, alg, roles, sizes) but holds no
            role key, so it cannot check that the client bound it to this address: a
            mis-bound value is stored and fails to open for every reader. A plaintext
            ``value`` is still taken (deprecated, warned about once), sealed here.
            """
            parsed = self.parse(address)
            if body.sealed is None:
                _warn_plaintext("PUT /v1/ucxl")
            async with self.audited("store", request, str(parsed)):
                return await self.put(
                    parsed, body.value, body.roles, body.ttl_seconds, w, sealed=body.sealed
                )

        @app.get(
            "/v1/ucxl/{address:path}",
            tags=["ucxl"],
            responses=problem_responses(400, 403, 404, 503),
        )
        async def get_value(
            request: Request,
            address: str = Address,
            x_chorus_role_key: str | None = Header(
                default=None,
                deprecated=True,
                description="refused: role keys never leave their holder (open values client-side)",
            ),
        ) -> dict[str, Any]:
            """The sealed record: ciphertext and one sealed content key per role.

            Values open on the client (``chorus_common.ucxl_client``, HAP, ``chorus ucxl``),
            never here: a node that took role private keys would see every value.
            """
            if x_chorus_role_key is not None:
                # refused rather than ignored, so an old client learns at once that it leaks its key
                raise RequestInvalidError(
                    "the DHT does not take role private keys (X-Chorus-Role-Key): fetch the "
                    "sealed record and open it where the key is (chorus_common.ucxl_client."
                    "UcxlClient.get, or `chorus ucxl get`); treat the key you sent as exposed",
                    reason="role_key_refused",
                )
            started = time.perf_counter()
            parsed = self.parse(address)
            async with self.audited("read", request, str(parsed)):
                record = await self.node.find(parsed.key().hex())
            self.m_latency.labels("get").observe(time.perf_counter() - started)
            doc: dict[str, Any] = {
                "address": record["address"],
                "version": record["version"],
                "roles": sorted(record["sealed"]["wrapped"]),
                "stored_at": record["stored_at"],
                "expires_at": record.get("expires_at"),
                "sealed": record["sealed"],
            }
            return doc

        @app.delete(
            "/v1/ucxl/{address:path}",
            dependencies=[Depends(admin)],
            tags=["ucxl"],
            responses=problem_responses(400, 404, 422, 503),
        )
        async def delete_value(
            request: Request, address: str = Address, w: int | None = WriteQuorum
        ) -> dict[str, Any]:
            """Store a tombstone at the address, acknowledged like a write (W copies)."""
            parsed = self.parse(address)
            key = parsed.key().hex()
            async with self.audited("delete", request, str(parsed)):
                await self.node.find(key)  # 404 if absent
                now = time.time()
                tomb = {
                    "key": key,
                    "address": str(parsed),
                    "sealed": None,
                    "version": time.time_ns(),
                    "stored_at": now,
                    "expires_at": now + self.settings.dht_default_ttl_seconds,
                    "deleted": True,
                }
                replicas = await self.node.store(tomb, w)
            return {"deleted": str(parsed), "replicas": replicas}

        @app.get("/v1/ucxl", tags=["ucxl"], responses=problem_responses(422, 503))
        async def list_values(
            request: Request,
            prefix: str = Query("ucxl://", description="address prefix"),
        ) -> dict[str, Any]:
            self.node.check_address(prefix)
            async with self.audited("list", request, prefix):
                found = await self.node.list(prefix)
            items = [
                {
                    "address": r["address"],
                    "version": r["version"],
                    "roles": sorted((r.get("sealed") or {}).get("wrapped") or {}),
                }
                for r in found
            ]
            return {"prefix": prefix, "items": items}

        @app.get("/v1/nodes", tags=["dht"])
        async def nodes() -> dict[str, Any]:
            return {
                "self": {
                    "name": self.node.name,
                    "id": f"{self.node.node_id:064x}",
                    "server": self.node.server,
                    "mode": self.node.mode,
                },
                "peers": [
                    {"name": p.name, "id": f"{p.node_id:064x}", "server": p.server}
                    for p in self.node.peers.values()
                ],
            }

        @app.get("/v1/routing", tags=["dht"])
        async def routing() -> dict[str, Any]:
            return {
                "k": self.node.k,
                "size": len(self.node.table),
                "buckets": {
                    str(i): list(b.values())
                    for i, b in sorted(self.node.table.buckets.items())
                    if b
                },
            }

        @app.get("/v1/local", tags=["dht"])
        async def local() -> dict[str, Any]:
            """What this node itself stores (for operators counting replicas), and the rows
            it put aside as damaged (``restored``: it holds a good copy again)."""
            storage = self.node.storage
            records = await storage.all() if storage is not None else []
            quarantined = await storage.quarantined() if storage is not None else []
            return {
                "records": [
                    {
                        "key": r["key"],
                        "address": r["address"],
                        "deleted": r.get("deleted", False),
                        "intact": intact(r),
                    }
                    for r in records
                ],
                "quarantined": quarantined,
            }

        @app.get(
            "/v1/audit",
            dependencies=[Depends(admin)],
            tags=["dht"],
            responses=problem_responses(422),
        )
        async def audit(
            address: str | None = Query(None, description="only events on this UCXL address"),
            limit: int = Query(100, ge=1, le=1000),
        ) -> dict[str, Any]:
            """The newest stores, reads, deletes and listings this node served: who, what,
            when and with what result (a bounded ring; every event is also logged)."""
            if address is not None:
                self.node.check_address(address)
            events = self.audit.query(address, limit)
            return {"address": address, "events": [e.as_dict() for e in events]}

        @app.get(
            "/v1/roles/{role}/keys",
            tags=["roles"],
            responses=problem_responses(404, 503),
        )
        async def role_key(
            role: str = PathParam(
                pattern=ROLE, description="letters, digits, '_' and '-'", examples=["architect"]
            ),
        ) -> dict[str, str]:
            """The X25519 public key registered for ``role`` (read scope): writers seal
            values to it on their side, so no node sees what they write."""
            try:
                entry = await self.registry_kv.get(f"role.{role}")
            except KeyNotFoundError:
                raise NotFoundError(
                    f"no key is registered for role {role!r}: register it with "
                    f"POST /v1/roles/{role}/keys"
                ) from None
            public_key: str = json.loads(entry.value or b"{}")["public_key"]
            return {"role": role, "public_key": public_key}

        @app.post(
            "/v1/roles/{role}/keys",
            dependencies=[Depends(admin)],
            status_code=201,
            tags=["roles"],
            responses=problem_responses(503),
        )
        async def register_role(
            body: RoleKey,
            role: str = PathParam(
                pattern=ROLE, description="letters, digits, '_' and '-'", examples=["architect"]
            ),
        ) -> dict[str, str]:
            """Register the X25519 public key values for ``role`` are sealed to."""
            await self.registry_kv.put(
                f"role.{role}", json.dumps({"public_key": body.public_key}).encode()
            )
            return {"role": role, "public_key": body.public_key}

        @app.post(
            "/v1/decisions",
            dependencies=[Depends(admin)],
            status_code=201,
            tags=["decisions"],
            responses=problem_responses(400, 413, 422, 503),
        )
        async def publish_decision(
            request: Request, body: DecisionRecord, w: int | None = WriteQuorum
        ) -> dict[str, Any]:
            """DecisionPublisher: store a decision record at its UCXL address, acknowledged
            once W replicas hold it.

            A caller seals the record itself (``UcxlClient.publish_decision``) for the
            address ``decision_id`` and the address fields name; a plaintext
            ``decision`` is still taken (deprecated, warned about once), sealed here.
            """
            decision_id = body.decision_id or secrets.token_hex(6)
            address = self.parse(
                decision_address(body.author, body.role, body.project, body.task, decision_id)
            )
            if body.sealed is not None:
                async with self.audited("store", request, str(address)):
                    return await self.put(address, None, body.roles, None, w, sealed=body.sealed)
            _warn_plaintext("POST /v1/decisions")
            record = body.model_dump(exclude={"roles", "sealed", "decision_id"}) | {
                "decision_id": decision_id,
                "at": time.time(),
            }
            async with self.audited("store", request, str(address)):
                return await self.put(address, record, body.roles, None, w)
