"""Where a node keeps its records: one interface, a SQLite file (embedded default) or Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiosqlite

if TYPE_CHECKING:
    import redis.asyncio as redis


class Storage(Protocol):
    engine: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def put(self, key: str, record: dict[str, Any]) -> None: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The live records among ``keys``, by key, in one round trip (repair asks in bulk)."""
        ...

    async def delete(self, key: str) -> None: ...
    async def all(self) -> list[dict[str, Any]]: ...
    async def page(self, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str]:
        """About ``limit`` live records from ``cursor`` ("" = the start) and the next cursor
        ("" once the pass is complete): periodic work walks the store in bounded steps."""
        ...

    async def stats(self) -> tuple[int, int]:
        """(records, bytes) without loading the records."""
        ...

    async def raw_dump(self) -> bytes: ...


def _live(record: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    if record is None or (record.get("expires_at") and record["expires_at"] < now):
        return None
    return record


class SqliteStorage:
    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = await aiosqlite.connect(self.path)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at REAL)"
        )
        await self.db.commit()

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()

    async def put(self, key: str, record: dict[str, Any]) -> None:
        assert self.db is not None
        await self.db.execute(
            "INSERT INTO records(key, body, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET body=excluded.body, expires_at=excluded.expires_at",
            (key, json.dumps(record), record.get("expires_at")),
        )
        await self.db.commit()

    async def get(self, key: str) -> dict[str, Any] | None:
        assert self.db is not None
        # one hop to aiosqlite's thread, not three (execute, fetch, close): a get is on the
        # path of every DHT read, on up to 2R nodes at once
        rows = list(
            await self.db.execute_fetchall("SELECT body FROM records WHERE key = ?", (key,))
        )
        return _live(json.loads(rows[0][0]) if rows else None, time.time())

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        assert self.db is not None
        # the keys go in as one JSON parameter, so this is one statement whatever their
        # number: an `IN (?, ?, …)` per batch size filled sqlite3's statement cache with
        # large compiled statements (+16 MB over 250 sizes; +7 MB per node in the soak)
        rows = await self.db.execute_fetchall(
            "SELECT key, body FROM records WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
        out: dict[str, dict[str, Any]] = {}
        now = time.time()
        for key, body in rows:
            record = _live(json.loads(body), now)
            if record is not None:
                out[key] = record
        return out

    async def delete(self, key: str) -> None:
        assert self.db is not None
        await self.db.execute("DELETE FROM records WHERE key = ?", (key,))
        await self.db.commit()

    async def all(self) -> list[dict[str, Any]]:
        assert self.db is not None
        now = time.time()
        await self.db.execute(
            "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
        )
        await self.db.commit()
        async with self.db.execute("SELECT body FROM records") as cur:
            return [json.loads(row[0]) for row in await cur.fetchall()]

    async def page(self, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str]:
        assert self.db is not None
        now = time.time()
        if not cursor:  # a new pass: drop what expired since the last one
            await self.db.execute(
                "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
            )
            await self.db.commit()
        async with self.db.execute(
            "SELECT key, body FROM records WHERE key > ? ORDER BY key LIMIT ?", (cursor, limit)
        ) as cur:
            rows = list(await cur.fetchall())
        records = [r for r in (_live(json.loads(row[1]), now) for row in rows) if r is not None]
        return records, (rows[-1][0] if len(rows) == limit else "")

    async def stats(self) -> tuple[int, int]:
        assert self.db is not None
        async with self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM records"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async def raw_dump(self) -> bytes:
        return self.path.read_bytes() + b"".join(
            p.read_bytes() for p in self.path.parent.glob(self.path.name + "-*") if p.is_file()
        )


#: the byte size of a hash's values, summed inside Redis so the values never travel
_HASH_BYTES = (
    "local n = 0 for _, v in ipairs(redis.call('HVALS', KEYS[1])) do n = n + #v end return n"
)


class RedisStorage:
    engine = "redis"

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.hash = url, f"chorus:dht:{namespace}:records"
        self.client: redis.Redis | None = None

    async def open(self) -> None:
        # imported here: the redis client costs ~25 MB of RSS that SQLite nodes never use
        import redis.asyncio as redis

        self.client = redis.from_url(self.url)
        await self.client.ping()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def put(self, key: str, record: dict[str, Any]) -> None:
        assert self.client is not None
        await self.client.hset(self.hash, key, json.dumps(record))

    async def get(self, key: str) -> dict[str, Any] | None:
        assert self.client is not None
        body = await self.client.hget(self.hash, key)
        return _live(json.loads(body) if body else None, time.time())

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        assert self.client is not None
        if not keys:
            return {}
        now = time.time()
        bodies = await self.client.hmget(self.hash, keys)
        out: dict[str, dict[str, Any]] = {}
        for key, body in zip(keys, bodies, strict=True):
            record = _live(json.loads(body), now) if body else None
            if record is not None:
                out[key] = record
        return out

    async def delete(self, key: str) -> None:
        assert self.client is not None
        await self.client.hdel(self.hash, key)

    async def all(self) -> list[dict[str, Any]]:
        assert self.client is not None
        now = time.time()
        out = []
        for key, body in (await self.client.hgetall(self.hash)).items():
            record = _live(json.loads(body), now)
            if record is None:
                await self.client.hdel(self.hash, key)
            else:
                out.append(record)
        return out

    async def page(self, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str]:
        assert self.client is not None
        now = time.time()
        next_cursor, items = await self.client.hscan(self.hash, int(cursor or 0), count=limit)
        out = []
        for key, body in items.items():
            record = _live(json.loads(body), now)
            if record is None:
                await self.client.hdel(self.hash, key)
            else:
                out.append(record)
        return out, (str(next_cursor) if int(next_cursor) else "")

    async def stats(self) -> tuple[int, int]:
        assert self.client is not None
        count = await self.client.hlen(self.hash)
        size = await self.client.eval(_HASH_BYTES, 1, self.hash)
        return int(count), int(size)

    async def raw_dump(self) -> bytes:
        assert self.client is not None
        return b"".join(v for v in (await self.client.hgetall(self.hash)).values())
