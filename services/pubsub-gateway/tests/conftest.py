"""Gateway test support: a running gateway and signing agents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter
from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process
from chorus_gateway import GatewayService
from chorus_gateway.settings import GatewaySettings

ADMIN = {"Authorization": "Bearer test-admin-token"}


@dataclass
class SigningAgent:
    agent_id: str
    key: AgentKey
    writer: FeedWriter

    def envelope(
        self, message_type: MessageType, payload: dict[str, Any] | None = None, **fields: Any
    ) -> Envelope:
        env = Envelope(
            type=message_type,
            sender=self.agent_id,
            payload=payload if payload is not None else SAMPLE_PAYLOADS[message_type],
            **fields,
        )
        return self.writer.seal(env)


def as_json(env: Envelope) -> dict[str, Any]:
    return env.model_dump(mode="json")


@pytest.fixture
async def gateway(
    make_settings: Callable[..., ChorusSettings],
) -> AsyncIterator[tuple[GatewayService, httpx.AsyncClient]]:
    settings = make_settings(GatewaySettings, gateway_subscriber_queue=400)
    service = GatewayService(settings)  # type: ignore[arg-type]
    async with (
        serve_in_process(service) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=20) as client,
    ):
        yield service, client


@pytest.fixture
def new_agent(gateway: tuple[GatewayService, httpx.AsyncClient]) -> Callable[..., Any]:
    _, client = gateway

    async def make(agent_id: str = "agent-1") -> SigningAgent:
        key = AgentKey.generate()
        resp = await client.post(f"/v1/agents/{agent_id}/keys", json={"public_key": key.public_key})
        assert resp.status_code == 201, resp.text
        return SigningAgent(agent_id, key, FeedWriter(agent_id, key))

    return make
