"""The HAP service: the web UI and a JSON API over the same portal the terminal UI uses."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from chorus_common.service import Service
from chorus_hap.portal import Portal
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

    async def setup(self) -> None:
        s = self.settings
        self.portal = Portal(self.bus, s.data_dir, s.hap_quorum, s.hap_role, s.hap_dht_url)
        await self.portal.start()
        await self.portal.person(s.agent_id())

    async def teardown(self) -> None:
        await self.portal.stop()

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/ui", status_code=303)

        @app.get("/v1/identity", tags=["hap"])
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

        @app.post("/v1/hmmm", dependencies=[Depends(admin)], status_code=201, tags=["hap"])
        async def hmmm(body: Compose) -> dict[str, Any]:
            """Compose, redact, sign and send an HMMM message as this portal's person."""
            preview = await self.portal.compose(
                self.settings.agent_id(), body.type, body.text, thread=body.thread, task=body.task
            )
            return await self.portal.send(self.settings.agent_id(), preview)

        install_web(app, self)
