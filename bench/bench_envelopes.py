"""Typed envelope publish → consume through chorus_common, beside raw nats-py.

Both sides move the same pydantic envelopes through the same JetStream stream
on the same freshly started nats-server: the baseline publishes
``model_dump_json()`` bytes with ``js.publish_async`` and consumes with a pull
subscription and ``model_validate_json``; the measured side uses
``Bus.publish_many`` and ``Bus.subscribe`` (routing, Nats-Msg-Id, traceparent,
metrics, typed decode, ack-after-handler).  Rounds alternate so drift on a
noisy machine hits both sides; the report is the median of each and the ratio.

    .venv/bin/python bench/bench_envelopes.py [--messages 5000] [--rounds 3] [--lazy-fsync]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry

from chorus_common.bus import Bus, Delivery
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.metrics import BusMetrics
from chorus_common.natsserver import NatsServer

SUBJECT = "chorus.coord.task_claim"


def make_envelopes(n: int) -> list[Envelope]:
    payload = SAMPLE_PAYLOADS[MessageType.TASK_CLAIM]
    return [
        Envelope(type=MessageType.TASK_CLAIM, sender="bench", payload=payload) for _ in range(n)
    ]


async def raw_round(url: str, envs: list[Envelope]) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.purge_stream("CHORUS_EVENTS")
    started = time.perf_counter()
    futures = [
        await js.publish_async(SUBJECT, e.model_dump_json().encode(), headers={"Nats-Msg-Id": e.id})
        for e in envs
    ]
    for f in futures:
        await f
    sub = await js.pull_subscribe(
        SUBJECT,
        durable=None,
        stream="CHORUS_EVENTS",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    got = 0
    while got < len(envs):
        for msg in await sub.fetch(256, timeout=5):
            Envelope.model_validate_json(msg.data)
            await msg.ack()
            got += 1
    elapsed = time.perf_counter() - started
    await nc.close()
    return len(envs) / elapsed


async def chorus_round(url: str, envs: list[Envelope]) -> float:
    bus = Bus(ChorusSettings(nats_url=url), "bench", metrics=BusMetrics(CollectorRegistry()))
    await bus.connect(timeout=10)
    await bus.js.purge_stream("CHORUS_EVENTS")
    done = asyncio.Event()
    got = 0

    async def handle(env: Envelope, delivery: Delivery) -> None:
        nonlocal got
        got += 1
        if got == len(envs):
            done.set()

    started = time.perf_counter()
    results = await bus.publish_many(envs)
    assert not any(isinstance(r, Exception) for r in results)
    await bus.subscribe(SUBJECT, None, handle, batch=256)
    await asyncio.wait_for(done.wait(), timeout=120)
    elapsed = time.perf_counter() - started
    await bus.close()
    return len(envs) / elapsed


async def main(messages: int, rounds: int, lazy: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(store_dir=Path(tmp), sync_always=not lazy).start()
        try:
            setup = Bus(ChorusSettings(nats_url=server.url), "bench-setup")
            await setup.connect(timeout=10)
            await setup.close()
            envs = make_envelopes(messages)
            raw: list[float] = []
            ours: list[float] = []
            await raw_round(server.url, envs[:200])  # warm-up both paths
            await chorus_round(server.url, make_envelopes(200))
            for _ in range(rounds):
                raw.append(await raw_round(server.url, make_envelopes(messages)))
                ours.append(await chorus_round(server.url, make_envelopes(messages)))
        finally:
            server.kill()
    raw_m, ours_m = statistics.median(raw), statistics.median(ours)
    fsync = "2m (lazy)" if lazy else "always"
    print(
        f"envelopes: {messages} task_claim per round, {rounds} rounds, JetStream sync_interval={fsync}"
    )
    print(f"  raw nats-py (publish_async + pull, same model): {raw_m:10.0f} msg/s")
    print(f"  chorus_common Bus (publish_many + subscribe):    {ours_m:10.0f} msg/s")
    print(f"  ratio chorus/raw: {ours_m / raw_m:.2f}  (target >= 0.60)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lazy-fsync", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds, args.lazy_fsync))
