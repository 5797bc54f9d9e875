"""BACKBEAT: the pulse (leader only, fenced), and the view of everyone's operations on the beat.

Each replica signs its beat frames and bar reports with its own key (a detached
signature in headers, chorus_common.service_signing), and follows only frames a
registered backbeat replica signed.

Wiring only: the clock and the pulse are :mod:`chorus_backbeat.pulse`'s, what every
replica follows is :mod:`chorus_backbeat.view`'s, the routes are in :mod:`chorus_backbeat.app`.
"""

from __future__ import annotations

from typing import ClassVar

from fastapi import APIRouter

from chorus_backbeat.app import router
from chorus_backbeat.metrics import BackbeatMetrics
from chorus_backbeat.pulse import CLOCK_KEY, ClusterClock, Pulse
from chorus_backbeat.settings import BackbeatSettings
from chorus_backbeat.topics import BAR_SUBJECT, BARS
from chorus_backbeat.view import BeatView
from chorus_common.leadership import LeaderLease
from chorus_common.service import Service
from chorus_common.service_signing import ServiceSigner, ServiceVerifier

__all__ = ["BAR_SUBJECT", "CLOCK_KEY", "BackbeatService", "BackbeatSettings"]


class BackbeatService(Service):
    name = "backbeat"
    description = "Beat clock, operation telemetry, budgets and drift"
    settings_class = BackbeatSettings
    settings: BackbeatSettings
    routers: ClassVar[tuple[APIRouter, ...]] = (router,)
    #: set up in :meth:`setup`, once the bus is connected
    view: BeatView
    pulse: Pulse

    def __init__(self, settings: BackbeatSettings | None = None) -> None:
        super().__init__(settings)
        self.backbeat_metrics = BackbeatMetrics(self.metrics.registry)
        self.provide(self.settings)

    async def setup(self) -> None:
        s = self.settings
        clock = ClusterClock.open(self.bus, s.backbeat_tempo_bpm)
        signer = await ServiceSigner.open(self.bus, self.name, s.node_id, s.data_dir)
        # the service's tracker (Service.tracker) follows the same frames and counts each
        # forged one in chorus_bus_forged_total; this verifier refuses them uncounted, so a
        # forgery is counted once per process
        verifier = await ServiceVerifier.open(self.bus, counted=False)
        await clock.read()  # create the cluster's clock if nobody has yet
        self.lease = await LeaderLease.open(
            self.bus,
            "backbeat",
            s.node_id,
            ttl=s.backbeat_lease_ttl_seconds,
            may_hold=lambda: self.licensed,  # no seat: give the lease up, stop leading
        )
        self.on_license_change.append(self.lease.poke)
        self.lease.start()
        self.view = self.provide(
            BeatView(
                s,
                self.backbeat_metrics,
                service=self.name,
                verifier=verifier,
                signer=signer,
                lease=self.lease,
                publish=self.bus.topic(BARS).publish_raw,
                heartbeat=self.tracker.heartbeat,
            )
        )
        self.pulse = self.provide(
            Pulse(
                s,
                self.backbeat_metrics,
                clock=clock,
                lease=self.lease,
                view=self.view,
                bus=self.bus,
                signer=signer,
            )
        )
        await self.view.start(self.bus)
        self.pulse.start()

    async def teardown(self) -> None:
        await self.pulse.stop()
        await self.view.stop()
        await self.lease.stop(release=True)
