"""Both storage engines walk their records in bounded pages and count them without loading them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

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


async def test_pages_cover_every_live_record_once_and_stats_match(storage: Storage) -> None:
    live = {f"{i:04x}": {"key": f"{i:04x}", "value": "x" * i} for i in range(25)}
    for key, record in live.items():
        await storage.put(key, record)
    dead = {"key": "dead", "expires_at": 1.0}  # expired in 1970
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
        await storage.put(f"k{i}", {"key": f"k{i}", "version": i})
    await storage.put("dead", {"key": "dead", "expires_at": 1.0})
    asked = [f"k{i}" for i in range(0, 1200, 2)] + ["dead", "missing"]
    held = await storage.get_many(asked)
    assert sorted(held) == sorted(f"k{i}" for i in range(0, 1200, 2))
    assert held["k1198"]["version"] == 1198
    assert await storage.get_many([]) == {}
