"""Per-sender token buckets: in Redis (shared by gateway replicas) or in process.

The refill arithmetic lives in :func:`take` (pure, ``now`` passed in); the Redis
limiter runs the same arithmetic atomically in a Lua script so replicas share
one bucket per sender.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until ``cost`` tokens are available (0 when allowed)
    remaining: float


def take(
    tokens: float, updated: float, now: float, rate: float, burst: float, cost: float
) -> tuple[Decision, float]:
    """Refill since ``updated``, then take ``cost`` if there is enough; returns the new level."""
    level = min(burst, tokens + max(0.0, now - updated) * rate)
    if cost > burst:  # can never fit: the caller must send smaller batches
        return Decision(False, cost / rate, level), level
    if level >= cost:
        return Decision(True, 0.0, level - cost), level - cost
    return Decision(False, (cost - level) / rate, level), level


class RateLimiter(Protocol):
    backend: str

    async def acquire(self, sender: str, cost: int) -> Decision: ...


class MemoryRateLimiter:
    backend = "memory"

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    async def acquire(self, sender: str, cost: int) -> Decision:
        now = time.monotonic()
        tokens, updated = self._buckets.get(sender, (self.burst, now))
        decision, level = take(tokens, updated, now, self.rate, self.burst, cost)
        self._buckets[sender] = (level, now)
        return decision


_LUA = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
local level = math.min(burst, tokens + math.max(0, now - updated) * rate)
local allowed = 0
local retry = 0
if cost <= level then
  level = level - cost
  allowed = 1
else
  retry = (cost - level) / rate
end
redis.call('HSET', key, 'tokens', level, 'updated', now)
redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
return {allowed, tostring(retry), tostring(level)}
"""


class RedisRateLimiter:
    """Atomic token bucket in Redis, keyed ``chorus:ratelimit:<sender>``; Redis's clock decides."""

    backend = "redis"

    def __init__(self, client: redis.Redis, rate: float, burst: int) -> None:
        self.client, self.rate, self.burst = client, rate, burst
        self._script = client.register_script(_LUA)

    async def acquire(self, sender: str, cost: int) -> Decision:
        if cost > self.burst:
            return Decision(False, cost / self.rate, 0.0)
        allowed, retry, level = await self._script(
            keys=[f"chorus:ratelimit:{sender}"], args=[self.rate, self.burst, cost]
        )
        return Decision(bool(int(allowed)), float(retry), float(level))
