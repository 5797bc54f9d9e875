"""The DHT's metric families: category ``dht``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from chorus_common.metrics import MetricSet, counter, gauge, histogram, product
from chorus_dht.node import REPAIR_STAGES, DhtNode

__all__ = ["OPERATIONS", "RPC_KINDS", "RPC_RESULTS", "DhtMetrics", "storage_check"]

#: the RPCs a node sends its peers (DhtNode.rpc counts each, unless it is to itself)
RPC_KINDS = ("FIND_NODE", "FIND_VALUE", "STORE", "HAS", "HAS_MANY", "LIST")
RPC_RESULTS = ("ok", "error")
#: the operations whose latency is timed
OPERATIONS = ("put", "get")


class DhtMetrics(MetricSet):
    rpcs = counter(
        "chorus_dht_rpcs_total",
        "Node RPCs sent, by kind and result",
        ["kind", "result"],
        known=product(RPC_KINDS, RPC_RESULTS),
    )
    hops = histogram(
        "chorus_dht_lookup_hops",
        "Rounds of an iterative lookup",
        buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15),
    )
    latency = histogram(
        "chorus_dht_operation_duration_seconds",
        "put/get/delete/list latency",
        ["operation"],
        known=[(operation,) for operation in OPERATIONS],
    )
    stored_records = gauge("chorus_dht_stored_records", "Records held by this node")
    stored_bytes = gauge("chorus_dht_stored_bytes", "Bytes of records held by this node")
    repairs = counter("chorus_dht_replication_repairs_total", "Copies re-sent to restore R")
    corrupt = counter(
        "chorus_dht_corrupt_replicas_total",
        "Local replicas whose digest no longer matched, dropped or replaced by a good copy",
    )
    routing = gauge("chorus_dht_routing_table_size", "Nodes in the routing table")
    under_replicated = gauge(
        "chorus_dht_under_replicated_records",
        "Local records left with fewer than R live copies by the last complete repair pass",
    )
    quarantined = counter(
        "chorus_dht_quarantined_records_total",
        "Local rows put aside because they could not be read or their digest did not match",
    )
    quarantine_pending = gauge(
        "chorus_dht_quarantine_pending_records",
        "Quarantined keys this node holds no good copy of yet (repair fetches one)",
    )
    repair_errors = counter(
        "chorus_dht_repair_errors_total",
        "Repair failures by stage (page, record, peer, restore); each is also logged",
        ["stage"],
        known=[(stage,) for stage in REPAIR_STAGES],
    )
    quorum_failures = counter(
        "chorus_dht_quorum_failures_total",
        "Writes and reads answered 503 because too few replicas stored or answered",
        ["operation"],
        known=[("write",), ("read",)],
    )
    cache_hits = counter("chorus_dht_cache_hits_total", "Storage lookups answered by the TTL cache")
    cache_misses = counter(
        "chorus_dht_cache_misses_total",
        "Storage lookups the TTL cache did not hold (read from storage)",
    )


def storage_check(node: DhtNode, metrics: DhtMetrics) -> Callable[[], Awaitable[str]]:
    """The node's critical health check, run every health interval: its storage answers,
    and the gauges of what it holds (records, bytes, quarantine, routing) follow it."""

    async def check() -> str:
        if node.storage is None:
            return "client mode: no storage"
        count, size = await node.storage.stats()
        metrics.stored_records.set(count)
        metrics.stored_bytes.set(size)
        metrics.quarantine_pending.set(len(await node.storage.quarantine_pending()))
        metrics.routing.set(len(node.table))
        return f"{count} records, {len(node.table)} peers"

    return check
