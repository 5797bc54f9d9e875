"""The license gate every service passes through: hold a seat lease or do no work (fail closed).

With ``CHORUS_LICENSE_REQUIRED=true`` a service asks the licensing service for a
seat over NATS (``chorus.svc.licensing.lease-grant``, the topics
:data:`~chorus_common.topics.LICENSE_GRANT`, ``LICENSE_RENEW`` and ``LICENSE_RELEASE``), renews it at a third of
its TTL, reports ``license`` as a critical health check, and refuses
state-changing requests with 403 while it holds no valid lease. It takes a
seat again by itself when the licensing service grants one.

Why the gate is closed is logged once, as one ERROR line starting with
``license_unavailable:`` (again only when the reason changes), after a start-up
grace in which the licensing service may simply not be up yet; an operator
reading a pod's log sees the cause, not a retry every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.errors import ForbiddenError
from chorus_common.topics import (
    LICENSE_GRANT,
    LICENSE_RELEASE,
    LICENSE_RENEW,
    GrantAnswer,
    LeaseGranted,
    LeaseRef,
    LeaseRequest,
    ReleaseAnswer,
)

__all__ = ["SUBJECT", "LicenseGate"]

log = logging.getLogger("chorus.license")

#: the seat endpoints' subjects (what the NATS users' permissions name)
SUBJECT = "chorus.svc.licensing.lease-{verb}"
#: how long a starting service waits for its first seat before saying why it has none
STARTUP_GRACE_SECONDS = 5.0


class LicenseGate:
    def __init__(
        self,
        bus: Bus,
        holder: str,
        kind: str,
        retry_seconds: float = 1.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_change`` is called whenever the gate opens or closes; the service re-runs its
        health checks then, so readiness follows the seat at once, not at the next interval."""
        self.bus = bus
        self.on_change = on_change
        self.holder = holder
        self.kind = kind
        self.retry_seconds = retry_seconds
        self.lease: LeaseGranted | None = None
        self.valid_until = 0.0  # monotonic
        self.reason = "no seat lease yet: waiting for the licensing service"
        self._task: asyncio.Task[None] | None = None
        self._reported_open = False
        self._logged_reason: str | None = None
        self._started = time.monotonic()

    @property
    def open(self) -> bool:
        return self.lease is not None and time.monotonic() < self.valid_until

    def check(self) -> None:
        """Raise 403 with the reason when the gate is closed."""
        if not self.open:
            raise ForbiddenError(
                f"this service holds no license seat: {self.reason}", reason="license_unavailable"
            )

    async def health(self) -> str:
        if not self.open:
            raise ForbiddenError(self.reason)
        assert self.lease is not None
        return f"seat {self.lease.seat} (lease {self.lease.lease_id})"

    async def _grant(self) -> GrantAnswer:
        # as given: the licensing service judges the request (and refuses it with a reason)
        request = LeaseRequest.model_construct(holder=self.holder, kind=self.kind)
        return await self.bus.topic(LICENSE_GRANT).request(request, GrantAnswer, timeout=2)

    async def _renew(self, lease_id: str) -> GrantAnswer:
        request = LeaseRef.model_construct(lease_id=lease_id)
        return await self.bus.topic(LICENSE_RENEW).request(request, GrantAnswer, timeout=2)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="license-gate")

    async def _run(self) -> None:
        while True:
            wait = self.retry_seconds
            try:
                sent = time.monotonic()
                if self.lease is None:
                    answer = (await self._grant()).root
                else:
                    answer = (await self._renew(self.lease.lease_id)).root
                if isinstance(answer, LeaseGranted):
                    self.lease = answer
                    ttl = answer.expires_in_seconds
                    self.valid_until = sent + ttl * 0.9  # stop before the authority's clock says so
                    self.reason = "ok"
                    wait = max(0.2, ttl / 3)
                else:
                    error = answer.error
                    self.reason = str(error.get("detail", "the licensing service refused a seat"))
                    if error.get("status") in (404, 409):
                        self.lease = None  # our lease is gone: ask for a new one at once
                        wait = 0.05
                    else:
                        self.lease = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.open:
                    self.reason = (
                        f"the licensing service does not answer ({exc or type(exc).__name__})"
                    )
            if self.open != self._reported_open:
                self._reported_open = self.open
                self._log_change()
                self.on_change()
            elif not self.open:
                self._log_closed()
            if self.open:  # wake when the lease runs out, to report the closed gate then
                wait = min(wait, max(0.05, self.valid_until - time.monotonic()))
            await asyncio.sleep(wait)

    def _log_change(self) -> None:
        if self.open:
            assert self.lease is not None
            log.info("license seat %s held (lease %s)", self.lease.seat, self.lease.lease_id)
            self._logged_reason = None
        else:
            self._log_closed(at_once=True)

    def _log_closed(self, at_once: bool = False) -> None:
        """One ERROR per distinct reason; none while a starting service waits its grace."""
        if self.reason == self._logged_reason:
            return
        if not at_once and time.monotonic() - self._started < STARTUP_GRACE_SECONDS:
            return
        self._logged_reason = self.reason
        log.error(
            "license_unavailable: %s; this %s refuses work until it holds a seat "
            "(CHORUS_LICENSE_REQUIRED=true)",
            self.reason,
            self.kind,
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.bus.topic(LICENSE_RELEASE).request(
                    LeaseRef.model_construct(lease_id=self.lease.lease_id), ReleaseAnswer, timeout=2
                )
            self.lease = None
