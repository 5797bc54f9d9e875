"""The licensing service: validates the license (offline, and online with grace), grants seat leases.

``CHORUS_LICENSING_MODE=authority`` runs it as the KACHING-compatible upstream
instead, so an air-gapped cluster needs no outside service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import nats.errors
from fastapi import Depends, FastAPI
from nats.micro.request import Request as MicroRequest
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

from chorus_common.aio import cancel_and_wait
from chorus_common.config import ChorusSettings
from chorus_common.errors import ChorusError, RequestInvalidError, UnavailableError
from chorus_common.service import MicroHandler, Service, problem_responses
from chorus_common.topology import BUCKET_LEASES
from chorus_licensing.breaker import CircuitBreaker
from chorus_licensing.license import License, LicenseError, load_license_file, verify_license
from chorus_licensing.online import OnlineStatus, Unreachable, UpstreamClient
from chorus_licensing.seats import SeatTable

log = logging.getLogger("chorus.licensing")


class LicensingSettings(ChorusSettings):
    licensing_mode: Literal["service", "authority"] = "service"
    license_file: Path | None = None
    #: the issuer's Ed25519 public key (URL-safe base64), or a path to a file holding it
    license_issuer_key: str = ""
    license_upstream_url: str | None = None
    license_grace_seconds: float = Field(default=72 * 3600.0, ge=0)
    license_validate_interval_seconds: float = Field(default=300.0, gt=0)
    license_breaker_failures: int = Field(default=3, ge=1)
    license_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    license_lease_ttl_seconds: float = Field(default=30.0, gt=0)
    #: authority mode: license ids it no longer accepts
    licensing_revoked: str = ""

    def issuer_key(self) -> str:
        value = self.license_issuer_key.strip()
        if value and Path(value).is_file():
            return Path(value).read_text().strip()
        return value


class LeaseRequest(BaseModel):
    holder: str = Field(min_length=1, max_length=128)
    kind: str = Field(default="service", min_length=1, max_length=64)


class UpstreamRequest(BaseModel):
    license_id: str
    cluster_id: str
    instance: str = ""


class LicensingService(Service):
    name = "licensing"
    description = "License validation and cluster seat leases"
    settings_class = LicensingSettings
    needs_seat = False  # it grants the seats; every other service holds one
    settings: LicensingSettings

    def __init__(self, settings: LicensingSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        self.license: License | None = None
        self.license_doc: Any = None
        self.license_error: LicenseError | None = None
        self.breaker = CircuitBreaker(s.license_breaker_failures, s.license_breaker_reset_seconds)
        self.online = OnlineStatus(grace_seconds=s.license_grace_seconds)
        self.upstream: UpstreamClient | None = None
        self.seats: SeatTable | None = None
        self.clock = time.time  # tests advance it to cross the 72 h grace
        self._task: asyncio.Task[None] | None = None
        self._seat_kv: Any = None
        self._file_seen: tuple[int, int, int] | None = None
        #: why the last replacement of the license file was refused (the old one stays)
        self.reload_error: str | None = None
        r = self.metrics.registry
        self.m_validations = Counter(
            "chorus_licensing_validations_total",
            "License validations by result",
            ["result"],
            registry=r,
        )
        self.m_breaker = Gauge(
            "chorus_licensing_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=r,
        )
        self.m_grace = Gauge(
            "chorus_licensing_grace_remaining_seconds",
            "Grace left while the upstream is unreachable (0 when not in grace)",
            registry=r,
        )
        self.m_seats_used = Gauge("chorus_licensing_seats_used", "Seat leases held", registry=r)
        self.m_seats_total = Gauge(
            "chorus_licensing_seats_total", "Seats of the license", registry=r
        )
        self.m_leases = Counter(
            "chorus_licensing_lease_events_total",
            "Lease grants, denials, renewals, releases, expirations",
            ["event"],
            registry=r,
        )
        self.m_valid = Gauge(
            "chorus_licensing_license_valid", "1 while the license may be used", registry=r
        )
        for result in ("valid", "invalid", "unreachable"):
            self.m_validations.labels(result)
        for event in ("granted", "denied", "renewed", "released", "expired"):
            self.m_leases.labels(event)
        self._load()

    # -- license state ------------------------------------------------------------

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
        self.health.add("license", self._check_license, critical=True)

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
            self.health.poke()
            return True
        old = self.license
        self.license_doc, self.license = doc, lic
        self.license_error = None
        self.reload_error = None
        if self.seats is not None:
            self.seats.seats = lic.seats
        elif self._seat_kv is not None:  # no license at start: the seat table opens now
            await self._open_seats()
        self.m_seats_total.set(lic.seats)
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
        self.health.poke()
        return True

    async def _open_seats(self) -> None:
        assert self.license is not None
        if self._seat_kv is None:
            self._seat_kv = await self.bus.js.key_value(BUCKET_LEASES)
        self.seats = SeatTable(
            self._seat_kv, self.license.seats, self.settings.license_lease_ttl_seconds
        )
        self.m_seats_total.set(self.license.seats)

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

    async def _check_license(self) -> str:
        ok, reason = self.usable()
        self.m_valid.set(1 if ok else 0)
        if not ok:
            raise LicenseError("unusable", reason or "license unusable")
        assert self.license is not None
        return f"{self.license.license_id} ({self.license.tier}, {self.license.seats} seats)"

    # -- lifecycle --------------------------------------------------------------------

    async def setup(self) -> None:
        s = self.settings
        if s.licensing_mode == "authority":
            return
        self._seat_kv = await self.bus.js.key_value(BUCKET_LEASES)
        if self.license is not None:
            await self._open_seats()
        if s.license_upstream_url and self.license is not None:
            self.upstream = UpstreamClient(s.license_upstream_url, self.breaker)
            self.online.result = "pending"
            await self.validate_online("activate")
        self._task = asyncio.create_task(self._loop())

    async def teardown(self) -> None:
        await cancel_and_wait(self._task)
        if self.upstream is not None:
            await self.upstream.close()

    async def _loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.settings.license_validate_interval_seconds))
            try:
                await self.reload_if_changed()
            except Exception:  # a reload must never stop validation and the gauges
                log.exception("reloading the license file failed")
            if self.upstream is not None and (
                time.monotonic() - last >= self.settings.license_validate_interval_seconds
            ):
                last = time.monotonic()
                await self.validate_online("heartbeat")
            await self._refresh_gauges()

    async def _refresh_gauges(self) -> None:
        self.m_breaker.set({"closed": 0, "half_open": 1, "open": 2}[self.breaker.state.value])
        self.m_grace.set(self.online.grace_remaining(self.clock()) or 0)
        if self.seats is not None:
            with contextlib.suppress(Exception):
                self.m_seats_used.set(len(await self.seats.leases()))
                self.m_leases.labels("expired").inc(self.seats.expirations - self._seen_expirations)
                self._seen_expirations = self.seats.expirations

    _seen_expirations = 0

    async def validate_online(
        self, verb: Literal["activate", "validate", "heartbeat"] = "validate"
    ) -> None:
        assert self.upstream is not None and self.license is not None
        body = {
            "license_id": self.license.license_id,
            "cluster_id": self.settings.cluster,
            "instance": self.settings.node_id,
        }
        try:
            answer = await self.upstream.call(verb, body)
        except Unreachable as exc:
            self.online.record("unreachable", str(exc), self.clock())
            self.m_validations.labels("unreachable").inc()
        else:
            if answer.get("valid"):
                self.online.record("valid", None, self.clock())
                self.m_validations.labels("valid").inc()
            else:
                self.online.record("invalid", str(answer.get("reason", "refused")), self.clock())
                self.m_validations.labels("invalid").inc()
        self.health.poke()
        await self._refresh_gauges()

    # -- leases ----------------------------------------------------------------------

    def _seat_table(self) -> SeatTable:
        ok, reason = self.usable()
        if not ok or self.seats is None:
            raise LicenseError("unusable", reason or "the license cannot grant seats")
        return self.seats

    async def grant(self, holder: str, kind: str) -> dict[str, Any]:
        try:
            lease = await self._seat_table().grant(holder, kind)
        except ChorusError:
            self.m_leases.labels("denied").inc()
            raise
        self.m_leases.labels("granted").inc()
        return lease.as_dict()

    async def renew(self, lease_id: str) -> dict[str, Any]:
        lease = await self._seat_table().renew(lease_id)
        self.m_leases.labels("renewed").inc()
        return lease.as_dict()

    async def release(self, lease_id: str) -> None:
        if self.seats is None:
            raise UnavailableError("no seat table: the license is not loaded")
        await self.seats.release(lease_id)
        self.m_leases.labels("released").inc()

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

    # -- NATS micro: how the gate in every other service asks for its seat -----------

    def micro_endpoints(self) -> dict[str, MicroHandler]:
        async def answer(request: MicroRequest, work: Any) -> None:
            try:
                try:
                    body = json.loads(request.data or b"{}")
                except (ValueError, RecursionError):
                    raise RequestInvalidError(
                        "the request is not JSON: send a JSON object"
                    ) from None
                if not isinstance(body, dict):
                    raise RequestInvalidError("the request must be a JSON object")
                result = await work(body)
                await request.respond(json.dumps({"ok": True, **(result or {})}).encode())
            except ChorusError as exc:
                await request.respond(json.dumps({"ok": False, "error": exc.to_problem()}).encode())
            except nats.errors.Error as exc:  # the seat table did not answer: the gate retries
                error = UnavailableError(f"the seat table did not answer ({exc}); try again")
                await request.respond(
                    json.dumps({"ok": False, "error": error.to_problem()}).encode()
                )

        def text(body: dict[str, Any], name: str, default: str | None = None) -> str:
            value = body.get(name, default)
            if not isinstance(value, str) or not 0 < len(value) <= 128:
                raise RequestInvalidError(f"{name} is required: a string of 1 to 128 characters")
            return value

        async def grant(req: MicroRequest) -> None:
            await answer(req, lambda d: self.grant(text(d, "holder"), text(d, "kind", "service")))

        async def renew(req: MicroRequest) -> None:
            await answer(req, lambda d: self.renew(text(d, "lease_id")))

        async def release(req: MicroRequest) -> None:
            async def work(d: dict[str, Any]) -> dict[str, Any]:
                await self.release(text(d, "lease_id"))
                return {}

            await answer(req, work)

        return {"lease-grant": grant, "lease-renew": renew, "lease-release": release}

    # -- REST ------------------------------------------------------------------------

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        @app.get("/v1/license", tags=["license"], responses=problem_responses(503))
        async def license_status() -> dict[str, Any]:
            """Status, tier, seats used/free, expiry, grace remaining, breaker state."""
            doc = self.status()
            leases = await self.seats.leases() if self.seats is not None else []
            doc["seats"]["used"] = len(leases)
            doc["seats"]["free"] = max(0, doc["seats"]["total"] - len(leases))
            doc["holders"] = sorted({lease.holder for lease in leases})
            return doc

        @app.get("/v1/leases", tags=["leases"], responses=problem_responses(503))
        async def leases() -> dict[str, Any]:
            held = await self.seats.leases() if self.seats is not None else []
            return {"leases": [lease.as_dict() for lease in held]}

        @app.post(
            "/v1/leases",
            dependencies=[Depends(admin)],
            status_code=201,
            tags=["leases"],
            responses=problem_responses(403, 503),
        )
        async def grant(body: LeaseRequest) -> dict[str, Any]:
            """Grant one of the license's seats (TTL CHORUS_LICENSE_LEASE_TTL_SECONDS)."""
            return await self.grant(body.holder, body.kind)

        @app.put(
            "/v1/leases/{lease_id}",
            dependencies=[Depends(admin)],
            tags=["leases"],
            responses=problem_responses(403, 404, 409, 503),
        )
        async def renew(lease_id: str) -> dict[str, Any]:
            return await self.renew(lease_id)

        @app.delete(
            "/v1/leases/{lease_id}",
            dependencies=[Depends(admin)],
            status_code=204,
            tags=["leases"],
            responses=problem_responses(404, 409, 503),
        )
        async def release(lease_id: str) -> None:
            await self.release(lease_id)

        if self.settings.licensing_mode == "authority":
            self._authority_routes(app)

    def _authority_routes(self, app: FastAPI) -> None:
        """The KACHING-compatible upstream: activate / validate / heartbeat."""
        revoked = {r.strip() for r in self.settings.licensing_revoked.split(",") if r.strip()}

        def judge(body: UpstreamRequest) -> dict[str, Any]:
            if self.license is None:
                return {"valid": False, "reason": "the authority holds no valid license"}
            if body.license_id != self.license.license_id:
                return {"valid": False, "reason": f"unknown license {body.license_id}"}
            if body.license_id in revoked:
                return {"valid": False, "reason": f"license {body.license_id} was revoked"}
            if body.cluster_id != self.license.cluster_id and self.license.cluster_id != "*":
                return {"valid": False, "reason": f"license is not for cluster {body.cluster_id}"}
            return {
                "valid": True,
                "license_id": body.license_id,
                "expires_at": self.license.expires_at.isoformat(),
            }

        for verb in ("activate", "validate", "heartbeat"):

            async def endpoint(body: UpstreamRequest) -> dict[str, Any]:
                return judge(body)

            app.add_api_route(
                f"/api/v1/licenses/{verb}", endpoint, methods=["POST"], tags=["authority"]
            )
