"""Where a node keeps its records: one interface, a SQLite file (embedded default) or Redis.

A row that does not decode to a record (damaged bytes, a partial restore, a foreign
writer) is never handed out: every read path moves it aside into the engine's
quarantine with its raw bytes and a reason, and goes on with the others. One such row
used to raise in every repair round and every listing, for ever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiosqlite

from chorus_dht.records import decode

if TYPE_CHECKING:
    import redis.asyncio as redis

__all__ = ["QUARANTINE_KEEP", "RedisStorage", "SqliteStorage", "Storage"]

#: quarantined rows an engine keeps (the oldest go first): enough for an operator to
#: look at what happened, bounded whatever a damaged disk produces
QUARANTINE_KEEP = 1000
#: told (key, reason) for each row moved into quarantine
OnQuarantine = Callable[[str, str], None]


class Storage(Protocol):
    engine: str
    on_quarantine: OnQuarantine

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
    async def quarantine(self, key: str, reason: str) -> bool:
        """Move the row under ``key`` aside (a digest mismatch found by repair); False
        when there was none."""
        ...

    async def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest quarantine entries: key, reason, at, size, and whether the key is
        held again (``restored``)."""
        ...

    async def quarantine_pending(self) -> list[str]:
        """Keys quarantined and not held again: what repair still has to fetch."""
        ...


def _noop(key: str, reason: str) -> None:
    pass


def _live(record: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    if record is None or (record.get("expires_at") and record["expires_at"] < now):
        return None
    return record


class SqliteStorage:
    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: aiosqlite.Connection | None = None
        self.on_quarantine: OnQuarantine = _noop

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = await aiosqlite.connect(self.path)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, body TEXT NOT NULL, expires_at REAL)"
        )
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "key TEXT NOT NULL, raw BLOB, reason TEXT NOT NULL, at REAL NOT NULL)"
        )
        await self.db.commit()

    async def _decoded(self, rows: Iterable[Any], now: float) -> dict[str, dict[str, Any]]:
        """The live records among ``rows`` (key, raw body), by key; the rest quarantined.

        Bodies are read as BLOBs (``CAST(body AS BLOB)``): a TEXT column holding bytes
        that are not UTF-8 makes sqlite3 raise for the whole query otherwise.
        """
        out: dict[str, dict[str, Any]] = {}
        bad: list[tuple[str, bytes, str]] = []
        for key, raw in rows:
            record, reason = decode(key, raw)
            if record is None:
                bad.append((key, raw, reason or "unreadable"))
                continue
            live = _live(record, now)
            if live is not None:
                out[key] = live
        for key, raw, reason in bad:
            await self._move_aside(key, reason, raw)
        return out

    async def _move_aside(self, key: str, reason: str, expected: bytes | None) -> bool:
        """Copy the row to ``quarantine`` and delete it, if it still holds ``expected``
        (a STORE that replaced it meanwhile wins); keep the newest QUARANTINE_KEEP."""
        assert self.db is not None
        match = "key = ?" + ("" if expected is None else " AND CAST(body AS BLOB) = ?")
        args: tuple[Any, ...] = (key,) if expected is None else (key, expected)
        cur = await self.db.execute(
            f"INSERT INTO quarantine(key, raw, reason, at) "
            f"SELECT key, CAST(body AS BLOB), ?, ? FROM records WHERE {match}",
            (reason, time.time(), *args),
        )
        moved = cur.rowcount > 0
        if moved:
            await self.db.execute(f"DELETE FROM records WHERE {match}", args)
            await self.db.execute(
                "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                (QUARANTINE_KEEP,),
            )
        await self.db.commit()
        if moved:
            self.on_quarantine(key, reason)
        return moved

    async def quarantine(self, key: str, reason: str) -> bool:
        return await self._move_aside(key, reason, None)

    async def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        assert self.db is not None
        rows = await self.db.execute_fetchall(
            "SELECT q.key, q.reason, q.at, LENGTH(q.raw), r.key IS NOT NULL FROM quarantine q "
            "LEFT JOIN records r ON r.key = q.key ORDER BY q.id DESC LIMIT ?",
            (limit,),
        )
        return [
            {"key": k, "reason": why, "at": at, "size": size or 0, "restored": bool(held)}
            for k, why, at, size, held in rows
        ]

    async def quarantine_pending(self) -> list[str]:
        assert self.db is not None
        rows = await self.db.execute_fetchall(
            "SELECT DISTINCT key FROM quarantine WHERE key NOT IN (SELECT key FROM records)"
        )
        return [row[0] for row in rows]

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
        rows = await self.db.execute_fetchall(
            "SELECT key, CAST(body AS BLOB) FROM records WHERE key = ?", (key,)
        )
        return (await self._decoded(rows, time.time())).get(key)

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        assert self.db is not None
        # the keys go in as one JSON parameter, so this is one statement whatever their
        # number: an `IN (?, ?, …)` per batch size filled sqlite3's statement cache with
        # large compiled statements (+16 MB over 250 sizes; +7 MB per node in the soak)
        rows = await self.db.execute_fetchall(
            "SELECT key, CAST(body AS BLOB) FROM records "
            "WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
        return await self._decoded(rows, time.time())

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
        rows = await self.db.execute_fetchall("SELECT key, CAST(body AS BLOB) FROM records")
        return list((await self._decoded(rows, now)).values())

    async def page(self, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str]:
        assert self.db is not None
        now = time.time()
        if not cursor:  # a new pass: drop what expired since the last one
            await self.db.execute(
                "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
            )
            await self.db.commit()
        rows = list(
            await self.db.execute_fetchall(
                "SELECT key, CAST(body AS BLOB) FROM records WHERE key > ? ORDER BY key LIMIT ?",
                (cursor, limit),
            )
        )
        records = list((await self._decoded(rows, now)).values())
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


#: move a hash field into the quarantine if it still holds ARGV[2] (or any value, when
#: ARGV[4] is "any"), keeping the newest ARGV[5] entries; 1 when it moved. The raw bytes
#: go to one list and a small index entry (key, reason, time, size) to another, pushed
#: and trimmed together, so listing the quarantine never moves the damaged values
_MOVE_ASIDE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or (ARGV[4] ~= 'any' and v ~= ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], v)
redis.call('LPUSH', KEYS[3], cjson.encode({key=ARGV[1], reason=ARGV[3], at=ARGV[6], size=#v}))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
return 1
"""


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the client answers bytes; bytes that are not UTF-8 are
    replaced, which only quarantine entries can hold)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class RedisStorage:
    engine = "redis"

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.hash = url, f"chorus:dht:{namespace}:records"
        self.quarantine_list = f"chorus:dht:{namespace}:quarantine"
        self.quarantine_index = f"chorus:dht:{namespace}:quarantine-index"
        self.client: redis.Redis | None = None
        self.on_quarantine: OnQuarantine = _noop

    async def _decoded(self, items: Iterable[tuple[str, Any]], now: float) -> dict[str, Any]:
        """The live records among ``items`` (key, raw value); damaged ones quarantined,
        expired ones deleted."""
        assert self.client is not None
        out: dict[str, dict[str, Any]] = {}
        for key, raw in items:
            record, reason = decode(key, raw)
            if record is None:
                await self._move_aside(key, reason or "unreadable", raw)
                continue
            if _live(record, now) is None:
                await self.client.hdel(self.hash, key)
            else:
                out[key] = record
        return out

    async def _move_aside(self, key: str, reason: str, expected: bytes | None) -> bool:
        assert self.client is not None
        moved = await self.client.eval(
            _MOVE_ASIDE,
            3,
            self.hash,
            self.quarantine_list,
            self.quarantine_index,
            key,
            expected or b"",
            reason,
            "any" if expected is None else "match",
            QUARANTINE_KEEP,
            repr(time.time()),
        )
        if moved:
            self.on_quarantine(key, reason)
        return bool(moved)

    async def quarantine(self, key: str, reason: str) -> bool:
        return await self._move_aside(key, reason, None)

    async def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        assert self.client is not None
        entries = []
        for item in await self.client.lrange(self.quarantine_index, 0, limit - 1):
            entries.append(json.loads(_text(item)))
        held = await self._held([e["key"] for e in entries])
        return [
            {
                "key": e["key"],
                "reason": e["reason"],
                "at": float(e["at"]),
                "size": int(e["size"]),
                "restored": e["key"] in held,
            }
            for e in entries
        ]

    async def _held(self, keys: list[str]) -> set[str]:
        assert self.client is not None
        if not keys:
            return set()
        values = await self.client.hmget(self.hash, keys)
        return {k for k, v in zip(keys, values, strict=True) if v is not None}

    async def quarantine_pending(self) -> list[str]:
        keys = sorted({e["key"] for e in await self.quarantined(QUARANTINE_KEEP)})
        held = await self._held(keys)
        return [k for k in keys if k not in held]

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
        return (await self._decoded([(key, body)], time.time())).get(key) if body else None

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        assert self.client is not None
        if not keys:
            return {}
        bodies = await self.client.hmget(self.hash, keys)
        held = [(k, b) for k, b in zip(keys, bodies, strict=True) if b]
        return await self._decoded(held, time.time())

    async def delete(self, key: str) -> None:
        assert self.client is not None
        await self.client.hdel(self.hash, key)

    async def all(self) -> list[dict[str, Any]]:
        assert self.client is not None
        items = [(_text(k), v) for k, v in (await self.client.hgetall(self.hash)).items()]
        return list((await self._decoded(items, time.time())).values())

    async def page(self, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str]:
        assert self.client is not None
        next_cursor, items = await self.client.hscan(self.hash, int(cursor or 0), count=limit)
        assert isinstance(items, dict)  # HSCAN answers field → value
        found = [(_text(k), v) for k, v in items.items()]
        out = list((await self._decoded(found, time.time())).values())
        return out, (str(next_cursor) if int(next_cursor) else "")

    async def stats(self) -> tuple[int, int]:
        assert self.client is not None
        count = await self.client.hlen(self.hash)
        size = await self.client.eval(_HASH_BYTES, 1, self.hash)
        return int(count), int(size)

    async def raw_dump(self) -> bytes:
        assert self.client is not None
        values = (await self.client.hgetall(self.hash)).values()
        return b"".join(v if isinstance(v, bytes) else v.encode() for v in values)
