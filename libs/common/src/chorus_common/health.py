"""Health checks: a registry of critical and non-critical checks run on an interval.

A failed critical check makes the service not ready (``/health/ready`` → 503);
a failed non-critical one marks it degraded but keeps it in service. With
``CHORUS_HEALTH_SHUTDOWN_ON_CRITICAL=true`` a critical failure instead starts a
graceful shutdown, as the original CHORUS did.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from chorus_common.aio import cancel_and_wait
from chorus_common.metrics import HealthMetrics

__all__ = ["Check", "CheckFn", "HealthRegistry", "Status"]

CheckFn = Callable[[], Awaitable[str | None]]
Status = Literal["pending", "pass", "fail"]


@dataclass
class Check:
    """One named probe; ``fn`` raises (or times out) to fail and may return a detail string."""

    name: str
    fn: CheckFn
    critical: bool = True
    timeout: float = 10.0
    status: Status = "pending"
    detail: str | None = None
    latency_seconds: float | None = None
    last_run: datetime | None = None
    consecutive_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "critical": self.critical,
            "status": self.status,
            "detail": self.detail,
            "latency_ms": None
            if self.latency_seconds is None
            else round(self.latency_seconds * 1000, 3),
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "consecutive_failures": self.consecutive_failures,
        }


@dataclass
class HealthRegistry:
    interval: float = 30.0
    metrics: HealthMetrics | None = None
    on_critical_failure: Callable[[Check], None] | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    started: bool = False
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, name: str, fn: CheckFn, *, critical: bool = True, timeout: float = 10.0) -> Check:
        check = Check(name=name, fn=fn, critical=critical, timeout=timeout)
        self.checks[name] = check
        self._wake.set()
        return check

    async def run_check(self, check: Check) -> Check:
        started = time.perf_counter()
        try:
            detail = await asyncio.wait_for(check.fn(), timeout=check.timeout)
        except TimeoutError:
            check.status, check.detail = "fail", f"timed out after {check.timeout:.1f}s"
        except Exception as exc:
            check.status, check.detail = "fail", str(exc) or type(exc).__name__
        else:
            check.status, check.detail = "pass", detail
        check.latency_seconds = time.perf_counter() - started
        check.last_run = datetime.now(UTC)
        check.consecutive_failures = check.consecutive_failures + 1 if check.status == "fail" else 0
        if self.metrics:
            self.metrics.check_up.labels(check.name, str(check.critical).lower()).set(
                1 if check.status == "pass" else 0
            )
            self.metrics.check_duration.labels(check.name).observe(check.latency_seconds)
            if check.status == "fail":
                self.metrics.check_failures.labels(check.name).inc()
        return check

    async def run_all(self) -> None:
        await asyncio.gather(*(self.run_check(c) for c in list(self.checks.values())))
        if self.metrics:
            self.metrics.ready.set(1 if self.ready else 0)
            self.metrics.degraded.set(1 if self.degraded else 0)
        if self.on_critical_failure:
            for check in self.checks.values():
                if check.critical and check.status == "fail":
                    self.on_critical_failure(check)
                    break

    def start(self) -> None:
        self.started = True
        self._task = asyncio.create_task(self._loop(), name="health-checks")

    async def stop(self) -> None:
        self.started = False
        await cancel_and_wait(self._task)

    def poke(self) -> None:
        """Run the checks now rather than at the next interval (state just changed)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            await self.run_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)

    @property
    def ready(self) -> bool:
        return self.started and all(c.status == "pass" for c in self.checks.values() if c.critical)

    @property
    def degraded(self) -> bool:
        return any(c.status == "fail" for c in self.checks.values() if not c.critical)

    def summary(self) -> str:
        if not self.ready:
            return "unhealthy" if self.started else "starting"
        return "degraded" if self.degraded else "ok"
