"""Gateway batch publish (validate + verify + redact + store + ack) beside the machine's Ed25519 bound.

ARCHITECTURE.md §7 sets the bar against the cost no design avoids: every
envelope's signature is verified, so the gateway tier can publish at most as
many envelopes per second as this machine verifies signatures on all cores.
The baseline verifies the very envelopes the gateways are sent, on one thread
per core (``cryptography`` releases the GIL), in the same run.

The measured side is the shape that ships: gateway *processes* (the chart runs
two replicas) on a real nats-server with ``sync_interval: always``, fed
pre-encoded ``POST /v1/envelopes:batch`` bodies over HTTP on loopback, one
client per replica, each with its own agents so the feeds are independent.
One replica is measured too, and raw nats-py ``js.publish_async`` of the same
bytes is printed beside it for reference (the store's own limit).

    .venv/bin/python bench/bench_gateway.py [--messages 4000] [--batch 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nats
from figures import Figure, at_least, report

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter, signature_valid
from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess
from chorus_common.signing import AgentKey

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
REPLICAS = 2  # the chart's default


def signed(writer: FeedWriter, n: int) -> list[Envelope]:
    payload = SAMPLE_PAYLOADS[MessageType.TASK_PROGRESS]
    return [
        writer.seal(
            Envelope(type=MessageType.TASK_PROGRESS, sender=writer.agent_id, payload=payload)
        )
        for _ in range(n)
    ]


def verification_bound(envs: list[Envelope], public_key: str, with_digest: bool) -> float:
    """Signatures verified per second on all cores, over digests computed beforehand (the
    primitive's bound, the bar's baseline) or computed as part of each check."""
    cores = os.cpu_count() or 1
    size = -(-len(envs) // cores)
    digests = [env.digest() for env in envs]
    chunks = [
        list(zip(envs[i : i + size], digests[i : i + size], strict=True))
        for i in range(0, len(envs), size)
    ]

    def verify(chunk: list[tuple[Envelope, str]]) -> None:
        for env, digest in chunk:
            assert signature_valid(env, public_key, env.digest() if with_digest else digest)

    with ThreadPoolExecutor(cores) as pool:
        started = time.perf_counter()
        list(pool.map(verify, chunks))
        return len(envs) / (time.perf_counter() - started)


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


async def post_all(client: httpx.AsyncClient, bodies: list[bytes]) -> None:
    for body in bodies:
        resp = await client.post("/v1/envelopes:batch", content=body)
        resp.raise_for_status()
        assert resp.json()["rejected"] == 0, resp.text[:500]


async def gateway_round(
    clients: list[httpx.AsyncClient], feeds: list[list[Envelope]], batch: int
) -> float:
    """Every client posts its own feed's batches, one after another, all clients at once."""
    bodies = [
        [
            json.dumps([e.model_dump(mode="json") for e in envs[i : i + batch]]).encode()
            for i in range(0, len(envs), batch)
        ]
        for envs in feeds
    ]
    started = time.perf_counter()
    await asyncio.gather(*(post_all(c, b) for c, b in zip(clients, bodies, strict=True)))
    return sum(len(envs) for envs in feeds) / (time.perf_counter() - started)


def start_gateway(nats_url: str, base: Path, name: str) -> ServiceProcess:
    return ServiceProcess(
        instance=name,
        service="pubsub-gateway",
        port=free_port(),
        env={
            "CHORUS_NATS_URL": nats_url,
            "CHORUS_NODE_ID": name,
            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
            "CHORUS_ADMIN_TOKEN": TOKEN,
            "CHORUS_GATEWAY_RATE_PER_SECOND": "1e9",
            "CHORUS_GATEWAY_RATE_BURST": "1000000000",
            "CHORUS_DATA_DIR": str(base / name),
        },
        log_path=base / f"{name}.log",
    ).start()


async def main(messages: int, batch: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = NatsServer(store_dir=base / "nats").start()
        procs = [start_gateway(server.url, base, f"gateway-{i + 1}") for i in range(REPLICAS)]
        try:
            deadline = time.monotonic() + 60
            for proc in procs:
                while not proc.is_ready():
                    assert proc.running and time.monotonic() < deadline, proc.log_tail()
                    await asyncio.sleep(0.1)
            clients = [httpx.AsyncClient(base_url=p.url, headers=AUTH, timeout=60) for p in procs]
            bound: list[float] = []
            bound_digest: list[float] = []
            one: list[float] = []
            two: list[float] = []
            raw: list[float] = []
            for r in range(rounds + 1):
                feeds: list[list[Envelope]] = []
                for c in range(REPLICAS):
                    key = AgentKey.generate()
                    agent = f"bench-{r}-{c}"
                    resp = await clients[0].post(
                        f"/v1/agents/{agent}/keys", json={"public_key": key.public_key}
                    )
                    resp.raise_for_status()
                    feeds.append(signed(FeedWriter(agent, key), messages))
                solo_key = AgentKey.generate()
                solo = f"bench-{r}-solo"
                await clients[0].post(
                    f"/v1/agents/{solo}/keys", json={"public_key": solo_key.public_key}
                )
                solo_feed = signed(FeedWriter(solo, solo_key), messages)
                b = await asyncio.to_thread(
                    verification_bound, solo_feed, solo_key.public_key, False
                )
                bd = await asyncio.to_thread(
                    verification_bound, solo_feed, solo_key.public_key, True
                )
                g1 = await gateway_round(clients[:1], [solo_feed], batch)
                g2 = await gateway_round(clients, feeds, batch)
                j = await raw_round(
                    server.url, signed(FeedWriter(solo + "-raw", solo_key), messages)
                )
                if r > 0:  # round 0 warms every path
                    bound.append(b)
                    bound_digest.append(bd)
                    one.append(g1)
                    two.append(g2)
                    raw.append(j)
            for c in clients:
                await c.aclose()
        finally:
            for proc in procs:
                proc.terminate()
            server.kill()
    bound_m, digest_m, one_m, two_m, raw_m = (
        statistics.median(x) for x in (bound, bound_digest, one, two, raw)
    )
    cores = os.cpu_count() or 1
    conditions = (
        f"{messages} signed task_progress per feed x {rounds} rounds, batches of {batch}, "
        f"fsync always, {cores} cores shared by nats-server, the gateways and the clients"
    )
    bound_name = f"Ed25519 verification on {cores} cores (same envelopes, digests given)"
    report(
        f"gateway: {conditions}",
        [
            Figure(
                "gateway",
                f"POST /v1/envelopes:batch, {REPLICAS} replicas (the chart's)",
                two_m,
                "msg/s",
                bound_name,
                bound_m,
                at_least(0.5),
                conditions,
            ),
            Figure(
                "gateway",
                "POST /v1/envelopes:batch, 1 replica",
                one_m,
                "msg/s",
                bound_name,
                bound_m,
                None,
                conditions,
            ),
            Figure(
                "gateway",
                f"POST /v1/envelopes:batch, {REPLICAS} replicas, beside digest + verification",
                two_m,
                "msg/s",
                f"canonical digest and Ed25519 check on {cores} cores (same envelopes)",
                digest_m,
                None,
                conditions,
            ),
            Figure(
                "gateway",
                "POST /v1/envelopes:batch, 1 replica, beside the store alone",
                one_m,
                "msg/s",
                "raw nats-py js.publish_async (same bytes)",
                raw_m,
                None,
                conditions,
            ),
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.batch, args.rounds))
