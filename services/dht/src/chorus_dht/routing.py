"""Kademlia routing without a network: 256-bit ids, XOR distance, k-buckets, iterative lookups."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["ID_BITS", "Lookup", "RoutingTable", "bucket_index", "distance", "node_id_of"]

ID_BITS = 256


def node_id_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest(), "big")


def distance(a: int, b: int) -> int:
    return a ^ b


def bucket_index(self_id: int, other: int) -> int:
    """Bucket i holds nodes whose distance has its highest set bit at i."""
    d = distance(self_id, other)
    return d.bit_length() - 1 if d else -1


@dataclass
class RoutingTable:
    self_id: int
    k: int = 20
    buckets: dict[int, OrderedDict[int, str]] = field(default_factory=dict)  # id -> name, LRU order

    def add(self, node: int, name: str) -> bool:
        """Insert or refresh; a full bucket keeps its oldest entries (Kademlia's preference)."""
        index = bucket_index(self.self_id, node)
        if index < 0:
            return False
        bucket = self.buckets.setdefault(index, OrderedDict())
        if node in bucket:
            bucket.move_to_end(node)
            return True
        if len(bucket) >= self.k:
            return False
        bucket[node] = name
        return True

    def remove(self, node: int) -> None:
        index = bucket_index(self.self_id, node)
        self.buckets.get(index, OrderedDict()).pop(node, None)

    def nodes(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for bucket in self.buckets.values():
            out.update(bucket)
        return out

    def closest(self, target: int, count: int) -> list[tuple[int, str]]:
        return sorted(self.nodes().items(), key=lambda item: distance(item[0], target))[:count]

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets.values())


@dataclass
class Lookup:
    """The iterative lookup: ask the α closest unasked, merge answers, stop when the k closest are asked."""

    target: int
    k: int = 20
    alpha: int = 3
    candidates: dict[int, str] = field(default_factory=dict)
    asked: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    hops: int = 0

    def seed(self, nodes: list[tuple[int, str]]) -> None:
        for node, name in nodes:
            self.candidates.setdefault(node, name)

    def closest(self) -> list[tuple[int, str]]:
        live = [(n, s) for n, s in self.candidates.items() if n not in self.failed]
        return sorted(live, key=lambda item: distance(item[0], self.target))[: self.k]

    def next_batch(self) -> list[tuple[int, str]]:
        batch = [(n, s) for n, s in self.closest() if n not in self.asked][: self.alpha]
        if batch:
            self.hops += 1
        self.asked.update(n for n, _ in batch)
        return batch

    def answer(self, nodes: list[tuple[int, str]]) -> None:
        self.seed(nodes)

    def fail(self, node: int) -> None:
        self.failed.add(node)

    @property
    def done(self) -> bool:
        return all(n in self.asked for n, _ in self.closest())
