"""Wiring and lifecycle of HAP: the web UI (chorus_hap.web) and a JSON API
(chorus_hap.app) over the same portal the terminal UI uses."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from chorus_common.service import Service
from chorus_hap import app as api
from chorus_hap import web
from chorus_hap.metrics import HapMetrics
from chorus_hap.portal import Portal
from chorus_hap.sessions import SessionSeal, SessionStore, load_session_key, session_records
from chorus_hap.settings import HapSettings

__all__ = ["HapService"]


class HapService(Service):
    name = "hap"
    description = "Human Agent Portal: terminal and web UI"
    settings_class = HapSettings
    settings: HapSettings
    routers = (api.router, web.router)
    #: the web UI signs people in with its own session cookie (chorus_hap.sessions)
    session_paths = ("/", "/ui")  # "/" redirects to the sign-in

    def __init__(self, settings: HapSettings | None = None) -> None:
        super().__init__(settings)
        self.hap_metrics = self.provide(HapMetrics(self.metrics.registry))
        self.provide(self.settings, as_=HapSettings)
        self.provide(web.Logins(self.settings))

    def routes(self, app: FastAPI) -> None:
        web.mount(app)

    async def setup(self) -> None:
        s = self.settings
        self.portal = Portal(self.bus, s.data_dir, s.hap_quorum, s.hap_role, s.hap_dht_url)
        self.portal.on_sent = lambda mtype: self.hap_metrics.sent.labels(mtype).inc()
        if s.admin_token is not None:
            self.portal.admin_token = s.admin_token.get_secret_value()
        await self.portal.start()
        await self.portal.person(s.agent_id())
        # an empty value (compose's ${CHORUS_HAP_SESSION_KEY:-}) means the data folder's key
        setting = (s.hap_session_key.get_secret_value() if s.hap_session_key else "") or None
        key = await asyncio.to_thread(load_session_key, setting, s.data_dir)
        self.sessions = SessionStore(
            session_records(self.bus), SessionSeal(key, s.hap_session_seconds)
        )
        self.provide(self.portal)
        self.provide(self.sessions)

    async def teardown(self) -> None:
        await self.portal.stop()
