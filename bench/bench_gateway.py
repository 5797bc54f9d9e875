"""Gateway batch publish (validate + verify + redact + JetStream ack) beside raw JetStream publishing.

Both sides publish the same signed envelope bytes to the same freshly started
nats-server in one run: the baseline with nats-py ``js.publish_async`` and
awaited acks, the measured side through ``POST /v1/envelopes:batch`` of a real
gateway over HTTP on loopback. Rounds alternate; medians and the ratio are
printed.

    .venv/bin/python bench/bench_gateway.py [--messages 4000] [--batch 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import nats
from figures import Figure, at_least, report

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter
from chorus_common.natsserver import NatsServer
from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process
from chorus_gateway import GatewayService
from chorus_gateway.settings import GatewaySettings

AUTH = {"Authorization": "Bearer bench-token"}


def signed(writer: FeedWriter, n: int) -> list[Envelope]:
    payload = SAMPLE_PAYLOADS[MessageType.TASK_PROGRESS]
    return [
        writer.seal(
            Envelope(type=MessageType.TASK_PROGRESS, sender=writer.agent_id, payload=payload)
        )
        for _ in range(n)
    ]


async def raw_round(url: str, envs: list[Envelope]) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    data = [(e.id, e.encode()) for e in envs]
    started = time.perf_counter()
    futures = [
        await js.publish_async("chorus.coord.task_progress", body, headers={"Nats-Msg-Id": i})
        for i, body in data
    ]
    for f in futures:
        await f
    elapsed = time.perf_counter() - started
    await nc.close()
    return len(envs) / elapsed


async def gateway_round(client: httpx.AsyncClient, envs: list[Envelope], batch: int) -> float:
    bodies = [
        [e.model_dump(mode="json") for e in envs[i : i + batch]] for i in range(0, len(envs), batch)
    ]
    started = time.perf_counter()
    for body in bodies:
        resp = await client.post("/v1/envelopes:batch", json=body)
        resp.raise_for_status()
        assert resp.json()["rejected"] == 0, resp.text[:500]
    return len(envs) / (time.perf_counter() - started)


async def main(messages: int, batch: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "nats").start()
        settings = GatewaySettings(
            nats_url=server.url,
            http_port=0,
            admin_token="bench-token",
            license_required=False,  # no licensing service here
            gateway_rate_per_second=1e9,
            gateway_rate_burst=10**9,
            data_dir=Path(tmp) / "data",
        )
        service = GatewayService(settings)
        try:
            async with (
                serve_in_process(service) as url,
                httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as client,
            ):
                raw: list[float] = []
                ours: list[float] = []
                for r in range(rounds + 1):
                    key = AgentKey.generate()
                    agent = f"bench-{r}"
                    await client.post(
                        f"/v1/agents/{agent}/keys", json={"public_key": key.public_key}
                    )
                    writer = FeedWriter(agent, key)
                    envs = signed(writer, messages)
                    other = signed(FeedWriter(agent + "-raw", key), messages)
                    g = await gateway_round(client, envs, batch)
                    b = await raw_round(server.url, other)
                    if r > 0:  # round 0 warms both paths
                        ours.append(g)
                        raw.append(b)
        finally:
            server.kill()
    raw_m, ours_m = statistics.median(raw), statistics.median(ours)
    conditions = (
        f"{messages} signed task_progress x {rounds} rounds, batches of {batch}, fsync always"
    )
    report(
        f"gateway: {conditions}",
        [
            Figure(
                "gateway",
                "POST /v1/envelopes:batch",
                ours_m,
                "msg/s",
                "raw nats-py js.publish_async (same bytes)",
                raw_m,
                at_least(0.5),
                conditions,
            )
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.batch, args.rounds))
