"""The license in force: read and verified from its file, reloaded when the file changes,
validated online (with grace), and the seat table it grants leases from."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bucket
from chorus_common.errors import ChorusError, UnavailableError
from chorus_licensing.breaker import CircuitBreaker
from chorus_licensing.documents import SeatRecord
from chorus_licensing.license import License, LicenseError, load_license_file, verify_license
from chorus_licensing.metrics import LicensingMetrics
from chorus_licensing.online import OnlineStatus, Unreachable, UpstreamClient
from chorus_licensing.seats import SeatLease, SeatTable
from chorus_licensing.settings import LicensingSettings

__all__ = ["LicenseKeeper"]

log = logging.getLogger("chorus.licensing")


class LicenseKeeper:
    """What the license allows now, and the seats it grants.

    ``poke`` asks for the health checks to run again (the license state changed);
    ``clock`` is wall time, which tests advance to cross the 72 h grace.
    """

    def __init__(
        self,
        settings: LicensingSettings,
        metrics: LicensingMetrics,
        poke: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.poke = poke
        self.clock = clock
        self.license: License | None = None
        self.license_doc: Any = None
        self.license_error: LicenseError | None = None
        self.breaker = CircuitBreaker(
            settings.license_breaker_failures, settings.license_breaker_reset_seconds
        )
        self.online = OnlineStatus(grace_seconds=settings.license_grace_seconds)
        self.upstream: UpstreamClient | None = None
        self.seats: SeatTable | None = None
        self._task: asyncio.Task[None] | None = None
        self._seat_records: Bucket[SeatRecord] | None = None
        self._file_seen: tuple[int, int, int] | None = None
        self._seen_expirations = 0
        #: why the last replacement of the license file was refused (the old one stays)
        self.reload_error: str | None = None
        self._load()

    # -- the license file ------------------------------------------------------------

    def _read(self) -> tuple[Any, License]:
        """The license file's document and verified license, or the LicenseError saying why not."""
        s = self.settings
        if s.license_file is None:
            raise LicenseError(
                "missing",
                "no license configured (set CHORUS_LICENSE_FILE; "
                "`chorus-license dev --out DIR` makes a development one)",
            )
        if not s.issuer_key():
            raise LicenseError(
                "missing", "no issuer key configured (set CHORUS_LICENSE_ISSUER_KEY)"
            )
        try:
            text = s.license_file.read_text()
        except OSError as exc:
            raise LicenseError("malformed", f"cannot read {s.license_file}: {exc}") from None
        doc = load_license_file(text)
        return doc, verify_license(doc, s.issuer_key(), s.cluster)

    def _load(self) -> None:
        self._file_seen = self._fingerprint()
        try:
            self.license_doc, self.license = self._read()
        except LicenseError as exc:
            self.license_error = exc
            self.license = None
            # the one line an operator needs: every other service will say license_unavailable
            log.error("license unusable: %s; no service gets a seat until it is fixed", exc.detail)

    def _fingerprint(self) -> tuple[int, int, int] | None:
        """What changes when the file is renewed or replaced, a mounted Secret's swap included."""
        path = self.settings.license_file
        if path is None:
            return None
        try:
            st = path.stat()  # follows the symlinks a Kubernetes Secret volume swaps
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def reload_if_changed(self) -> bool:
        """Pick up a renewed or replaced license file without a restart; True if it changed.

        A replacement that does not verify never takes away a license that does: the
        current one stays in force (until it expires) and the refusal is logged and shown
        in the status as ``reload_error``.
        """
        seen = await asyncio.to_thread(self._fingerprint)
        if seen == self._file_seen:
            return False
        self._file_seen = seen
        try:
            doc, lic = await asyncio.to_thread(self._read)
        except LicenseError as exc:
            if self.license is None:
                self.license_error = exc
            else:
                self.reload_error = exc.detail
            log.error(
                "the license file changed but cannot be used (%s)%s",
                exc.detail,
                f"; license {self.license.license_id} stays in force" if self.license else "",
            )
            self.poke()
            return True
        old = self.license
        self.license_doc, self.license = doc, lic
        self.license_error = None
        self.reload_error = None
        if self.seats is not None:
            self.seats.seats = lic.seats
        elif self._seat_records is not None:  # no license at start: the seat table opens now
            self._open_seats()
        self.metrics.seats_total.set(lic.seats)
        url = self.settings.license_upstream_url
        if url and (old is None or old.license_id != lic.license_id):
            if self.upstream is None:
                self.upstream = UpstreamClient(url, self.breaker)
            self.online.result = "pending"  # a new license is activated before it grants
            await self.validate_online("activate")
        log.info(
            "license reloaded: %s for %s, %d seats, until %s (was %s)",
            lic.license_id,
            lic.customer,
            lic.seats,
            lic.expires_at.isoformat(),
            old.license_id if old else "none",
        )
        self.poke()
        return True

    def _open_seats(self) -> None:
        assert self.license is not None and self._seat_records is not None
        self.seats = SeatTable(
            self._seat_records, self.license.seats, self.settings.license_lease_ttl_seconds
        )
        self.metrics.seats_total.set(self.license.seats)

    # -- may it be used --------------------------------------------------------------

    def usable(self) -> tuple[bool, str | None]:
        if self.license is None:
            assert self.license_error is not None
            return False, self.license_error.detail
        if datetime.fromtimestamp(self.clock(), UTC) >= self.license.expires_at:
            return (
                False,
                f"license {self.license.license_id} expired at {self.license.expires_at.isoformat()}",
            )
        return self.online.usable(self.clock())

    async def check(self) -> str:
        """The ``license`` health check (critical): fails while the license may not be used."""
        ok, reason = self.usable()
        self.metrics.valid.set(1 if ok else 0)
        if not ok:
            raise LicenseError("unusable", reason or "license unusable")
        assert self.license is not None
        return f"{self.license.license_id} ({self.license.tier}, {self.license.seats} seats)"

    # -- running: seats, online validation, reloads ------------------------------------

    async def start(self, seat_records: Bucket[SeatRecord]) -> None:
        """Open the seat table in ``seat_records`` (:func:`~chorus_licensing.seats.seat_bucket`),
        activate online, and start the loop."""
        self._seat_records = seat_records
        if self.license is not None:
            self._open_seats()
        url = self.settings.license_upstream_url
        if url and self.license is not None:
            self.upstream = UpstreamClient(url, self.breaker)
            self.online.result = "pending"
            await self.validate_online("activate")
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self.upstream is not None:
            await self.upstream.close()

    async def _loop(self) -> None:
        interval = self.settings.license_validate_interval_seconds
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, interval))
            try:
                await self.reload_if_changed()
            except Exception:  # a reload must never stop validation and the gauges
                log.exception("reloading the license file failed")
            if self.upstream is not None and time.monotonic() - last >= interval:
                last = time.monotonic()
                await self.validate_online("heartbeat")
            await self._refresh_gauges()

    async def _refresh_gauges(self) -> None:
        m = self.metrics
        m.breaker.set({"closed": 0, "half_open": 1, "open": 2}[self.breaker.state.value])
        m.grace.set(self.online.grace_remaining(self.clock()) or 0)
        if self.seats is not None:
            with contextlib.suppress(Exception):
                m.seats_used.set(len(await self.seats.leases()))
                m.leases.labels("expired").inc(self.seats.expirations - self._seen_expirations)
                self._seen_expirations = self.seats.expirations

    async def validate_online(
        self, verb: Literal["activate", "validate", "heartbeat"] = "validate"
    ) -> None:
        assert self.upstream is not None and self.license is not None
        body = {
            "license_id": self.license.license_id,
            "cluster_id": self.settings.cluster,
            "instance": self.settings.node_id,
        }
        validations = self.metrics.validations
        try:
            answer = await self.upstream.call(verb, body)
        except Unreachable as exc:
            self.online.record("unreachable", str(exc), self.clock())
            validations.labels("unreachable").inc()
        else:
            if answer.get("valid"):
                self.online.record("valid", None, self.clock())
                validations.labels("valid").inc()
            else:
                self.online.record("invalid", str(answer.get("reason", "refused")), self.clock())
                validations.labels("invalid").inc()
        self.poke()
        await self._refresh_gauges()

    # -- leases ----------------------------------------------------------------------

    def _seat_table(self) -> SeatTable:
        ok, reason = self.usable()
        if not ok or self.seats is None:
            raise LicenseError("unusable", reason or "the license cannot grant seats")
        return self.seats

    async def grant(self, holder: str, kind: str) -> SeatLease:
        try:
            lease = await self._seat_table().grant(holder, kind)
        except ChorusError:
            self.metrics.leases.labels("denied").inc()
            raise
        self.metrics.leases.labels("granted").inc()
        return lease

    async def renew(self, lease_id: str) -> SeatLease:
        lease = await self._seat_table().renew(lease_id)
        self.metrics.leases.labels("renewed").inc()
        return lease

    async def release(self, lease_id: str) -> None:
        if self.seats is None:
            raise UnavailableError("no seat table: the license is not loaded")
        await self.seats.release(lease_id)
        self.metrics.leases.labels("released").inc()

    async def held(self) -> list[SeatLease]:
        """The leases held now (none before the seat table is open)."""
        return await self.seats.leases() if self.seats is not None else []

    def status(self) -> dict[str, Any]:
        ok, reason = self.usable()
        lic = self.license
        now = self.clock()
        return {
            "valid": ok,
            "reason": reason,
            "error": self.license_error.extra.get("reason") if self.license_error else None,
            "license_id": lic.license_id if lic else None,
            "customer": lic.customer if lic else None,
            "tier": lic.tier if lic else None,
            "features": lic.features if lic else [],
            "seats": {"total": lic.seats if lic else 0},
            "expires_at": lic.expires_at.isoformat() if lic else None,
            "license_file": str(self.settings.license_file) if self.settings.license_file else None,
            "reload_error": self.reload_error,
            "online": {
                "upstream": self.settings.license_upstream_url,
                "result": self.online.result,
                "reason": self.online.reason,
                "last_good": self.online.last_good,
                "grace_remaining_seconds": self.online.grace_remaining(now),
                "breaker": self.breaker.state.value,
            },
        }
