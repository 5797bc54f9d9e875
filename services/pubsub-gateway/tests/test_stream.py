"""Subscribing over SSE and WebSocket: live, replayed, and slow clients dropped without harm."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.testing import wait_until
from chorus_gateway import GatewayService

from .conftest import as_json

GatewayFixture = tuple[GatewayService, httpx.AsyncClient]


def ws_url(client: httpx.AsyncClient, query: str) -> str:
    return str(client.base_url).replace("http://", "ws://") + f"/v1/ws?{query}"


async def test_sse_live_and_replay(gateway: GatewayFixture, new_agent: Callable[..., Any]) -> None:
    _, client = gateway
    agent = await new_agent()
    first = agent.envelope(MessageType.TASK_ANNOUNCEMENT)
    await client.post("/v1/envelopes", json=as_json(first))

    received: list[dict[str, Any]] = []

    async def listen(params: dict[str, Any], count: int) -> None:
        async with client.stream("GET", "/v1/stream", params=params) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    if len(received) >= count:
                        return

    replay = asyncio.create_task(listen({"subject": "chorus.coord.>", "from_seq": 1}, 2))
    await asyncio.sleep(0.3)
    second = agent.envelope(MessageType.TASK_CLAIM)
    await client.post("/v1/envelopes", json=as_json(second))
    await asyncio.wait_for(replay, 10)
    assert [r["envelope"]["id"] for r in received] == [first.id, second.id]
    assert received[0]["seq"] == 1 and received[0]["subject"] == "chorus.coord.task_announcement"


async def test_websocket_delivers_envelopes_intact(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    _, client = gateway
    agent = await new_agent()
    async with websockets.connect(ws_url(client, "subject=chorus.hmmm.>")) as ws:
        await asyncio.sleep(0.2)
        env = agent.envelope(MessageType.META_DISCUSSION, thread="t-9")
        await client.post("/v1/envelopes", json=as_json(env))
        doc = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert doc["subject"] == "chorus.hmmm.t-9.meta_discussion"
        assert Envelope.model_validate(doc["envelope"]) == env


async def test_invalid_subject_filter_is_refused(gateway: GatewayFixture) -> None:
    _, client = gateway
    resp = await client.get("/v1/stream", params={"subject": "chorus..bad"})
    assert resp.status_code == 400 and resp.json()["code"] == "subject_invalid"
    replay = await client.get("/v1/stream", params={"subject": "chorus.>", "from_seq": 1})
    assert replay.status_code == 400 and "CHORUS_EVENTS" in replay.json()["detail"]
    msgs = await client.get("/v1/messages", params={"subject": "a b"})
    assert msgs.status_code == 400
    async with websockets.connect(ws_url(client, "subject=chorus.>.x")) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
            assert "invalid token" in closed.rcvd.reason


def _stalled_websocket(host: str, port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def test_slow_websocket_client_is_dropped_and_fast_one_gets_everything(
    gateway: GatewayFixture,
) -> None:
    service, client = gateway
    total = 4000  # ~10 MB: far past what socket buffers hold for a client that stopped reading
    url = ws_url(client, "subject=chorus.coord.>")
    host, port = client.base_url.host, client.base_url.port
    stalled = await asyncio.to_thread(
        _stalled_websocket, host, port, "/v1/ws?subject=chorus.coord.>"
    )
    fast_count = 0
    ready = asyncio.Event()

    async def fast_reader() -> None:
        nonlocal fast_count
        async with websockets.connect(url, max_queue=None, max_size=None) as ws:
            ready.set()
            while fast_count < total:
                await asyncio.wait_for(ws.recv(), 20)
                fast_count += 1

    fast = asyncio.create_task(fast_reader())
    await ready.wait()
    metrics = service.gateway_metrics
    await wait_until(
        lambda: metrics.subscribers.labels("ws")._value.get() == 2,
        timeout=5,
        message="both subscribed",
    )
    envs = [
        Envelope(
            type=MessageType.TASK_PROGRESS,
            sender="load",
            payload={**SAMPLE_PAYLOADS[MessageType.TASK_PROGRESS], "note": "x" * 1990},
        )
        for _ in range(total)
    ]
    queue = service.settings.gateway_subscriber_queue
    for i in range(0, total, 100):
        # publish at the pace the fast client reads; the stalled one falls behind
        await wait_until(
            lambda i=i: fast_count >= i - queue // 2,
            timeout=20,
            interval=0.005,
            message="fast client keeps up",
        )
        results = await service.bus.publish_many(envs[i : i + 100])
        assert not any(isinstance(r, Exception) for r in results)
    await asyncio.wait_for(fast, 60)
    assert fast_count == total  # the fast client missed nothing
    await wait_until(
        lambda: metrics.slow_consumers.labels("ws")._value.get() == 1,
        timeout=10,
        message="stalled client dropped",
    )
    stalled.close()
    await wait_until(
        lambda: metrics.subscribers.labels("ws")._value.get() == 0,
        timeout=10,
        message="no subscriber left attached",
    )


async def test_every_type_reads_back_intact_over_sse_and_websocket(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    _, client = gateway
    agent = await new_agent("agent-all-streams")
    sent = {e.id: e for e in (agent.envelope(t, thread="th-all") for t in MessageType)}
    over_sse: dict[str, Envelope] = {}
    over_ws: dict[str, Envelope] = {}

    async def sse() -> None:
        async with client.stream("GET", "/v1/stream", params={"subject": "chorus.>"}) as resp:
            assert resp.status_code == 200
            sse_ready.set()
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    doc = json.loads(line[6:])["envelope"]
                    if isinstance(doc, dict) and doc.get("id") in sent:
                        over_sse.setdefault(doc["id"], Envelope.model_validate(doc))
                    if len(over_sse) == len(sent):
                        return

    async def ws() -> None:
        async with websockets.connect(ws_url(client, "subject=chorus.>")) as sock:
            ready.set()
            while len(over_ws) < len(sent):
                doc = json.loads(await asyncio.wait_for(sock.recv(), 10))["envelope"]
                if isinstance(doc, dict) and doc.get("id") in sent:
                    over_ws.setdefault(doc["id"], Envelope.model_validate(doc))

    ready, sse_ready = asyncio.Event(), asyncio.Event()
    ws_task = asyncio.create_task(ws())
    sse_task = asyncio.create_task(sse())
    await ready.wait()
    await sse_ready.wait()
    await asyncio.sleep(0.3)
    resp = await client.post("/v1/envelopes:batch", json=[as_json(e) for e in sent.values()])
    assert resp.json()["accepted"] == 31
    await asyncio.wait_for(asyncio.gather(sse_task, ws_task), 20)
    assert over_sse == sent and over_ws == sent  # all 31 types, payloads intact, over both
