"""Kademlia routing and role sealing without a network."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.errors import ForbiddenError
from chorus_common.sealed import RoleKeyPair, SealedValue, open_sealed, seal
from chorus_dht.routing import Lookup, RoutingTable, bucket_index, distance, node_id_of

ids = st.integers(min_value=1, max_value=2**256 - 1)


@given(ids, ids, ids)
def test_xor_is_a_metric(a: int, b: int, c: int) -> None:
    assert distance(a, a) == 0 and distance(a, b) == distance(b, a)
    assert distance(a, c) <= distance(a, b) + distance(b, c)


@given(st.lists(ids, min_size=1, max_size=200, unique=True), ids)
def test_closest_is_sorted_by_xor_distance(nodes: list[int], target: int) -> None:
    table = RoutingTable(self_id=0, k=20)
    for n in nodes:
        table.add(n, f"n{n}")
    got = [n for n, _ in table.closest(target, 10)]
    assert got == sorted(got, key=lambda n: n ^ target)
    assert all(len(b) <= 20 for b in table.buckets.values())
    for n in table.nodes():
        assert n in table.buckets[bucket_index(0, n)]


def test_lookup_terminates_and_finds_the_closest_in_a_simulated_network() -> None:
    rng = random.Random(7)
    names = [f"n{i}" for i in range(300)]
    tables = {}
    for name in names:
        t = RoutingTable(node_id_of(name), k=20)
        for other in rng.sample(names, 60):
            if other != name:
                t.add(node_id_of(other), other)
        tables[name] = t
    target = node_id_of("some-key")
    search = Lookup(target, k=20, alpha=3)
    search.seed(tables["n0"].closest(target, 20))
    rounds = 0
    while not search.done and rounds < 100:
        for _node, name in search.next_batch():
            search.answer(tables[name].closest(target, 20))
        rounds += 1
    assert search.done and rounds < 100
    truth = sorted((node_id_of(n) for n in names), key=lambda n: n ^ target)[:3]
    assert [n for n, _ in search.closest()[:3]] == truth


def test_sealed_values_open_only_for_their_roles() -> None:
    arch, dev, other = RoleKeyPair.generate(), RoleKeyPair.generate(), RoleKeyPair.generate()
    value = seal(b'{"x": 1}', {"architect": arch.public_text, "dev": dev.public_text}, aad=b"addr")
    assert open_sealed(value, "architect", arch, aad=b"addr") == b'{"x": 1}'
    assert open_sealed(value, "dev", dev, aad=b"addr") == b'{"x": 1}'
    with pytest.raises(ForbiddenError, match="not sealed to role"):
        open_sealed(value, "ops", other, aad=b"addr")
    with pytest.raises(ForbiddenError, match="wrong role key"):
        open_sealed(value, "architect", other, aad=b"addr")
    tampered = SealedValue.model_validate(
        {**value.model_dump(), "ciphertext": value.ciphertext[:-4] + "AAAA"}
    )
    with pytest.raises(ForbiddenError):
        open_sealed(tampered, "architect", arch, aad=b"addr")
    marked = seal(b"PLAINTEXT-MARKER", {"dev": dev.public_text})
    assert "PLAINTEXT-MARKER" not in marked.model_dump_json()  # ciphertext only
