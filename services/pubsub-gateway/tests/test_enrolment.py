"""Scoped identities at the gateway: enrolment, key rotation, revocation, closed reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import nats
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter
from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process
from chorus_gateway import GatewayService
from chorus_gateway.enrolment import challenge_message, rotation_message
from chorus_gateway.settings import GatewaySettings

ADMIN = {"Authorization": "Bearer test-admin-token"}
READER = {"Authorization": "Bearer test-read-token"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def gateways(
    make_settings: Callable[..., ChorusSettings],
) -> AsyncIterator[list[str]]:
    """Two gateway replicas on one bus, reads closed (the deployed default)."""
    urls = []
    async with contextlib.AsyncExitStack() as stack:
        for i in (1, 2):
            settings = make_settings(
                GatewaySettings,
                public_read=False,
                read_tokens="test-read-token",
                node_id=f"gw-{i}",
            )
            service = GatewayService(settings)  # type: ignore[arg-type]
            urls.append(await stack.enter_async_context(serve_in_process(service)))
        yield urls


async def enrol(
    http: httpx.AsyncClient, url: str, token: str, agent: str, key: AgentKey
) -> httpx.Response:
    ask = {"agent": agent, "public_key": key.public_key}
    challenge = await http.post(f"{url}/v1/enrolments/challenge", json=ask, headers=bearer(token))
    if challenge.status_code != 201:
        return challenge
    nonce = challenge.json()["challenge"]
    signature = key.sign(challenge_message(agent, key.public_key, nonce))
    return await http.post(
        f"{url}/v1/enrolments",
        json={**ask, "challenge": nonce, "signature": signature},
        headers=bearer(token),
    )


async def enrolment_token(http: httpx.AsyncClient, url: str) -> str:
    resp = await http.post(f"{url}/v1/enrolment-tokens", json={}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


def envelope(agent: str, key: AgentKey) -> dict[str, Any]:
    env = FeedWriter(agent, key).seal(
        Envelope(
            type=MessageType.STATUS_UPDATE,
            sender=agent,
            payload=SAMPLE_PAYLOADS[MessageType.STATUS_UPDATE],
        )
    )
    return env.model_dump(mode="json")


async def test_reads_need_the_read_scope_on_rest_sse_and_websocket(gateways: list[str]) -> None:
    url = gateways[0]
    async with httpx.AsyncClient(timeout=10) as http:
        for path in ("/v1/messages", "/v1/types", "/v1/agents/nobody"):
            anonymous = await http.get(f"{url}{path}")
            assert anonymous.status_code == 401, path
            assert anonymous.headers["content-type"].startswith("application/problem+json")
            assert (await http.get(f"{url}{path}", headers=bearer("made-up"))).status_code == 401
        assert (await http.get(f"{url}/v1/messages", headers=READER)).status_code == 200
        assert (await http.get(f"{url}/v1/stream")).status_code == 401
        async with http.stream("GET", f"{url}/v1/stream", headers=READER) as stream:
            assert stream.status_code == 200
        ws_url = url.replace("http://", "ws://") + "/v1/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(ws_url):
                pass
        assert refused.value.response.status_code == 401
        async with websockets.connect(ws_url, additional_headers=READER) as ws:
            await ws.ping()
        # the probes and the API documents stay open
        for path in ("/health/ready", "/metrics", "/openapi.json"):
            assert (await http.get(f"{url}{path}")).status_code == 200, path


async def test_an_agent_enrols_once_and_its_token_publishes_only_as_itself(
    gateways: list[str],
) -> None:
    gw1, gw2 = gateways
    key = AgentKey.generate()
    async with httpx.AsyncClient(timeout=10) as http:
        token = await enrolment_token(http, gw1)
        enrolled = await enrol(http, gw2, token, "agent-e", key)  # the other replica
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["scopes"] == ["publish", "read"]
        agent = bearer(enrolled.json()["token"])
        # once: the enrolment token is used up on every replica
        again = await enrol(http, gw1, token, "agent-f", AgentKey.generate())
        assert again.status_code == 401 and "not valid" in again.json()["detail"]

        body = envelope("agent-e", key)
        assert (await http.post(f"{gw1}/v1/envelopes", json=body, headers=agent)).status_code == 201
        forged = await http.post(
            f"{gw1}/v1/envelopes:batch",
            json={"envelopes": [body, {**body, "sender": "agent-x"}]},
            headers=agent,
        )
        assert forged.status_code == 403 and forged.json()["reason"] == "sender_mismatch"
        assert forged.json()["index"] == 1
        assert (
            await http.post(f"{gw1}/v1/envelopes", json=body, headers=READER)
        ).status_code == 403
        # an agent token is no admin
        minted = await http.post(f"{gw1}/v1/enrolment-tokens", json={}, headers=agent)
        assert minted.status_code == 403 and minted.json()["reason"] == "scope_missing"


async def test_enrolment_needs_proof_of_the_key(gateways: list[str]) -> None:
    url = gateways[0]
    key, other = AgentKey.generate(), AgentKey.generate()
    async with httpx.AsyncClient(timeout=10) as http:
        token = await enrolment_token(http, url)
        ask = {"agent": "agent-p", "public_key": key.public_key}
        nonce = (
            await http.post(f"{url}/v1/enrolments/challenge", json=ask, headers=bearer(token))
        ).json()["challenge"]
        wrong = other.sign(challenge_message("agent-p", key.public_key, nonce))
        refused = await http.post(
            f"{url}/v1/enrolments",
            json={**ask, "challenge": nonce, "signature": wrong},
            headers=bearer(token),
        )
        assert refused.status_code == 401 and "no proof" in refused.json()["detail"]
        unauthenticated = await http.post(f"{url}/v1/enrolments/challenge", json=ask)
        assert unauthenticated.status_code == 401
        # the token was not spent on the failed attempt
        assert (await enrol(http, url, token, "agent-p", key)).status_code == 201


async def test_two_replicas_racing_one_enrolment_token_enrol_one_agent(
    gateways: list[str],
) -> None:
    gw1, gw2 = gateways
    async with httpx.AsyncClient(timeout=20) as http:
        for round_ in range(10):
            token = await enrolment_token(http, gw1)
            answers = await asyncio.gather(
                enrol(http, gw1, token, f"race-{round_}-a", AgentKey.generate()),
                enrol(http, gw2, token, f"race-{round_}-b", AgentKey.generate()),
            )
            codes = sorted(a.status_code for a in answers)
            assert codes == [201, 401], [a.text for a in answers]


async def test_a_key_changes_only_by_rotation_and_every_change_is_audited(
    gateways: list[str], nats_url: str
) -> None:
    gw1, gw2 = gateways
    old, new, newer = AgentKey.generate(), AgentKey.generate(), AgentKey.generate()
    nc = await nats.connect(nats_url)
    audit: list[dict[str, Any]] = []

    async def take(msg: Any) -> None:
        audit.append(json.loads(msg.data))

    await nc.subscribe("chorus.audit.>", cb=take)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            token = await enrolment_token(http, gw1)
            agent = bearer((await enrol(http, gw1, token, "agent-r", old)).json()["token"])
            keys = f"{gw2}/v1/agents/agent-r/keys"
            # re-registering another key no longer replaces the old one silently
            silent = await http.post(keys, json={"public_key": new.public_key}, headers=ADMIN)
            assert silent.status_code == 409 and silent.json()["reason"] == "key_exists"
            unsigned = await http.post(keys, json={"public_key": new.public_key}, headers=agent)
            assert unsigned.status_code == 409
            bad = new.sign(rotation_message("agent-r", new.public_key))  # not the old key
            forged = await http.post(
                keys, json={"public_key": new.public_key, "signature": bad}, headers=agent
            )
            assert forged.status_code == 403 and forged.json()["reason"] == "bad_rotation_signature"

            signed = old.sign(rotation_message("agent-r", new.public_key))
            rotated = await http.post(
                keys, json={"public_key": new.public_key, "signature": signed}, headers=agent
            )
            assert rotated.status_code == 201 and rotated.json()["changed"] is True
            shown = (await http.get(f"{gw1}/v1/agents/agent-r", headers=READER)).json()
            assert shown["public_key"] == new.public_key

            # someone else's token cannot rotate it, even with a valid signature
            token2 = await enrolment_token(http, gw1)
            intruder = bearer(
                (await enrol(http, gw1, token2, "agent-i", AgentKey.generate())).json()["token"]
            )
            stolen = new.sign(rotation_message("agent-r", newer.public_key))
            theft = await http.post(
                keys, json={"public_key": newer.public_key, "signature": stolen}, headers=intruder
            )
            assert theft.status_code == 403 and theft.json()["reason"] == "not_your_agent"
            by_admin = await http.post(
                keys, json={"public_key": newer.public_key, "rotate": True}, headers=ADMIN
            )
            assert by_admin.status_code == 201

            revoked = await http.delete(f"{gw1}/v1/agents/agent-r/tokens", headers=ADMIN)
            assert revoked.json()["revoked"] == 1
            # this replica forgets at once; the other within its cache time (5 s)
            assert (await http.get(f"{gw1}/v1/types", headers=agent)).status_code == 401
            for _ in range(80):
                if (await http.get(f"{gw2}/v1/types", headers=agent)).status_code == 401:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the other replica kept trusting a revoked token")
        for _ in range(50):
            if len(audit) >= 7:
                break
            await asyncio.sleep(0.1)
        actions = [(a["action"], a.get("agent")) for a in audit]
        assert ("agent_enrolled", "agent-r") in actions
        assert ("key_rotated", "agent-r") in actions
        assert ("key_rotated_by_admin", "agent-r") in actions
        assert ("tokens_revoked", "agent-r") in actions
        rotation = next(a for a in audit if a["action"] == "key_rotated")
        assert rotation["old_key"] == old.public_key and rotation["new_key"] == new.public_key
    finally:
        await nc.close()
