"""Faults the other tests do not inject, on three real node processes (R = 3, SQLite):
SIGKILL of two nodes in the middle of writes, and rows damaged on disk under a running
node. What a user must be able to count on: a write acknowledged with 2xx is held by W
nodes and survives the loss of any one of them; damage on one node stops nothing."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from chorus_common.sealed import RoleKeyPair
from chorus_common.testing import metric_value
from chorus_common.ucxl import UcxlAddress

from .conftest import ADMIN, DhtProcesses, wait


class Trio(DhtProcesses):
    """Three DHT node processes on one bus, each with its own SQLite file."""

    def __init__(self, nats_url: str, base: Path, names: tuple[str, str, str]) -> None:
        super().__init__(nats_url, base, names, repair_interval="0.3")
        self.names: tuple[str, str, str] = names
        self.http = httpx.Client(headers=ADMIN, timeout=10)

    def close(self) -> None:
        super().close()
        self.http.close()

    def kill(self, node: str) -> None:
        """SIGKILL: no drain, no last write."""
        self.procs[node].kill()

    def running(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.running]

    def knows(self, node: str, peers: int) -> bool:
        got = self.http.get(f"{self.url(node)}/v1/nodes").json()["peers"]
        return len([p for p in got if p["server"]]) >= peers

    def sees(self, node: str, peer: str) -> bool:
        got = self.http.get(f"{self.url(node)}/v1/nodes").json()["peers"]
        return any(p["name"] == peer and p["server"] for p in got)

    def local(self, node: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.url(node)}/v1/local")
        assert resp.status_code == 200, resp.text
        doc: dict[str, Any] = resp.json()
        return doc

    def held(self, node: str) -> set[str]:
        """Addresses ``node`` holds an intact live copy of: its /v1/local while it runs,
        its SQLite file (read as it is on disk) once it is dead."""
        if self.procs[node].running:
            return {
                r["address"]
                for r in self.local(node)["records"]
                if r["intact"] and not r["deleted"]
            }
        con = sqlite3.connect(self.base / node / "dht.sqlite3")
        try:
            return {json.loads(b)["address"] for (b,) in con.execute("SELECT body FROM records")}
        finally:
            con.close()

    def put(self, node: str, address: str, **params: Any) -> httpx.Response:
        return self.http.put(
            f"{self.url(node)}/v1/ucxl/{quote(address, safe='')}",
            params=params,
            json={"value": {"address": address}, "roles": ["architect"]},
        )

    def get(self, node: str, address: str) -> httpx.Response:
        return self.http.get(f"{self.url(node)}/v1/ucxl/{quote(address, safe='')}")

    def counter(self, node: str, name: str) -> float:
        return metric_value(self.http.get(f"{self.url(node)}/metrics").text, name)


@pytest.fixture
def trio(nats_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Trio]:
    names: tuple[str, str, str] = request.param
    with Trio(nats_url, tmp_path, names) as t:
        t.up(*names)
        wait(lambda: all(t.knows(n, 2) for n in names), 15, "every node knows the two others")
        role = RoleKeyPair.generate()
        resp = t.http.post(
            f"{t.url(names[0])}/v1/roles/architect/keys", json={"public_key": role.public_text}
        )
        assert resp.status_code == 201, resp.text
        yield t


def addr(tag: str, i: int) -> str:
    return f"ucxl://gpt4:architect@chorus:faults/*^/{tag}/r{i}.json"


@pytest.mark.parametrize("trio", [("k1", "k2", "k3")], indirect=True)
def test_two_of_three_killed_during_writes_nothing_acknowledged_short_of_w(trio: Trio) -> None:
    t = trio
    writer, first, second = t.names
    outcomes: list[tuple[str, int, dict[str, Any], frozenset[str]]] = []
    acked = threading.Event()

    def kills() -> None:
        acked.wait(10)
        t.kill(first)  # one down: two copies still reachable, W = 2 met
        deadline = time.monotonic() + 10
        while sum(o[1] == 200 for o in outcomes if first not in o[3]) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t.kill(second)  # two down: only the writer is left, nothing may be acknowledged

    killer = threading.Thread(target=kills)
    killer.start()
    i = 0
    while True:
        alive = frozenset(t.running())
        resp = t.put(writer, addr("quorum", i))
        outcomes.append((addr("quorum", i), resp.status_code, resp.json(), alive))
        if sum(o[1] == 200 for o in outcomes) >= 10:
            acked.set()
        i += 1
        if not killer.is_alive() and sum(o[1] == 503 for o in outcomes) >= 15:
            break
        assert i < 2000, "the writes never met two dead nodes"
    killer.join()

    ok = [o for o in outcomes if o[1] == 200]
    refused = [o for o in outcomes if o[1] == 503]
    assert {o[1] for o in outcomes} <= {200, 503}, [o for o in outcomes if o[1] not in (200, 503)]
    assert ok and refused
    for _, _, body, _ in refused:
        assert body["reached"] < body["needed"] == 2, body
        assert f"reached {body['reached']} of the 2" in body["detail"]
    # with both others dead, every write is refused and says it reached only the writer
    assert refused[-1][2]["reached"] == 1 and refused[-1][2]["replicas"] == [writer]

    # every acknowledged write is held by at least W = 2 nodes (dead ones read from disk)
    held = {n: t.held(n) for n in t.names}
    for address, _, body, _ in ok:
        holders = [n for n in t.names if address in held[n]]
        assert len(body["replicas"]) >= 2 and set(body["replicas"]) <= set(holders), (
            address,
            body,
            holders,
        )

    # ... and survives losing any one node: back come the two, the writer dies at once
    t.up(first, second)
    t.kill(writer)
    wait(lambda: t.sees(first, second), 10, "the two restarted nodes see each other")
    for address, *_ in ok:
        resp = t.get(first, address)
        assert resp.status_code == 200, (address, resp.text)
        assert resp.json()["address"] == address
    # then the writer is back and the second goes: still everything
    t.up(writer)
    wait(lambda: t.sees(writer, first), 10, "the writer sees the first node")
    t.kill(second)
    for address, *_ in ok:
        resp = t.get(writer, address)
        assert resp.status_code == 200, (address, resp.text)


def _row_key(address: str) -> str:
    return UcxlAddress.parse(address).key().hex()


def _damage(db: Path, address: str, how: str) -> None:
    """Write bad bytes into the row of ``address`` in a (running) node's SQLite file."""
    key = _row_key(address)
    con = sqlite3.connect(db, timeout=10)
    try:
        (body,) = con.execute("SELECT body FROM records WHERE key = ?", (key,)).fetchone()
        damaged: Any
        if how == "bytes":  # not UTF-8: sqlite3 cannot even hand the row out as text
            damaged = sqlite3.Binary(b"\xff\xfe\x00" + body.encode()[:40])
        elif how == "truncated":  # a partial restore
            damaged = body[: len(body) // 2]
        elif how == "shape":  # JSON, but no record
            damaged = json.dumps({"key": key, "note": "not a record"})
        else:  # bits flipped inside the ciphertext: the digest no longer matches
            record = json.loads(body)
            text = record["sealed"]["ciphertext"]
            # another first character (an "A" over an "A" would change nothing)
            record["sealed"]["ciphertext"] = ("B" if text[0] == "A" else "A") + text[1:]
            damaged = json.dumps(record)
        con.execute("UPDATE records SET body = ? WHERE key = ?", (damaged, key))
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("trio", [("z1", "z2", "z3")], indirect=True)
def test_damaged_rows_are_quarantined_repaired_and_stop_nothing(trio: Trio) -> None:
    t = trio
    node, a, b = t.names
    db = t.base / node / "dht.sqlite3"
    first = [addr("early", i) for i in range(20)]
    for address in first:
        resp = t.put(node, address)
        assert resp.status_code == 200 and len(resp.json()["replicas"]) == 3, resp.text
    damaged = dict(zip(first[:4], ("bytes", "truncated", "shape", "digest"), strict=True))
    for address, how in damaged.items():
        _damage(db, address, how)

    # each damaged row is put aside and a good copy comes back from a replica; the
    # listings answer meanwhile (they skip what they cannot read, never 500)
    def restored() -> bool:
        local = t.local(node)
        keys = {q["key"] for q in local["quarantined"] if q["restored"]}
        intact = {r["address"] for r in local["records"] if r["intact"]}
        return keys >= {_row_key(x) for x in damaged} and intact >= set(first)

    try:
        wait(restored, 20, "the damaged rows quarantined and restored from a replica")
    except AssertionError as exc:  # what the node held and said, to see why
        raise AssertionError(f"{exc}: {t.local(node)}\n{t.procs[node].log_tail()}") from None
    assert t.counter(node, "chorus_dht_quarantined_records_total") >= len(damaged)
    listing = t.http.get(f"{t.url(node)}/v1/ucxl", params={"prefix": "ucxl://gpt4:architect@"})
    assert listing.status_code == 200 and len(listing.json()["items"]) == len(first)
    for address in damaged:
        resp = t.get(node, address)
        assert resp.status_code == 200 and resp.json()["address"] == address

    # the others die; the node takes writes alone (the client asks for one copy) and more
    # of its rows rot before they come back: its repair must still push every new record
    t.kill(a)
    t.kill(b)
    later = [addr("late", i) for i in range(10)]
    for address in later:
        resp = t.put(node, address, w=1)
        assert resp.status_code == 200 and resp.json()["replicas"] == [node], resp.text
    for address, how in zip(first[4:8], ("bytes", "truncated", "shape", "digest"), strict=True):
        _damage(db, address, how)
        damaged[address] = how
    t.up(a, b)
    wait(
        lambda: all(set(later) <= t.held(n) for n in (a, b)),
        20,
        "the node's repair pass pushes its records past the damaged rows",
    )
    wait(restored, 20, "the rows damaged while alone restored once replicas are back")

    # the damaged node dies: nothing is lost
    t.kill(node)
    wait(lambda: t.sees(a, b), 10, "the two others see each other")
    for address in first + later:
        resp = t.get(a, address)
        assert resp.status_code == 200, (address, resp.text)
        assert resp.json()["address"] == address
