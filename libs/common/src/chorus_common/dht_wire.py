"""The DHT's core NATS subjects, declared once: node RPC and membership announcements.

Node RPC is request/reply on ``chorus.dht.rpc.<node>``: a JSON object whose ``op``
names the operation (:data:`RPC_OPS`) and whose ``from`` names the asking node, and
an answer object per op. Any answer may instead be ``{"error": "…"}`` (a client node
asked for values, a refused STORE, an unknown op, a handler that failed), and a
FIND_VALUE whose local copy is damaged answers ``{"corrupt": true, "nodes": []}``.
Answers carry only the fields the op sets (:func:`encode_answer`), so the JSON is the
one nodes of the previous version send and read: both talk during a rolling upgrade.

Records travel as the JSON objects they are stored as (``dict``), untouched: their
digest covers their fields as written, and a field a newer writer adds must reach
every replica. :mod:`chorus_dht.records` checks their shape where it matters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictStr

from chorus_common.bus import declare_topic

__all__ = [
    "ANNOUNCE",
    "RPC",
    "RPC_OPS",
    "Announcement",
    "FindNode",
    "FindValue",
    "Has",
    "HasMany",
    "ListAnswer",
    "ListRecords",
    "NodesAnswer",
    "Ping",
    "PingAnswer",
    "RpcAnswer",
    "RpcOp",
    "RpcReply",
    "RpcRequest",
    "Store",
    "StoreAnswer",
    "Unrecognised",
    "ValueAnswer",
    "VersionAnswer",
    "VersionsAnswer",
    "encode_answer",
]

#: (hex node id, node name) pairs, closest first: what FIND_NODE and a FIND_VALUE miss answer
Closest = list[tuple[str, str]]
#: a stored record as its JSON object (see chorus_dht.records)
Record = dict[str, Any]


# -- requests --------------------------------------------------------------------------------


class RpcOp(BaseModel):
    """What every request carries: the op, and the node asking (absent from old local calls)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    op: str
    sender: str | None = Field(default=None, alias="from", description="the asking node")


class Ping(RpcOp):
    op: Literal["PING"] = "PING"


class FindNode(RpcOp):
    op: Literal["FIND_NODE"] = "FIND_NODE"
    target: str = Field(description="the 256-bit id looked up, 64 hex digits")


class FindValue(RpcOp):
    op: Literal["FIND_VALUE"] = "FIND_VALUE"
    key: str = Field(description="the record's key, 64 hex digits")


class Store(RpcOp):
    op: Literal["STORE"] = "STORE"
    record: Record = Field(description="the record to hold (kept if newer than the copy held)")


class Has(RpcOp):
    op: Literal["HAS"] = "HAS"
    key: str


class HasMany(RpcOp):
    """Repair's question for a whole batch: one RPC per peer per round."""

    op: Literal["HAS_MANY"] = "HAS_MANY"
    keys: list[str]


class ListRecords(RpcOp):
    op: Literal["LIST"] = "LIST"
    prefix: str = ""


class Unrecognised(RpcOp):
    """A request of an op this node does not know, or of a known op in another shape:
    answered ``{"error": …}`` rather than left to time out."""

    op: Any = None


Known = Annotated[
    Ping | FindNode | FindValue | Store | Has | HasMany | ListRecords,
    Field(discriminator="op"),
]
RPC_OPS = ("PING", "FIND_NODE", "FIND_VALUE", "STORE", "HAS", "HAS_MANY", "LIST")


class RpcRequest(RootModel[Annotated[Known | Unrecognised, Field(union_mode="left_to_right")]]):
    """One node RPC request, by its ``op``."""


# -- answers ---------------------------------------------------------------------------------


class RpcAnswer(BaseModel):
    """Any answer; ``{"error": …}`` alone when the request was refused or failed."""

    error: str | None = None


class PingAnswer(RpcAnswer):
    name: str | None = None
    server: bool = False


class NodesAnswer(RpcAnswer):
    """FIND_NODE: the k closest servers the node knows (absent: the lookup skips it)."""

    nodes: Closest | None = None


class ValueAnswer(RpcAnswer):
    """FIND_VALUE: ``record`` when held intact, ``corrupt`` (and no nodes) when the copy
    held is damaged, otherwise the closest servers known."""

    record: Record | None = None
    corrupt: bool = False
    nodes: Closest | None = None


class StoreAnswer(RpcAnswer):
    stored: bool = False


class VersionAnswer(RpcAnswer):
    """HAS: the version of the intact copy held, null when none."""

    version: int | None = None


class VersionsAnswer(RpcAnswer):
    """HAS_MANY: key → version of the intact copies held (absent: a node from before
    HAS_MANY, to be asked key by key)."""

    versions: dict[str, int] | None = None


class ListAnswer(RpcAnswer):
    records: list[Record] = []


class RpcReply(
    RootModel[
        PingAnswer
        | NodesAnswer
        | ValueAnswer
        | StoreAnswer
        | VersionAnswer
        | VersionsAnswer
        | ListAnswer
        | RpcAnswer
    ]
):
    """Any node RPC answer (for the AsyncAPI document: callers decode the op's own)."""


def encode_answer(answer: RpcAnswer) -> bytes:
    """The answer's JSON with the fields it was given only, as nodes have always sent it
    (``{"stored": true}``, ``{"version": null}``, ``{"error": …}``)."""
    return answer.model_dump_json(exclude_unset=True).encode()


# -- membership --------------------------------------------------------------------------------


class Announcement(BaseModel):
    """A node saying it is up (every announce interval), and whether it stores values."""

    name: StrictStr
    server: StrictBool = False


RPC = declare_topic(
    "chorus.dht.rpc.{node}",
    RpcRequest,
    "a DHT node's RPC: PING, FIND_NODE, FIND_VALUE, STORE, HAS, HAS_MANY, LIST",
    reply=RpcReply,
)
ANNOUNCE = declare_topic(
    "chorus.dht.announce",
    Announcement,
    "DHT membership: each node announces itself every announce interval",
)
