"""Online validation: the KACHING-compatible upstream client and the grace-period arithmetic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from chorus_licensing.breaker import CircuitBreaker

__all__ = ["OnlineStatus", "Result", "Unreachable", "UpstreamClient"]

Result = Literal["disabled", "pending", "valid", "invalid", "unreachable"]


class Unreachable(Exception):
    """The upstream did not answer (network, 5xx, or the breaker is open)."""


@dataclass
class OnlineStatus:
    """What online validation says, and for how long a good answer carries an outage."""

    grace_seconds: float
    result: Result = "disabled"
    reason: str | None = None
    last_good: float | None = None  # wall time of the last valid answer

    def record(self, result: Result, reason: str | None, now: float) -> None:
        self.result, self.reason = result, reason
        if result == "valid":
            self.last_good = now

    def grace_remaining(self, now: float) -> float | None:
        if self.result != "unreachable" or self.last_good is None:
            return None
        return max(0.0, self.grace_seconds - (now - self.last_good))

    def usable(self, now: float) -> tuple[bool, str | None]:
        if self.result in ("disabled", "valid", "pending"):
            return True, None
        if self.result == "invalid":
            return False, f"the license upstream refused the license: {self.reason}"
        remaining = self.grace_remaining(now)
        if remaining:
            return True, None
        return False, "the license upstream has been unreachable past the grace period"


class UpstreamClient:
    """activate / validate / heartbeat against a KACHING-compatible service, retried and breaker-guarded."""

    def __init__(
        self, base_url: str, breaker: CircuitBreaker, timeout: float = 3.0, attempts: int = 3
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.breaker = breaker
        self.attempts = attempts
        self.client = httpx.AsyncClient(timeout=timeout)

    async def call(
        self, verb: Literal["activate", "validate", "heartbeat"], body: dict[str, Any]
    ) -> dict[str, Any]:
        if not self.breaker.allow(time.monotonic()):
            raise Unreachable(f"circuit breaker {self.breaker.state.value}")
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                retry=retry_if_exception_type((httpx.TransportError, Unreachable)),
                reraise=True,
            ):
                with attempt:
                    resp = await self.client.post(
                        f"{self.base_url}/api/v1/licenses/{verb}", json=body
                    )
                    if resp.status_code >= 500:
                        raise Unreachable(f"upstream answered {resp.status_code}")
                    doc: dict[str, Any] = resp.json()
        except (httpx.TransportError, Unreachable) as exc:
            self.breaker.failure(time.monotonic())
            raise Unreachable(str(exc) or type(exc).__name__) from None
        self.breaker.success()
        return doc

    async def close(self) -> None:
        await self.client.aclose()
