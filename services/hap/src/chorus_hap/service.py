"""The HAP service: the web UI and a JSON API over the same portal the terminal UI uses."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

from chorus_common.service import Service, problem_responses
from chorus_common.topology import BUCKET_HAP_SESSIONS
from chorus_hap.portal import Portal
from chorus_hap.sessions import SessionSeal, SessionStore, load_session_key
from chorus_hap.settings import HapSettings
from chorus_hap.web import install_web


class Compose(BaseModel):
    type: str = "meta_discussion"
    text: str = Field(min_length=1)
    thread: str | None = None
    task: str | None = None


class HapService(Service):
    name = "hap"
    description = "Human Agent Portal: terminal and web UI"
    settings_class = HapSettings
    settings: HapSettings
    #: the web UI signs people in with its own session cookie (chorus_hap.sessions)
    session_paths = ("/", "/ui")  # "/" redirects to the sign-in

    def __init__(self, settings: HapSettings | None = None) -> None:
        super().__init__(settings)
        r = self.metrics.registry
        self.m_sent = Counter(
            "chorus_hap_messages_sent_total",
            "Envelopes people signed and sent, by type",
            ["type"],
            registry=r,
        )
        self.m_logins = Counter(
            "chorus_hap_logins_total", "Web sign-ins by result", ["result"], registry=r
        )
        self.m_votes = Counter(
            "chorus_hap_votes_total", "Votes cast through the portal", ["choice"], registry=r
        )
        self.m_viewers = Gauge("chorus_hap_live_viewers", "Open live-feed connections", registry=r)
        self.m_decisions = Gauge(
            "chorus_hap_open_decisions", "Decisions still taking votes", registry=r
        )
        for result in ("ok", "refused"):
            self.m_logins.labels(result)
        for choice in ("approve", "reject", "abstain"):
            self.m_votes.labels(choice)

    async def setup(self) -> None:
        s = self.settings
        self.portal = Portal(self.bus, s.data_dir, s.hap_quorum, s.hap_role, s.hap_dht_url)
        self.portal.on_sent = lambda mtype: self.m_sent.labels(mtype).inc()
        if s.admin_token is not None:
            self.portal.admin_token = s.admin_token.get_secret_value()
        await self.portal.start()
        await self.portal.person(s.agent_id())
        # an empty value (compose's ${CHORUS_HAP_SESSION_KEY:-}) means the data folder's key
        setting = (s.hap_session_key.get_secret_value() if s.hap_session_key else "") or None
        key = await asyncio.to_thread(load_session_key, setting, s.data_dir)
        self.sessions = SessionStore(
            await self.bus.js.key_value(BUCKET_HAP_SESSIONS),
            SessionSeal(key, s.hap_session_seconds),
        )

    async def teardown(self) -> None:
        await self.portal.stop()

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/ui", status_code=303)

        @app.get("/v1/identity", tags=["hap"], responses=problem_responses(503))
        async def identity() -> dict[str, Any]:
            person = await self.portal.person(self.settings.agent_id())
            return {
                "agent": person.agent,
                "role": self.settings.hap_role,
                "public_key": person.key.public_key,
                "feed_seq": person.writer.state.seq,
            }

        @app.get("/v1/decisions", tags=["hap"])
        async def decisions() -> dict[str, Any]:
            return {"decisions": [d.as_dict() for d in self.portal.book.decisions.values()]}

        @app.post(
            "/v1/hmmm",
            dependencies=[Depends(admin)],
            status_code=201,
            tags=["hap"],
            responses=problem_responses(503),
        )
        async def hmmm(body: Compose) -> dict[str, Any]:
            """Compose, redact, sign and send an HMMM message as this portal's person."""
            preview = await self.portal.compose(
                self.settings.agent_id(), body.type, body.text, thread=body.thread, task=body.task
            )
            return await self.portal.send(self.settings.agent_id(), preview)

        install_web(app, self)
