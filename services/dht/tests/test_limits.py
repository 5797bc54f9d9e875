"""One real node in process, on a real bus: the write quorum at the REST edge, the
address length limit on every route and RPC, the audit log, the cache in front of storage."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import ValidationError

from chorus_common.bus import Bus
from chorus_common.sealed import RoleKeyPair
from chorus_common.testing import metric_value, serve_in_process
from chorus_dht import DhtService
from chorus_dht.audit import AuditLog
from chorus_dht.cache import TtlCache
from chorus_dht.node import record_digest
from chorus_dht.service import DhtSettings

ADMIN = {"Authorization": "Bearer test-admin-token"}
READER = {"Authorization": "Bearer reader-token"}
ADDRESS = "ucxl://gpt4:architect@chorus:limits/*^/decisions/x.json"
LONG = "ucxl://gpt4:architect@chorus:limits/*^/" + "p" * 2000


def path(address: str) -> str:
    return f"/v1/ucxl/{quote(address, safe='')}"


@pytest.fixture
async def node(make_settings: Any) -> AsyncIterator[tuple[DhtService, httpx.AsyncClient]]:
    """A node alone with R = 2: its default W = 2 can never be met by itself."""
    settings = make_settings(
        DhtSettings,
        dht_replication=2,
        public_read=False,
        read_tokens="reader-token",
    )
    service = DhtService(settings)
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        role = RoleKeyPair.generate()
        resp = await client.post(
            "/v1/roles/architect/keys", json={"public_key": role.public_text}, headers=ADMIN
        )
        assert resp.status_code == 201
        yield service, client


def _put(client: httpx.AsyncClient, address: str, **params: Any) -> Any:
    return client.put(
        path(address),
        params=params,
        json={"value": {"a": 1}, "roles": ["architect"]},
        headers=ADMIN,
    )


async def test_a_write_short_of_w_is_503_naming_reached_and_needed(
    node: tuple[DhtService, httpx.AsyncClient],
) -> None:
    _, client = node
    refused = await _put(client, ADDRESS)
    assert refused.status_code == 503
    body = refused.json()
    assert body["reached"] == 1 and body["needed"] == 2 and body["replicas"] == ["test-node"]
    assert "reached 1 of the 2" in body["detail"]
    decision = await client.post(
        "/v1/decisions",
        json={"decision": "d", "author": "gpt4", "project": "p", "roles": ["architect"]},
        headers=ADMIN,
    )
    assert decision.status_code == 503 and decision.json()["needed"] == 2

    # the client may ask for fewer copies, within 1..R
    assert (await _put(client, ADDRESS, w=1)).status_code == 200
    too_many = await _put(client, ADDRESS, w=3)
    assert too_many.status_code == 422 and "between 1 and R = 2" in too_many.json()["detail"]
    assert (await _put(client, ADDRESS, w=0)).status_code == 422
    # a read needs R - W + 1 = 1 answer: this node's
    got = await client.get(path(ADDRESS), headers=READER)
    assert got.status_code == 200 and got.json()["address"] == ADDRESS
    deleted = await client.delete(path(ADDRESS), headers=ADMIN)
    assert deleted.status_code == 503 and deleted.json()["reached"] == 1
    metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "chorus_dht_quorum_failures_total", operation="write") == 3


def test_the_write_quorum_setting_is_bounded_by_r(make_settings: Any) -> None:
    assert make_settings(DhtSettings, dht_replication=3, dht_write_quorum=3).dht_write_quorum == 3
    with pytest.raises(ValidationError, match="W must be between 1 and R"):
        make_settings(DhtSettings, dht_replication=3, dht_write_quorum=4)
    with pytest.raises(ValidationError):
        make_settings(DhtSettings, dht_write_quorum=0)


async def test_addresses_over_the_limit_are_refused_everywhere(
    node: tuple[DhtService, httpx.AsyncClient], bus_client: Bus
) -> None:
    service, client = node
    answers = [
        await _put(client, LONG, w=1),
        await client.get(path(LONG), headers=READER),
        await client.delete(path(LONG), headers=ADMIN),
        await client.get("/v1/ucxl", params={"prefix": LONG}, headers=READER),
        await client.get("/v1/audit", params={"address": LONG}, headers=ADMIN),
        await client.post(
            "/v1/decisions",
            json={"decision": "d", "author": "a" * 1100, "project": "p", "roles": ["architect"]},
            headers=ADMIN,
        ),
    ]
    for resp in answers:
        assert resp.status_code == 422, resp.text
        body = resp.json()
        assert body["reason"] == "address_too_long" and body["limit"] == 1024
        assert "the limit is 1024" in body["detail"]

    # the node's RPC refuses it too, whoever sends it
    record: dict[str, Any] = {
        "key": "ab" * 32,
        "address": LONG,
        "sealed": {"ciphertext": "x", "wrapped": {}},
        "version": 1,
        "deleted": False,
        "expires_at": None,
    }
    record["digest"] = record_digest(record)
    for req in ({"op": "STORE", "record": record}, {"op": "LIST", "prefix": LONG}):
        msg = await bus_client.client.request(
            "chorus.dht.rpc.test-node", json.dumps(req).encode(), timeout=5
        )
        assert "longer than 1024 bytes" in json.loads(msg.data)["error"]
    assert service.node.storage is not None
    assert await service.node.storage.get(record["key"]) is None


async def test_stores_and_reads_are_audited_by_identity_and_logged(
    node: tuple[DhtService, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = node
    caplog.set_level(logging.INFO, logger="chorus.dht.audit")
    assert (await _put(client, ADDRESS, w=1)).status_code == 200
    assert (await client.get(path(ADDRESS), headers=READER)).status_code == 200
    other = ADDRESS.replace("x.json", "y.json")
    assert (await client.get(path(other), headers=READER)).status_code == 404

    resp = await client.get("/v1/audit", params={"address": ADDRESS}, headers=ADMIN)
    events = resp.json()["events"]
    assert [(e["action"], e["who"], e["result"]) for e in events] == [
        ("read", "operator:reader", "ok"),
        ("store", "operator:admin", "ok"),
    ]
    assert all(e["address"] == ADDRESS and e["at"] > 0 for e in events)
    missed = await client.get("/v1/audit", params={"address": other}, headers=ADMIN)
    assert [e["result"] for e in missed.json()["events"]] == ["not_found"]
    # the audit answers admins only
    assert (await client.get("/v1/audit", headers=READER)).status_code == 403
    logged = [r.getMessage() for r in caplog.records if r.name == "chorus.dht.audit"]
    assert any(ADDRESS in line and "operator:reader" in line for line in logged)


async def test_the_cache_answers_repeat_reads_and_forgets_on_write(
    node: tuple[DhtService, httpx.AsyncClient],
) -> None:
    _, client = node
    assert (await _put(client, ADDRESS, w=1)).status_code == 200

    async def hits() -> float:
        return metric_value((await client.get("/metrics")).text, "chorus_dht_cache_hits_total")

    first = (await client.get(path(ADDRESS), headers=READER)).json()
    before = await hits()
    assert (await client.get(path(ADDRESS), headers=READER)).json() == first
    assert await hits() == before + 1
    # a write on this node drops the entry: the next read sees the new version
    assert (await _put(client, ADDRESS, w=1)).status_code == 200
    again = (await client.get(path(ADDRESS), headers=READER)).json()
    assert again["version"] > first["version"]


def test_ttl_cache_is_bounded_and_entries_lapse() -> None:
    now = [0.0]
    cache = TtlCache(size=2, ttl=5.0, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") == (False, None) and len(cache) == 2
    now[0] = 4.9
    assert cache.get("a") == (True, 1)
    now[0] = 5.0
    assert cache.get("a") == (False, None) and cache.get("c") == (False, None)
    cache.put("d", 4)
    cache.drop("d")
    assert cache.get("d") == (False, None)
    off = TtlCache(size=0, ttl=5.0)
    off.put("a", 1)
    assert off.get("a") == (False, None)


def test_audit_log_is_a_bounded_ring_queried_newest_first() -> None:
    log = AuditLog(size=3, clock=lambda: 1.0)
    for i in range(5):
        log.record("store", "node:x", f"ucxl://a:b@c:d/*^/{i % 2}")
    assert len(log.events) == 3
    assert [e.address for e in log.query()] == [
        "ucxl://a:b@c:d/*^/0",
        "ucxl://a:b@c:d/*^/1",
        "ucxl://a:b@c:d/*^/0",
    ]
    assert len(log.query("ucxl://a:b@c:d/*^/0")) == 2
    assert len(log.query(limit=1)) == 1
