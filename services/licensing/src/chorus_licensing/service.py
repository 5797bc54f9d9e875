"""The licensing service: validates the license (offline, and online with grace), grants seat leases.

``CHORUS_LICENSING_MODE=authority`` runs it as the KACHING-compatible upstream
instead, so an air-gapped cluster needs no outside service.

Wiring only: the license and its seats are :class:`~chorus_licensing.keeper.LicenseKeeper`'s,
the routes are in :mod:`chorus_licensing.app`, the seat endpoints in :mod:`chorus_licensing.micro`.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import APIRouter, FastAPI

from chorus_common.service import MicroHandler, Service
from chorus_licensing.app import authority_router, router
from chorus_licensing.authority import Authority
from chorus_licensing.keeper import LicenseKeeper
from chorus_licensing.metrics import LicensingMetrics
from chorus_licensing.micro import seat_endpoints
from chorus_licensing.seats import seat_bucket
from chorus_licensing.settings import LicensingSettings

__all__ = ["LicensingService", "LicensingSettings"]


class LicensingService(Service):
    name = "licensing"
    description = "License validation and cluster seat leases"
    settings_class = LicensingSettings
    needs_seat = False  # it grants the seats; every other service holds one
    routers: ClassVar[tuple[APIRouter, ...]] = (router,)
    settings: LicensingSettings

    def __init__(self, settings: LicensingSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        self.keeper = self.provide(
            LicenseKeeper(s, LicensingMetrics(self.metrics.registry), poke=self.health.poke)
        )
        self.health.add("license", self.keeper.check, critical=True)
        if self.authority_mode:
            self.provide(Authority(self.keeper, s.licensing_revoked))

    @property
    def authority_mode(self) -> bool:
        return self.settings.licensing_mode == "authority"

    def routes(self, app: FastAPI) -> None:
        if self.authority_mode:  # the upstream's activate / validate / heartbeat
            app.include_router(authority_router)

    async def setup(self) -> None:
        if self.authority_mode:
            return
        await self.keeper.start(seat_bucket(self.bus))

    async def teardown(self) -> None:
        await self.keeper.stop()

    def micro_endpoints(self) -> dict[str, MicroHandler]:
        return seat_endpoints(self.keeper)
