"""Five real DHT node processes on a real bus, SQLite and Redis engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from chorus_common.errors import ForbiddenError
from chorus_common.sealed import RoleKeyPair
from chorus_common.testing import metric_value
from chorus_common.ucxl_client import open_record

from .conftest import ADMIN, DhtProcesses, wait

NODES = [f"d{i}" for i in range(1, 6)]
LIVE = ("d3", "d4", "d5")  # after the test kills d1 and d2


class Cluster(DhtProcesses):
    def __init__(self, nats_url: str, base: Path, engine: str, redis_url: str | None) -> None:
        env = {"CHORUS_DHT_ENGINE": engine}
        if redis_url:
            env["CHORUS_REDIS_URL"] = redis_url
        super().__init__(nats_url, base, tuple(NODES), repair_interval="0.5", env=env)
        self.engine, self.redis_url = engine, redis_url

    def holders(self, address: str) -> list[str]:
        out = []
        for node, proc in self.procs.items():
            if proc.running:
                local = httpx.get(f"{proc.url}/v1/local", timeout=2, headers=ADMIN).json()[
                    "records"
                ]
                if any(r["address"] == address and not r["deleted"] for r in local):
                    out.append(node)
        return out


@pytest.fixture(params=["sqlite", "redis"])
def cluster(request: pytest.FixtureRequest, nats_url: str, tmp_path: Path) -> Iterator[Cluster]:
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    with Cluster(nats_url, tmp_path, request.param, redis_url) as c:
        c.up(*NODES)
        wait(
            lambda: all(
                len(httpx.get(f"{c.url(n)}/v1/nodes", headers=ADMIN).json()["peers"]) == 4
                for n in NODES
            ),
            15,
            "every node knows the four others",
        )
        yield c


def addr(i: int) -> str:
    return f"ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/d{i}.json"


@pytest.mark.slow
def test_put_get_list_delete_replicate_and_repair(cluster: Cluster) -> None:
    c = cluster
    architect = RoleKeyPair.generate()
    client = httpx.Client(headers=ADMIN, timeout=10)
    assert (
        client.post(
            f"{c.url('d1')}/v1/roles/architect/keys", json={"public_key": architect.public_text}
        ).status_code
        == 201
    )
    for i in range(12):
        resp = client.put(
            f"{c.url(NODES[i % 5])}/v1/ucxl/{quote(addr(i), safe='')}",
            json={
                "value": {"decision": f"use plan {i}", "secret": "PLAINTEXT-MARKER"},
                "roles": ["architect"],
            },
        )
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["replicas"]) == 3
    # any node serves the sealed record; it opens here, with the role key, never on a node
    got = client.get(f"{c.url('d3')}/v1/ucxl/{quote(addr(4), safe='')}").json()
    assert "value" not in got and b"PLAINTEXT-MARKER" not in json.dumps(got).encode()
    assert open_record(got, addr(4), "architect", architect) == {
        "decision": "use plan 4",
        "secret": "PLAINTEXT-MARKER",
    }
    with pytest.raises(ForbiddenError, match="wrong role key"):
        open_record(got, addr(4), "architect", RoleKeyPair.generate())
    listing = client.get(
        f"{c.url('d5')}/v1/ucxl", params={"prefix": "ucxl://gpt4:architect@chorus:v2-migration/"}
    )
    assert len(listing.json()["items"]) == 12
    bad = client.get(f"{c.url('d1')}/v1/ucxl/{quote('ucxl://bad address', safe='')}")
    assert bad.status_code == 400 and bad.json()["code"] == "ucxl_address_invalid"
    unknown_role = client.put(
        f"{c.url('d1')}/v1/ucxl/{quote(addr(99), safe='')}", json={"value": 1, "roles": ["nobody"]}
    )
    assert unknown_role.status_code == 422 and "unknown role" in unknown_role.json()["detail"]
    oversize = client.put(
        f"{c.url('d1')}/v1/ucxl/{quote(addr(98), safe='')}",
        json={"value": "x" * 300_000, "roles": ["architect"]},
    )
    assert oversize.status_code == 413 and "limit" in oversize.json()["detail"]

    # no plaintext in any node's storage
    assert all(b"PLAINTEXT-MARKER" not in _raw(c, n) for n in NODES)

    # a corrupted replica is detected, never served, and repaired from a good copy
    if c.engine == "sqlite":
        victim = c.holders(addr(3))[0]
        assert _corrupt_count(c, victim) == 0
        _corrupt(c.base / victim / "dht.sqlite3", addr(3))
        # served from a good copy while the damaged one is still on disk
        good = client.get(f"{c.url(victim)}/v1/ucxl/{quote(addr(3), safe='')}")
        assert good.status_code == 200
        assert open_record(good.json(), addr(3), "architect", architect)["decision"] == "use plan 3"

        # the node notices (its own repair drops the copy, or a peer's replaces it; which one
        # wins is a race of two repair loops, so the counter, not a glimpse of the damaged
        # copy, is the evidence) and holds an intact copy again
        # a copy written over in the instant of the damage (a put's last copy arriving
        # late) was never damaged for anyone to see: damage it again, then it must be seen
        def detected() -> bool:
            held = _local(c, victim, addr(3))  # read before the count: see the note above
            if _corrupt_count(c, victim) >= 1:
                return True
            if (held or {}).get("intact"):  # intact and never counted: written over unseen
                _corrupt(c.base / victim / "dht.sqlite3", addr(3))
            return False

        try:
            wait(detected, 20, f"corruption detected on {victim}")
        except AssertionError as exc:  # what the node held and said, to see why
            held = _local(c, victim, addr(3))
            raise AssertionError(f"{exc}; its copy: {held}\n{c.procs[victim].log_tail()}") from None
        wait(
            lambda: (_local(c, victim, addr(3)) or {}).get("intact"), 20, "corrupt replica repaired"
        )
        # found where it was, nowhere else (that one damage counts once: test_wire.py)
        assert all(_corrupt_count(c, n) == 0 for n in NODES if n != victim)

    # delete
    assert client.delete(f"{c.url('d1')}/v1/ucxl/{quote(addr(11), safe='')}").status_code == 200
    assert client.get(f"{c.url('d4')}/v1/ucxl/{quote(addr(11), safe='')}").status_code == 404

    # kill R-1 = 2 nodes: everything still readable, and repaired back to 3 live copies
    for victim in ("d1", "d2"):
        c.procs[victim].kill()
    for i in range(11):
        resp = client.get(f"{c.url('d3')}/v1/ucxl/{quote(addr(i), safe='')}")
        assert resp.status_code == 200
        assert open_record(resp.json(), addr(i), "architect", architect)["decision"] == (
            f"use plan {i}"
        )
    wait(
        lambda: all(len(c.holders(addr(i))) >= 3 for i in range(11)),
        20,
        "every record back on 3 live nodes",
    )

    # the gauge operators watch: nothing short while 3 servers live ...
    wait(
        lambda: all(_gauge(c, n, "chorus_dht_under_replicated_records") == 0 for n in LIVE),
        20,
        "no record under-replicated",
    )
    # ... and every record short once only 2 remain for R = 3
    c.procs["d5"].kill()
    held = len(_records(c, "d3"))  # tombstones are replicated too
    wait(
        lambda: _gauge(c, "d3", "chorus_dht_under_replicated_records") == held > 0,
        20,
        "every record under-replicated with 2 servers left",
    )

    if c.engine == "sqlite":  # a node restarted from its SQLite file serves its records again
        before = {r["address"] for r in client.get(f"{c.url('d3')}/v1/local").json()["records"]}
        c.procs["d3"].terminate()
        c.start("d3")
        wait(c.procs["d3"].is_ready, 30, "d3 back")
        after = {r["address"] for r in client.get(f"{c.url('d3')}/v1/local").json()["records"]}
        assert before and before <= after


def _raw(c: Cluster, node: str) -> bytes:
    if c.engine == "sqlite":
        folder = c.base / node
        return b"".join(p.read_bytes() for p in folder.glob("dht.sqlite3*"))
    import redis

    r = redis.Redis.from_url(c.redis_url or "")
    return b"".join(r.hgetall(f"chorus:dht:{node}:records").values())


def _corrupt(db: Path, address: str) -> None:
    import json
    import sqlite3

    con = sqlite3.connect(db)
    for key, body in con.execute("SELECT key, body FROM records").fetchall():
        record = json.loads(body)
        if record["address"] == address:
            text = record["sealed"]["ciphertext"]
            # another first character (an "A" over an "A" would change nothing)
            record["sealed"]["ciphertext"] = ("B" if text[0] == "A" else "A") + text[1:]
            con.execute("UPDATE records SET body = ? WHERE key = ?", (json.dumps(record), key))
    con.commit()
    con.close()


def _gauge(c: Cluster, node: str, name: str) -> float:
    return metric_value(httpx.get(f"{c.url(node)}/metrics", timeout=2, headers=ADMIN).text, name)


def _corrupt_count(c: Cluster, node: str) -> float:
    return _gauge(c, node, "chorus_dht_corrupt_replicas_total")


def _records(c: Cluster, node: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = httpx.get(
        f"{c.url(node)}/v1/local", timeout=2, headers=ADMIN
    ).json()["records"]
    return records


def _local(c: Cluster, node: str, address: str) -> dict[str, Any] | None:
    records = httpx.get(f"{c.url(node)}/v1/local", timeout=2, headers=ADMIN).json()["records"]
    return next((r for r in records if r["address"] == address), None)
