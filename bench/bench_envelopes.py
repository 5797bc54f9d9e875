"""Typed envelope publish → consume through chorus_common, beside raw nats-py and FastStream.

All three sides move the same pydantic envelopes through the same JetStream
stream on the same freshly started nats-server:

- raw nats-py publishes ``model_dump_json()`` bytes with ``js.publish_async``
  and consumes with a pull subscription and ``model_validate_json``;
- FastStream (its NATS broker, as its documentation shows it) publishes each
  typed envelope with ``broker.publish(..., stream=)`` and consumes with a
  typed pull subscriber (logging off, so it is not charged for log lines);
- ``chorus_common`` uses ``Bus.publish_many`` and ``Bus.subscribe`` (routing,
  Nats-Msg-Id, traceparent, metrics, typed decode, ack-after-handler).
  ``publish_many`` sends JetStream atomic batches (one fsync and one ack per
  batch of up to 1000, as durable as an ack per message); the other two sides
  publish the way their documentation shows, with an ack per message.

Rounds alternate so drift on a noisy machine hits every side; the report is the
median of each and the ratios.

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
from faststream.nats import JStream, NatsBroker, PullSub
from figures import Figure, at_least, report
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


async def faststream_round(url: str, envs: list[Envelope]) -> float:
    broker = NatsBroker(url, logger=None)
    done = asyncio.Event()
    got = 0

    @broker.subscriber(
        SUBJECT,
        stream=JStream("CHORUS_EVENTS", declare=False),
        pull_sub=PullSub(batch_size=256),
    )
    async def handle(env: Envelope) -> None:
        nonlocal got
        got += 1
        if got == len(envs):
            done.set()

    await broker.connect()
    await nats_purge(url)
    started = time.perf_counter()
    for env in envs:
        await broker.publish(env, SUBJECT, stream="CHORUS_EVENTS", headers={"Nats-Msg-Id": env.id})
    await broker.start()
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    await broker.stop()
    return len(envs) / elapsed


async def nats_purge(url: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().purge_stream("CHORUS_EVENTS")
    await nc.close()


async def chorus_round(url: str, envs: list[Envelope]) -> float:
    bus = Bus(ChorusSettings(nats_url=url), "bench", metrics=BusMetrics(CollectorRegistry()))
    await bus.connect(timeout=10)
    await bus.jetstream.purge_stream("CHORUS_EVENTS")
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
            raw: list[float] = []
            fast: list[float] = []
            ours: list[float] = []
            await raw_round(server.url, make_envelopes(200))  # warm-up every path
            await faststream_round(server.url, make_envelopes(200))
            await chorus_round(server.url, make_envelopes(200))
            for _ in range(rounds):
                raw.append(await raw_round(server.url, make_envelopes(messages)))
                fast.append(await faststream_round(server.url, make_envelopes(messages)))
                ours.append(await chorus_round(server.url, make_envelopes(messages)))
        finally:
            server.kill()
    raw_m, fast_m, ours_m = (statistics.median(v) for v in (raw, fast, ours))
    fsync = "2m (lazy)" if lazy else "always"
    conditions = f"{messages} task_claim envelopes x {rounds} rounds, fsync {fsync}"
    name = "Bus publish_many + subscribe"
    report(
        f"envelopes: {conditions}",
        [
            Figure(
                "envelopes", name, ours_m, "msg/s", "raw nats-py", raw_m, at_least(0.9), conditions
            ),
            Figure(
                "envelopes", name, ours_m, "msg/s", "FastStream", fast_m, at_least(5.0), conditions
            ),
        ],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lazy-fsync", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds, args.lazy_fsync))
