"""Coordinator throughput with 20 agents: tasks assigned per second and claim-to-ack latency.

A real coordinator (in process, HTTP on loopback) on a fresh nats-server;
20 SDK agents. Part 1: the leader's scored assignment of N announced tasks,
timed from the first announcement to the last allocation. Part 2: agents
claim tasks themselves through the SDK (NATS request/reply, compare-and-set in
KV); claim-to-ack latency p50/p99 is printed.

    .venv/bin/python bench/bench_coordinator.py [--tasks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import nats
from figures import Figure, percentile, report
from nats.js.errors import KeyWrongLastSequenceError

from chorus_common.agent import Agent
from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.errors import ConflictError
from chorus_common.natsserver import NatsServer
from chorus_common.testing import serve_in_process
from chorus_coordinator import CoordinatorService
from chorus_coordinator.service import CoordinatorSettings

ADMIN = {"Authorization": "Bearer bench"}


async def raw_kv_race(url: str, n: int, racers: int = 20) -> list[float]:
    """The floor under a claim: 20 racers doing a bare KV create per task with nats-py."""
    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket="bench-race", history=1)
    latencies: list[float] = []

    async def racer(r: int) -> None:
        for i in range(n):
            t0 = time.perf_counter()
            with contextlib.suppress(KeyWrongLastSequenceError):
                await kv.create(f"race-{i}", f"racer-{r}".encode())
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(racer(r) for r in range(racers)))
    await nc.close()
    return latencies


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp) / "nats").start()
        try:
            settings = CoordinatorSettings(
                nats_url=server.url,
                http_port=0,
                admin_token="bench",
                license_required=False,  # no licensing service here
                node_id="c1",
                data_dir=Path(tmp) / "c",
                coordinator_assign_interval_seconds=0.05,
                coordinator_lease_ttl_seconds=1.0,
                log_level="WARNING",
            )
            service = CoordinatorService(settings)
            bus = Bus(ChorusSettings(nats_url=server.url), "bench-agents")
            await bus.connect(timeout=10)
            async with (
                serve_in_process(service) as url,
                httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
            ):
                agents = [
                    Agent(bus, f"a{i}", capabilities=["python"], max_tasks=n) for i in range(20)
                ]
                for agent in agents:
                    await agent.start()
                await service.lease.wait_until_leader(10)
                started = time.perf_counter()
                for i in range(n):
                    await client.post(
                        "/v1/tasks",
                        json={
                            "id": f"auto-{i}",
                            "repository": "r",
                            "title": f"t{i}",
                            "required_capabilities": ["python"],
                        },
                    )
                while True:
                    tasks = (await client.get("/v1/tasks", params={"status": "claimed"})).json()[
                        "tasks"
                    ]
                    if sum(1 for t in tasks if t["id"].startswith("auto-")) >= n:
                        break
                    await asyncio.sleep(0.05)
                assign_rate = n / (time.perf_counter() - started)

                service.lease.eligible = lambda: False  # stop auto-assignment for the claim race
                await service.lease.stop(release=True)
                for i in range(n):
                    await client.post(
                        "/v1/tasks", json={"id": f"race-{i}", "repository": "r", "title": f"r{i}"}
                    )
                latencies: list[float] = []

                async def racer(agent: Agent) -> None:
                    for i in range(n):
                        t0 = time.perf_counter()
                        with contextlib.suppress(ConflictError):
                            await agent.claim(f"race-{i}")
                        latencies.append(time.perf_counter() - t0)

                await asyncio.gather(*(racer(a) for a in agents))
                for agent in agents:
                    await agent.stop()
            await bus.close()
            raw = await raw_kv_race(server.url, n)
        finally:
            server.kill()
    conditions = f"20 agents, {n} tasks, fsync always"
    report(
        f"coordinator: {conditions}",
        [
            Figure("coordinator", "scored assignment by the leader", assign_rate, "tasks/s"),
            Figure(
                "coordinator",
                "claim-to-ack p50 (SDK request/reply, CAS in KV)",
                statistics.median(latencies) * 1000,
                "ms",
                "bare nats-py KV create race",
                statistics.median(raw) * 1000,
                conditions=f"{len(latencies)} racing claims",
            ),
            Figure(
                "coordinator",
                "claim-to-ack p99 (SDK request/reply, CAS in KV)",
                percentile(latencies, 0.99) * 1000,
                "ms",
                "bare nats-py KV create race",
                percentile(raw, 0.99) * 1000,
                conditions=f"{len(latencies)} racing claims",
            ),
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    asyncio.run(main(parser.parse_args().tasks))
