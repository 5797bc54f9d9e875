"""Both storage engines walk their records in bounded pages and count them without loading them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chorus_dht.storage import RedisStorage, SqliteStorage, Storage


@pytest.fixture(params=["sqlite", "redis"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage
    if request.param == "redis":
        store = RedisStorage(request.getfixturevalue("redis_server").url, "t")
    else:
        store = SqliteStorage(tmp_path / "dht.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _record(key: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "address": f"ucxl://a:b@p:t/*^/{key}", "version": 1} | fields


async def test_pages_cover_every_live_record_once_and_stats_match(storage: Storage) -> None:
    live = {f"{i:04x}": _record(f"{i:04x}", value="x" * i) for i in range(25)}
    for key, record in live.items():
        await storage.put(key, record)
    dead = _record("dead", expires_at=1.0)  # expired in 1970
    await storage.put("dead", dead)

    count, size = await storage.stats()
    assert count == 26
    assert size == sum(len(json.dumps(r)) for r in [*live.values(), dead])

    seen: list[str] = []
    cursor, rounds = "", 0
    while True:
        records, cursor = await storage.page(cursor, 10)
        if isinstance(storage, SqliteStorage):  # Redis hands small hashes over in one scan
            assert len(records) <= 10
        seen += [r["key"] for r in records]
        rounds += 1
        if not cursor:
            break
        assert rounds < 50
    assert sorted(seen) == sorted(live)  # the expired record is never handed out
    assert (await storage.stats())[0] == 25  # and a pass removed it


async def test_get_many_answers_the_live_records_among_the_keys(storage: Storage) -> None:
    for i in range(1200):  # more keys than SQLite takes as bound parameters in old builds
        await storage.put(f"k{i}", _record(f"k{i}", version=i))
    await storage.put("dead", _record("dead", expires_at=1.0))
    asked = [f"k{i}" for i in range(0, 1200, 2)] + ["dead", "missing"]
    held = await storage.get_many(asked)
    assert sorted(held) == sorted(f"k{i}" for i in range(0, 1200, 2))
    assert held["k1198"]["version"] == 1198
    assert await storage.get_many([]) == {}


async def _write_raw(storage: Storage, key: str, raw: bytes) -> None:
    """Bytes into the engine behind its back, as a damaged disk or a foreign writer would."""
    if isinstance(storage, RedisStorage):
        assert storage.client is not None
        await storage.client.hset(storage.hash, key, raw)
    else:
        assert isinstance(storage, SqliteStorage) and storage.db is not None
        await storage.db.execute(
            "INSERT OR REPLACE INTO records(key, body) VALUES (?, ?)", (key, raw)
        )
        await storage.db.commit()


async def test_rows_that_do_not_decode_are_quarantined_on_every_read_path(
    storage: Storage,
) -> None:
    moved: list[tuple[str, str]] = []
    storage.on_quarantine = lambda key, reason: moved.append((key, reason))
    for i in range(6):
        await storage.put(f"k{i}", _record(f"k{i}"))
    damage = {
        "k1": b"\xff\xfe not utf-8",
        "k2": b'{"key": "k2", "addr',
        "k3": b"[1, 2, 3]",
        "k4": json.dumps(_record("someone-else")).encode(),  # names another key
    }
    for key, raw in damage.items():
        await _write_raw(storage, key, raw)

    # each read path answers the good rows and never raises
    seen, cursor = [], ""
    while True:
        records, cursor = await storage.page(cursor, 2)
        seen += [r["key"] for r in records]
        if not cursor:
            break
    assert sorted(seen) == ["k0", "k5"]
    assert {k for k, _ in moved} == set(damage)
    assert any("unreadable" in reason for _, reason in moved)
    assert any("malformed" in reason for _, reason in moved)
    assert sorted(r["key"] for r in await storage.all()) == ["k0", "k5"]
    assert await storage.get("k1") is None

    # damage found by a single-key read or a bulk read is moved aside the same way
    await _write_raw(storage, "k0", b"\x00garbage")
    assert await storage.get("k0") is None
    await _write_raw(storage, "k5", b"{")
    assert await storage.get_many(["k5"]) == {}

    # kept aside with a reason, and pending until a good copy is stored again
    entries = await storage.quarantined()
    assert {e["key"] for e in entries} == {"k0", "k1", "k2", "k3", "k4", "k5"}
    assert all(e["size"] > 0 and e["reason"] and not e["restored"] for e in entries)
    assert sorted(await storage.quarantine_pending()) == ["k0", "k1", "k2", "k3", "k4", "k5"]
    await storage.put("k2", _record("k2"))
    assert "k2" not in await storage.quarantine_pending()
    assert next(e for e in await storage.quarantined() if e["key"] == "k2")["restored"]

    # a record repair finds damaged (its digest) is moved aside on request
    assert await storage.quarantine("k2", "digest mismatch")
    assert await storage.get("k2") is None and not await storage.quarantine("k2", "again")
