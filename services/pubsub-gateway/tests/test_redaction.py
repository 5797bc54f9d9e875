"""SHHH at the gateway's edge: the whole envelope, the gateway's own tokens, prose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from chorus_common.envelopes import MessageType
from chorus_gateway import GatewayService

from .conftest import as_json

GatewayFixture = tuple[GatewayService, httpx.AsyncClient]


def _help(agent: Any, problem: str, **fields: Any) -> dict[str, Any]:
    env = agent.envelope(
        MessageType.TASK_HELP_REQUEST,
        {"task_id": "t1", "agent": agent.agent_id, "problem": problem},
        **fields,
    )
    return as_json(env)


async def test_the_admin_token_and_secret_prose_never_reach_the_stream(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    service, client = gateway
    agent = await new_agent()
    admin = "test-admin-token"
    cases = {
        f"I used the token {admin} to call the API": ("configured_secret",),
        "the db password is Wint3rIsC0ming!": ("secret_prose",),
        "AWS says aws_secret_access_key=" + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY": (
            "aws_secret",
            "secret_assignment",
        ),
    }
    for problem, kinds in cases.items():
        resp = await client.post("/v1/envelopes", json=_help(agent, problem))
        assert resp.status_code == 201, resp.text
        found = resp.json()["redacted"] or {}
        assert any(k in pattern for k in kinds for pattern in found), (problem, found)
        stored = await service.bus.jetstream.get_msg("CHORUS_EVENTS", seq=resp.json()["seq"])
        assert b"[REDACTED:" in stored.data
    stored_all = [
        (await service.bus.jetstream.get_msg("CHORUS_EVENTS", seq=s)).data for s in range(1, 4)
    ]
    assert not any(admin.encode() in data for data in stored_all)
    assert not any(b"Wint3rIsC0ming" in data for data in stored_all)


async def test_a_secret_outside_the_payload_is_refused_not_stored(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    service, client = gateway
    agent = await new_agent()
    token = "ghp_" + "0123456789abcdefghijABCDEFGHIJ012345"
    refused = await client.post(
        "/v1/envelopes:batch",
        json=[_help(agent, "fine"), _help(agent, "also fine", project=token)],
    )
    results = refused.json()["results"]
    assert results[0]["ok"] is True
    assert results[1]["ok"] is False and results[1]["error"]["status"] == 422
    assert token not in str(results[1]["error"])  # the answer never repeats the secret
    info = await service.bus.jetstream.stream_info("CHORUS_EVENTS")
    for seq in range(1, info.state.last_seq + 1):
        assert (
            token.encode()
            not in (await service.bus.jetstream.get_msg("CHORUS_EVENTS", seq=seq)).data
        )
