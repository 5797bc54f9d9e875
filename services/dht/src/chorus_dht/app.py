"""HTTP routes of a DHT node: UCXL values, role keys, decisions, and what the node holds."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, model_validator

from chorus_common.dependencies import Provided, Requires
from chorus_common.errors import RequestInvalidError
from chorus_common.identity import Scope
from chorus_common.sealed import SealedValue
from chorus_common.service import problem_responses
from chorus_common.ucxl import decision_address
from chorus_dht.audit import AuditLog
from chorus_dht.node import DhtNode, intact
from chorus_dht.roles import RoleKeys
from chorus_dht.values import Stored, UcxlValues

__all__ = [
    "AuditEntry",
    "AuditPage",
    "DecisionRecord",
    "Deleted",
    "Listing",
    "ListingItem",
    "LocalRecord",
    "LocalRecords",
    "NodeInfo",
    "Nodes",
    "PeerInfo",
    "PutValue",
    "QuarantineEntry",
    "RoleKey",
    "RolePublicKey",
    "Routing",
    "SealedBody",
    "SealedRecord",
    "StoredValue",
    "router",
]

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
Role = PathParam(pattern=ROLE, description="letters, digits, '_' and '-'", examples=["architect"])


EXAMPLE_SEALED: dict[str, Any] = {
    "v": 2,
    "alg": "hpke-x25519-sha256-chacha20poly1305",
    "ciphertext": "Y2lwaGVydGV4dCBhbmQgaXRzIHRhZyE",
    "nonce": "AAECAwQFBgcICQoL",
    "wrapped": {
        "architect": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BBQkNERUZHSElKS0xNTk8"
    },
}


# -- request bodies -------------------------------------------------------------------------


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


# -- response bodies ------------------------------------------------------------------------

#: a time in seconds since the epoch as a record carries it (a number; kept as given)
Seconds = float | int


class StoredValue(BaseModel):
    """A write acknowledged by W replicas."""

    address: str
    key: str = Field(description="the DHT key: SHA-256 of the address, hex")
    replicas: list[str] = Field(description="the nodes that hold it")
    roles: list[str] = Field(description="the roles it is sealed to")

    @classmethod
    def of(cls, stored: Stored) -> StoredValue:
        return cls(
            address=stored.address, key=stored.key, replicas=stored.replicas, roles=stored.roles
        )


class SealedRecord(BaseModel):
    """The sealed record at an address: ciphertext and one sealed content key per role."""

    address: str
    version: int
    roles: list[str]
    stored_at: Seconds
    expires_at: Seconds | None
    sealed: dict[str, Any] = Field(
        description="the sealed value as written (v2 HPKE, or v1 from before it)"
    )


class Deleted(BaseModel):
    deleted: str = Field(description="the address the tombstone was stored at")
    replicas: list[str]


class ListingItem(BaseModel):
    address: str
    version: int
    roles: list[str]


class Listing(BaseModel):
    prefix: str
    items: list[ListingItem]


class NodeInfo(BaseModel):
    name: str
    id: str = Field(description="the 256-bit node id, hex")
    server: bool
    mode: Literal["client", "server", "auto"]


class PeerInfo(BaseModel):
    name: str
    id: str
    server: bool


class Nodes(BaseModel):
    self: NodeInfo
    peers: list[PeerInfo]


class Routing(BaseModel):
    k: int
    size: int
    buckets: dict[str, list[str]] = Field(description="non-empty k-buckets by index: node names")


class LocalRecord(BaseModel):
    key: str
    address: str
    deleted: bool
    intact: bool


class QuarantineEntry(BaseModel):
    key: str
    reason: str
    at: float
    size: int
    restored: bool = Field(description="the node holds a good copy of the key again")


class LocalRecords(BaseModel):
    records: list[LocalRecord]
    quarantined: list[QuarantineEntry]


class AuditEntry(BaseModel):
    at: float
    action: Literal["store", "read", "delete", "list"]
    who: str
    address: str
    result: str


class AuditPage(BaseModel):
    address: str | None
    events: list[AuditEntry]


class RolePublicKey(BaseModel):
    role: str
    public_key: str


# -- routes ---------------------------------------------------------------------------------

router = APIRouter()
Values = Annotated[UcxlValues, Provided(UcxlValues)]
Node = Annotated[DhtNode, Provided(DhtNode)]
Roles = Annotated[RoleKeys, Provided(RoleKeys)]
Audit = Annotated[AuditLog, Provided(AuditLog)]


def _who(request: Request) -> str:
    """Who the audit log names: the caller's token's identity, or ``anonymous``."""
    identity = getattr(request.state, "identity", None)
    return f"{identity.kind}:{identity.name}" if identity is not None else "anonymous"


@router.put(
    "/v1/ucxl/{address:path}",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["ucxl"],
    # 404: an address with a line break matches no route ({address:path} stops there)
    responses=problem_responses(400, 404, 413, 422, 503),
)
async def put_value(
    request: Request,
    body: PutValue,
    values: Values,
    address: str = Address,
    w: int | None = WriteQuorum,
) -> StoredValue:
    """Store a value sealed on the client on the R closest nodes; acknowledged once
    W of them hold it (503 with ``reached`` and ``needed`` otherwise).

    The node checks the sealed value's shape (v2, alg, roles, sizes) but holds no
    role key, so it cannot check that the client bound it to this address: a
    mis-bound value is stored and fails to open for every reader. A plaintext
    ``value`` is still taken (deprecated, warned about once), sealed here.
    """
    parsed = values.parse(address)
    if body.sealed is None:
        _warn_plaintext("PUT /v1/ucxl")
    async with values.audited("store", _who(request), str(parsed)):
        stored = await values.put(
            parsed, body.value, body.roles, body.ttl_seconds, w, sealed=body.sealed
        )
    return StoredValue.of(stored)


@router.get(
    "/v1/ucxl/{address:path}",
    tags=["ucxl"],
    responses=problem_responses(400, 403, 404, 503),
)
async def get_value(
    request: Request,
    values: Values,
    address: str = Address,
    x_chorus_role_key: str | None = Header(
        default=None,
        deprecated=True,
        description="refused: role keys never leave their holder (open values client-side)",
    ),
) -> SealedRecord:
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
    record = await values.get(address, _who(request))
    return SealedRecord(
        address=record["address"],
        version=record["version"],
        roles=sorted(record["sealed"]["wrapped"]),
        stored_at=record["stored_at"],
        expires_at=record.get("expires_at"),
        sealed=record["sealed"],
    )


@router.delete(
    "/v1/ucxl/{address:path}",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["ucxl"],
    responses=problem_responses(400, 404, 422, 503),
)
async def delete_value(
    request: Request, values: Values, address: str = Address, w: int | None = WriteQuorum
) -> Deleted:
    """Store a tombstone at the address, acknowledged like a write (W copies)."""
    stored = await values.delete(address, _who(request), w)
    return Deleted(deleted=stored.address, replicas=stored.replicas)


@router.get("/v1/ucxl", tags=["ucxl"], responses=problem_responses(422, 503))
async def list_values(
    request: Request,
    values: Values,
    prefix: str = Query("ucxl://", description="address prefix"),
) -> Listing:
    found = await values.list(prefix, _who(request))
    items = [
        ListingItem(
            address=r["address"],
            version=r["version"],
            roles=sorted((r.get("sealed") or {}).get("wrapped") or {}),
        )
        for r in found
    ]
    return Listing(prefix=prefix, items=items)


@router.get("/v1/nodes", tags=["dht"])
async def nodes(node: Node) -> Nodes:
    return Nodes(
        self=NodeInfo(
            name=node.name, id=f"{node.node_id:064x}", server=node.server, mode=node.mode
        ),
        peers=[
            PeerInfo(name=p.name, id=f"{p.node_id:064x}", server=p.server)
            for p in node.peers.values()
        ],
    )


@router.get("/v1/routing", tags=["dht"])
async def routing(node: Node) -> Routing:
    return Routing(
        k=node.k,
        size=len(node.table),
        buckets={str(i): list(b.values()) for i, b in sorted(node.table.buckets.items()) if b},
    )


@router.get("/v1/local", tags=["dht"])
async def local(node: Node) -> LocalRecords:
    """What this node itself stores (for operators counting replicas), and the rows
    it put aside as damaged (``restored``: it holds a good copy again)."""
    storage = node.storage
    records = await storage.all() if storage is not None else []
    quarantined = await storage.quarantined() if storage is not None else []
    return LocalRecords(
        records=[
            LocalRecord(
                key=r["key"],
                address=r["address"],
                deleted=r.get("deleted", False),
                intact=intact(r),
            )
            for r in records
        ],
        quarantined=[QuarantineEntry(**q) for q in quarantined],
    )


@router.get(
    "/v1/audit",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["dht"],
    responses=problem_responses(422),
)
async def audit(
    node: Node,
    log: Audit,
    address: str | None = Query(None, description="only events on this UCXL address"),
    limit: int = Query(100, ge=1, le=1000),
) -> AuditPage:
    """The newest stores, reads, deletes and listings this node served: who, what,
    when and with what result (a bounded ring; every event is also logged)."""
    if address is not None:
        node.check_address(address)
    events = log.query(address, limit)
    return AuditPage(address=address, events=[AuditEntry(**e.as_dict()) for e in events])


@router.get(
    "/v1/roles/{role}/keys",
    tags=["roles"],
    responses=problem_responses(404, 503),
)
async def role_key(roles: Roles, role: str = Role) -> RolePublicKey:
    """The X25519 public key registered for ``role`` (read scope): writers seal
    values to it on their side, so no node sees what they write."""
    return RolePublicKey(role=role, public_key=await roles.public_key(role))


@router.post(
    "/v1/roles/{role}/keys",
    dependencies=[Requires(Scope.ADMIN)],
    status_code=201,
    tags=["roles"],
    responses=problem_responses(503),
)
async def register_role(body: RoleKey, roles: Roles, role: str = Role) -> RolePublicKey:
    """Register the X25519 public key values for ``role`` are sealed to."""
    await roles.register(role, body.public_key)
    return RolePublicKey(role=role, public_key=body.public_key)


@router.post(
    "/v1/decisions",
    dependencies=[Requires(Scope.ADMIN)],
    status_code=201,
    tags=["decisions"],
    responses=problem_responses(400, 413, 422, 503),
)
async def publish_decision(
    request: Request, body: DecisionRecord, values: Values, w: int | None = WriteQuorum
) -> StoredValue:
    """DecisionPublisher: store a decision record at its UCXL address, acknowledged
    once W replicas hold it.

    A caller seals the record itself (``UcxlClient.publish_decision``) for the
    address ``decision_id`` and the address fields name; a plaintext
    ``decision`` is still taken (deprecated, warned about once), sealed here.
    """
    decision_id = body.decision_id or secrets.token_hex(6)
    address = values.parse(
        decision_address(body.author, body.role, body.project, body.task, decision_id)
    )
    who = _who(request)
    if body.sealed is not None:
        async with values.audited("store", who, str(address)):
            stored = await values.put(address, None, body.roles, None, w, sealed=body.sealed)
        return StoredValue.of(stored)
    _warn_plaintext("POST /v1/decisions")
    record = body.model_dump(exclude={"roles", "sealed", "decision_id"}) | {
        "decision_id": decision_id,
        "at": time.time(),
    }
    async with values.audited("store", who, str(address)):
        stored = await values.put(address, record, body.roles, None, w)
    return StoredValue.of(stored)
