"""Batch publish latency with 700 idle subscribers attached beside none, against a real gateway.

One nats-server (monitoring port on) and one gateway process. Phase one
publishes 100-envelope batches through ``POST /v1/envelopes:batch`` with no
subscriber; phase two opens 500 SSE and 200 WebSocket subscriptions to
``chorus.>`` that connect and never read a byte (an attacker's, needing no
token with public reads) and publishes the same number of batches. Throughout,
``/health/ready`` is probed every 0.25 s and must answer within 1 s; at the
end nats-server's ``/varz`` says whether any connection (the gateway's is the
one that receives every message) was ever a slow consumer.

    .venv/bin/python bench/bench_subscribers.py [--batches 40] [--sse 500] [--ws 200] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from figures import Figure, at_least, at_most, report

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter
from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess
from chorus_common.signing import AgentKey

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BATCH = 100


def idle_subscriber(host: str, port: int, websocket: bool) -> socket.socket:
    """Connect, ask for every envelope subject, and never read."""
    sock = socket.create_connection((host, port))
    if websocket:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /v1/ws?subject=chorus.> HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    else:
        request = f"GET /v1/stream?subject=chorus.> HTTP/1.1\r\nHost: {host}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def gauge(client: httpx.AsyncClient, name: str, transport: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + "{") and f'transport="{transport}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def phase(
    client: httpx.AsyncClient, batches: list[list[dict[str, object]]]
) -> tuple[list[float], int, int]:
    """Publish ``batches`` one after another; (latencies, probes answered in 1 s, probes)."""
    answered = probes = 0
    done = asyncio.Event()

    async def probe() -> None:
        nonlocal answered, probes
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=1.0) as prober:
            while not done.is_set():
                probes += 1
                started = time.perf_counter()
                try:
                    resp = await prober.get("/health/ready")
                    if resp.status_code == 200 and time.perf_counter() - started <= 1.0:
                        answered += 1
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)

    prober = asyncio.create_task(probe())
    latencies: list[float] = []
    for body in batches:
        started = time.perf_counter()
        resp = await client.post("/v1/envelopes:batch", json=body)
        latencies.append(time.perf_counter() - started)
        resp.raise_for_status()
        assert resp.json()["rejected"] == 0, resp.text[:300]
    done.set()
    await prober
    return latencies, answered, probes


async def main(batches: int, sse: int, ws: int, verbose: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        monitor = free_port()
        server = NatsServer(
            store_dir=Path(tmp) / "nats", extra_config=f"http_port: {monitor}"
        ).start()
        proc = ServiceProcess(
            instance="pubsub-gateway",
            service="pubsub-gateway",
            port=free_port(),
            env={
                "CHORUS_NATS_URL": server.url,
                "CHORUS_LICENSE_REQUIRED": "false",
                "CHORUS_PUBLIC_READ": "true",
                "CHORUS_ADMIN_TOKEN": TOKEN,
                "CHORUS_GATEWAY_RATE_PER_SECOND": "1e9",
                "CHORUS_GATEWAY_RATE_BURST": "1000000000",
                "CHORUS_HEALTH_INTERVAL_SECONDS": "1",
                "CHORUS_DATA_DIR": str(Path(tmp) / "data"),
            },
            log_path=Path(tmp) / "gateway.log",
        ).start()
        sockets: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 60
            while not proc.is_ready():
                assert proc.running and time.monotonic() < deadline, proc.log_tail()
                await asyncio.sleep(0.1)
            async with httpx.AsyncClient(base_url=proc.url, headers=AUTH, timeout=60) as client:
                key = AgentKey.generate()
                await client.post("/v1/agents/bench/keys", json={"public_key": key.public_key})
                writer = FeedWriter("bench", key)
                payload = SAMPLE_PAYLOADS[MessageType.TASK_PROGRESS]

                def bodies(n: int) -> list[list[dict[str, object]]]:
                    return [
                        [
                            writer.seal(
                                Envelope(
                                    type=MessageType.TASK_PROGRESS, sender="bench", payload=payload
                                )
                            ).model_dump(mode="json")
                            for _ in range(BATCH)
                        ]
                        for _ in range(n)
                    ]

                await phase(client, bodies(3))  # warm-up
                quiet, quiet_ok, quiet_probes = await phase(client, bodies(batches))

                host, port = "127.0.0.1", proc.port
                for i in range(sse + ws):
                    sockets.append(await asyncio.to_thread(idle_subscriber, host, port, i >= sse))
                deadline = time.monotonic() + 60
                while (await gauge(client, "chorus_pubsub_active_subscribers", "sse")) < sse or (
                    await gauge(client, "chorus_pubsub_active_subscribers", "ws")
                ) < ws:
                    assert time.monotonic() < deadline, "idle subscribers did not all attach"
                    await asyncio.sleep(0.2)
                loaded, loaded_ok, loaded_probes = await phase(client, bodies(batches))
                dropped = sum(
                    [
                        await gauge(client, "chorus_pubsub_slow_consumers_total", t)
                        for t in ("sse", "ws")
                    ]
                )
            async with httpx.AsyncClient(timeout=5) as monitoring:
                varz = (await monitoring.get(f"http://127.0.0.1:{monitor}/varz")).json()
            slow = int(varz.get("slow_consumers", 0))
        finally:
            for sock in sockets:
                sock.close()
            proc.terminate()
            server.kill()

    conditions = (
        f"{batches} batches of {BATCH} signed task_progress, one at a time; "
        f"{sse} SSE + {ws} WebSocket subscribers to chorus.> that never read; "
        f"{int(dropped)} of them dropped as slow consumers"
    )
    if verbose:
        print("quiet", [round(x * 1000) for x in quiet])
        print("loaded", [round(x * 1000) for x in loaded])
    p50_q, p99_q = statistics.median(quiet), percentile(quiet, 0.99)
    p50_l, p99_l = statistics.median(loaded), percentile(loaded, 0.99)
    report(
        f"subscribers: {conditions}",
        [
            Figure(
                "subscribers",
                "batch p50, idle subscribers",
                p50_l * 1000,
                "ms",
                "no subscribers",
                p50_q * 1000,
                at_most(2.0, on="ratio"),
                conditions,
            ),
            Figure(
                "subscribers",
                "batch p99, idle subscribers",
                p99_l * 1000,
                "ms",
                "no subscribers",
                p99_q * 1000,
                at_most(2.0, on="ratio"),
                conditions,
            ),
            Figure(
                "subscribers",
                "/health/ready answered in 1 s, idle subscribers",
                loaded_ok,
                "probes",
                "probes sent",
                loaded_probes,
                at_least(1.0),
                f"no subscribers: {quiet_ok} of {quiet_probes}",
            ),
            Figure(
                "subscribers",
                "nats-server slow consumers",
                slow,
                "events",
                "",
                None,
                at_most(0),
                "varz slow_consumers after both phases",
            ),
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--sse", type=int, default=500)
    parser.add_argument("--ws", type=int, default=200)
    parser.add_argument("--verbose", action="store_true", help="print every batch's latency")
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.sse, args.ws, args.verbose))
