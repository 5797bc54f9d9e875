"""Subscriptions cannot tap the bus or stall anyone; slowloris connections are closed.

Every test runs a real gateway on a real nats-server; slow clients are raw
sockets with a tiny receive buffer that stop reading, as an attacker's would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets

from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.testing import serve_in_process, wait_until
from chorus_gateway import GatewayService
from chorus_gateway.settings import GatewaySettings

from .conftest import ADMIN, as_json

FORBIDDEN = [">", "_INBOX.>", "$JS.>", "$KV.>", "*.>", "chorus.svc.>", "chorus.dht.rpc.>"]
FORBIDDEN += ["chorus.election.>", "chorus.backbeat.>", "$JS.API.STREAM.INFO.CHORUS_EVENTS"]


@contextlib.asynccontextmanager
async def running_gateway(
    make_settings: Callable[..., ChorusSettings], **overrides: Any
) -> AsyncIterator[tuple[GatewayService, httpx.AsyncClient]]:
    service = GatewayService(make_settings(GatewaySettings, **overrides))
    async with (
        serve_in_process(service) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=20) as client,
    ):
        yield service, client


def _gauge(service: GatewayService, transport: str) -> float:
    return float(service.gateway_metrics.subscribers.labels(transport)._value.get())


def _slow_consumers(service: GatewayService, transport: str) -> float:
    return float(service.gateway_metrics.slow_consumers.labels(transport)._value.get())


def _stalled_client(host: str, port: int, request: bytes) -> socket.socket:
    """A client with a 4 KiB receive buffer that sends ``request`` and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.sendall(request)
    return sock


def _sse_request(host: str, port: int, subject: str) -> bytes:
    return (
        f"GET /v1/stream?subject={subject} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {ADMIN['Authorization']}\r\n\r\n"
    ).encode()


def _ws_request(host: str, port: int, subject: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /v1/ws?subject={subject} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: {ADMIN['Authorization']}\r\n\r\n"
    ).encode()


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _big(n: int) -> list[Envelope]:
    """Envelopes of ~32 KiB, so a few hundred fill any socket buffer a stalled client has."""
    payload = {**SAMPLE_PAYLOADS[MessageType.TASK_ANNOUNCEMENT], "labels": ["x" * 1000] * 32}
    return [
        Envelope(type=MessageType.TASK_ANNOUNCEMENT, sender="load", payload=payload)
        for _ in range(n)
    ]


@pytest.mark.parametrize("subject", FORBIDDEN)
async def test_internal_subjects_are_refused_over_sse_and_websocket(
    make_settings: Callable[..., ChorusSettings], subject: str
) -> None:
    async with running_gateway(make_settings) as (service, client):
        resp = await client.get("/v1/stream", params={"subject": subject})
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["code"] == "subject_invalid"
        if "$" not in subject:  # '$' is not a token character at all
            assert "chorus.coord.>" in problem["detail"]
            assert problem["allowed"][0] == "chorus.coord.>"
        url = str(client.base_url).replace("http://", "ws://") + "/v1/ws"
        async with websockets.connect(
            url + "?" + httpx.QueryParams(subject=subject).__str__()
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert _gauge(service, "sse") == 0 and _gauge(service, "ws") == 0


async def test_chorus_wildcard_streams_envelopes_and_nothing_internal(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    """``chorus.>`` is the default filter: it must not carry service, DHT or election traffic."""
    async with running_gateway(make_settings) as (service, client):
        seen: list[str] = []
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with client.stream("GET", "/v1/stream", params={"subject": "chorus.>"}) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if line.startswith(": subscribed"):
                        subscribed.set()
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:])["subject"])
                        if seen[-1].startswith("chorus.coord."):
                            return

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(subscribed.wait(), 5)
        nc = service.bus.client
        for internal in (
            "chorus.svc.licensing.lease-grant",
            "chorus.dht.rpc.node-1",
            "chorus.election.heartbeat",
            "chorus.backbeat.status.agent-1",
        ):
            await nc.publish(internal, b'{"secret": "lease"}')
        await nc.flush()
        env = Envelope(
            type=MessageType.TASK_ANNOUNCEMENT,
            sender="load",
            payload=SAMPLE_PAYLOADS[MessageType.TASK_ANNOUNCEMENT],
        )
        await service.bus.publish(env)
        await asyncio.wait_for(listener, 10)
        assert seen == ["chorus.coord.task_announcement"]


async def test_stalled_sse_and_websocket_clients_are_dropped_while_a_reader_gets_everything(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    async with running_gateway(make_settings, gateway_subscriber_queue=100) as (service, client):
        host, port = client.base_url.host, client.base_url.port
        assert port is not None
        subject = "chorus.coord.>"
        stalled_sse = await asyncio.to_thread(
            _stalled_client, host, port, _sse_request(host, port, subject)
        )
        stalled_ws = await asyncio.to_thread(
            _stalled_client, host, port, _ws_request(host, port, subject)
        )
        received: list[str] = []
        reading = asyncio.Event()

        async def reader() -> None:
            async with client.stream("GET", "/v1/stream", params={"subject": subject}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith(": subscribed"):
                        reading.set()
                    if line.startswith("data: "):
                        received.append(json.loads(line[6:])["envelope"]["id"])
                    if line.startswith("event: error"):
                        raise AssertionError("the reading client was dropped")

        task = asyncio.create_task(reader())
        await asyncio.wait_for(reading.wait(), 5)
        await wait_until(
            lambda: _gauge(service, "sse") == 2 and _gauge(service, "ws") == 1,
            timeout=5,
            message="all three subscribed",
        )
        sent: list[str] = []
        for _ in range(10):  # ~13 MB in all, at the pace the reader takes it
            batch = _big(40)
            results = await service.bus.publish_many(batch)
            assert not any(isinstance(r, Exception) for r in results)
            sent += [e.id for e in batch]
            expected = len(sent) - 20
            await wait_until(
                lambda expected=expected: len(received) >= expected, timeout=20, interval=0.01
            )
        await wait_until(lambda: received == sent, timeout=20, message="reader got everything")
        await wait_until(
            lambda: _slow_consumers(service, "sse") == 1 and _slow_consumers(service, "ws") == 1,
            timeout=10,
            message="both stalled clients dropped",
        )
        # neither stays attached: the gateway aborts connections that do not read
        for sock in (stalled_sse, stalled_ws):
            await asyncio.to_thread(_read_until_closed, sock, 10)
            sock.close()
        await wait_until(
            lambda: _gauge(service, "sse") == 1 and _gauge(service, "ws") == 0,
            timeout=5,
            message="only the reader still attached",
        )
        # publishing through the gateway is unaffected
        env = Envelope(
            type=MessageType.TASK_ANNOUNCEMENT,
            sender="load",
            payload=SAMPLE_PAYLOADS[MessageType.TASK_ANNOUNCEMENT],
        )
        await service.bus.publish(env)
        await wait_until(lambda: received[-1:] == [env.id], timeout=5, message="still delivered")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_clients_that_fall_behind_are_told_why(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    """A client that pauses too long and reads again gets the reason: SSE error event, WS 1013."""
    async with running_gateway(make_settings, gateway_subscriber_queue=5) as (service, client):
        host, port = client.base_url.host, client.base_url.port
        assert port is not None
        subject = "chorus.coord.>"
        sse = await asyncio.to_thread(
            _stalled_client, host, port, _sse_request(host, port, subject)
        )
        url = str(client.base_url).replace("http://", "ws://") + f"/v1/ws?subject={subject}"
        # the client library stops reading the socket once 4 frames wait unread
        async with websockets.connect(url, max_queue=4, max_size=None) as ws:
            await wait_until(
                lambda: _gauge(service, "sse") == 1 and _gauge(service, "ws") == 1, timeout=5
            )
            for _ in range(20):
                await service.bus.publish_many(_big(20))
                if _slow_consumers(service, "sse") and _slow_consumers(service, "ws"):
                    break
            assert _slow_consumers(service, "sse") == 1 and _slow_consumers(service, "ws") == 1
            # both read again at once, within the grace the gateway gives a dropped client
            tail = await asyncio.to_thread(_read_until_closed_or_error, sse)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        sse.close()
        assert b"event: error" in tail and b"slow consumer" in tail
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert "slow consumer" in closed.value.rcvd.reason


def _read_until_closed_or_error(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"event: error" not in data[-4096:]:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        data += sock.recv(4096)  # the rest of the error event
    return data[-8192:]


async def test_slowloris_connections_are_closed_after_the_header_timeout(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    async with running_gateway(make_settings, http_header_timeout_seconds=1.0) as (_, client):
        host, port = client.base_url.host, client.base_url.port
        assert port is not None

        def slowloris() -> tuple[bytes, float]:
            """Half a request, then a header byte every 0.2 s, as long as the server lets it."""
            sock = socket.create_connection((host, port))
            started = time.monotonic()
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sock.settimeout(0.2)
            answer = b""
            try:
                while time.monotonic() - started < 8:
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        sock.sendall(b"a")
                        continue
                    if not chunk:
                        break
                    answer += chunk
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                sock.close()
            return answer, time.monotonic() - started

        def silent() -> bytes:
            """Connects and says nothing."""
            with socket.create_connection((host, port)) as sock:
                return _read_until_closed(sock, 8)

        (answer, held), quiet = await asyncio.gather(
            asyncio.to_thread(slowloris), asyncio.to_thread(silent)
        )
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert held < 8  # closed by the server, not by the client giving up
        assert quiet == b""
        # complete requests are served as before, on a kept-alive connection too
        for _ in range(2):
            assert (await client.get("/health/live")).status_code == 200


async def test_keepalive_connection_gets_the_deadline_again_for_its_next_request(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    async with running_gateway(make_settings, http_header_timeout_seconds=1.0) as (_, client):
        host, port = client.base_url.host, client.base_url.port
        assert port is not None

        def one_good_then_slow() -> bytes:
            with socket.create_connection((host, port)) as sock:
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.settimeout(5)
                first = b""
                while b"alive" not in first:
                    first += sock.recv(65536)
                assert first.startswith(b"HTTP/1.1 200"), first
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # never finished
                return _read_until_closed(sock, 8)

        assert (await asyncio.to_thread(one_good_then_slow)).startswith(b"HTTP/1.1 408")


async def test_feed_verify_is_paged_and_resumes_from_what_it_verified(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    """Each call reads a bounded slice of the stream; the next continues, here or elsewhere."""
    from chorus_common.feeds import FeedWriter
    from chorus_common.signing import AgentKey

    async with running_gateway(make_settings, gateway_verify_scan_max=10) as (service, client):
        writers: dict[str, FeedWriter] = {}
        for agent in ("agent-a", "agent-b"):
            key = AgentKey.generate()
            resp = await client.post(
                f"/v1/agents/{agent}/keys", json={"public_key": key.public_key}
            )
            assert resp.status_code == 201, resp.text
            writers[agent] = FeedWriter(agent, key)

        def envelope(agent: str) -> dict[str, Any]:
            env = Envelope(
                type=MessageType.STATUS_UPDATE,
                sender=agent,
                payload=SAMPLE_PAYLOADS[MessageType.STATUS_UPDATE],
            )
            sealed: dict[str, Any] = as_json(writers[agent].seal(env))
            return sealed

        batch = [envelope(a) for _ in range(12) for a in ("agent-a", "agent-b")]
        assert (await client.post("/v1/envelopes:batch", json=batch)).json()["accepted"] == 24

        pages: list[dict[str, Any]] = []
        while not (pages and pages[-1]["complete"]):
            page = (await client.get("/v1/feeds/agent-a/verify")).json()
            assert page["scanned"] <= 10
            pages.append(page)
        stored = (await service.bus.jetstream.stream_info("CHORUS_EVENTS")).state.last_seq
        assert [p["scanned"] for p in pages] == [10, 10, stored - 20]  # 10 per call
        assert pages[0]["length"] < 12 and pages[-1]["length"] == 12
        assert pages[-1]["ok"] and pages[-1]["issues"] == []
        again = (await client.get("/v1/feeds/agent-a/verify")).json()
        assert again["scanned"] == 0 and again["length"] == 12  # nothing new: nothing read

        # a defect planted after the verified prefix is found by the next call
        forged = Envelope.model_validate(envelope("agent-a"))
        forged = forged.model_copy(
            update={"sig": AgentKey.generate().sign(bytes.fromhex(forged.digest()))}
        )
        await service.bus.publish(forged)
        report = (await client.get("/v1/feeds/agent-a/verify")).json()
        assert report["scanned"] == 1 and not report["ok"]
        assert [i["kind"] for i in report["issues"]] == ["bad_signature"]

        # limit bounds the entries per call; `next` lets a replica without the cache go on
        first: dict[str, Any] = {"length": 0}
        while first["length"] == 0:
            first = (await client.get("/v1/feeds/agent-b/verify", params={"limit": 2})).json()
        assert first["length"] == 2 and not first["complete"]
        service.auditor._audits.clear()  # as if the next page went to another replica
        cursor, length = first["next"], first["length"]
        while True:
            page = (await client.get("/v1/feeds/agent-b/verify", params={"after": cursor})).json()
            assert page["length"] >= length
            cursor, length = page["next"], page["length"]
            if page["complete"]:
                break
        assert page["ok"] and length == 12

        bad = await client.get("/v1/feeds/agent-a/verify", params={"after": "not-a-cursor"})
        assert bad.status_code == 422 and "next" in bad.json()["detail"]
