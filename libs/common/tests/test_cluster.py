"""The bus on a real 3-node NATS JetStream cluster: R3 streams survive a node's SIGKILL."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from chorus_common.bus import Bus, Delivery
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import UnavailableError
from chorus_common.natsserver import NatsCluster
from chorus_common.testing import wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path / "cluster").start()
    try:
        yield c
    finally:
        c.kill()


def claim() -> Envelope:
    return Envelope(
        type=MessageType.TASK_CLAIM,
        sender="agent-1",
        payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
    )


async def _connect(url: str) -> Bus:
    bus = Bus(ChorusSettings(nats_url=url, js_replicas=3), "cluster-test")
    await bus.connect(timeout=30)  # waits out the JetStream meta-leader election
    return bus


@pytest.mark.slow
async def test_acknowledged_envelopes_survive_losing_a_node(cluster: NatsCluster) -> None:
    bus = await _connect(cluster.url)
    try:
        info = await bus.jetstream.stream_info("CHORUS_EVENTS")
        assert info.config.num_replicas == 3
        sent = [claim() for _ in range(30)]
        for env in sent[:15]:
            await bus.publish(env)
        cluster.servers[0].kill()  # SIGKILL one member

        async def publish_rest() -> bool:
            try:
                for env in sent[15:]:
                    await bus.publish(env, timeout=2)  # retries de-duplicate by Nats-Msg-Id
            except UnavailableError:
                return False
            return True

        await wait_until(
            publish_rest, timeout=30, interval=0.5, message="publishing after failover"
        )
        got: list[str] = []

        async def handle(env: Envelope, delivery: Delivery) -> None:
            got.append(env.id)

        await bus.subscribe("chorus.coord.task_claim", "survivor", handle)
        await wait_until(lambda: len(got) >= 30, timeout=30, message="all 30 read back")
        assert sorted(got) == sorted(e.id for e in sent)  # each exactly once

        cluster.servers[0].start()  # the node comes back and catches up
        await wait_until(
            lambda: _replica_current(bus), timeout=30, interval=0.5, message="replica caught up"
        )
    finally:
        await bus.close()


async def _replica_current(bus: Bus) -> bool:
    info = await bus.jetstream.stream_info("CHORUS_EVENTS")
    replicas = info.cluster.replicas if info.cluster and info.cluster.replicas else []
    return len(replicas) == 2 and all(r.current for r in replicas)


@pytest.mark.slow
async def test_batched_publish_many_loses_nothing_when_a_node_dies_mid_batch(
    cluster: NatsCluster,
) -> None:
    """Atomic batches on R3: a node SIGKILLed while batches fly; retries store each once."""
    bus = await _connect(cluster.url)
    try:
        sent = [claim() for _ in range(3000)]
        first = asyncio.create_task(bus.publish_many(sent, timeout=5))
        await asyncio.sleep(0.05)
        cluster.servers[0].kill()  # the node this client is connected to
        results = await first
        missing = [e for e, r in zip(sent, results, strict=True) if isinstance(r, Exception)]

        async def retry() -> bool:
            nonlocal missing
            again = await bus.publish_many(missing, timeout=5)
            missing = [e for e, r in zip(missing, again, strict=True) if isinstance(r, Exception)]
            return not missing

        await wait_until(retry, timeout=60, interval=0.5, message="every envelope acknowledged")
        seqs: set[int] = set()
        got: list[str] = []

        async def handle(env: Envelope, delivery: Delivery) -> None:
            got.append(env.id)
            seqs.add(delivery.stream_seq)

        await bus.subscribe("chorus.coord.task_claim", "batch-survivor", handle, batch=256)
        await wait_until(lambda: len(got) >= len(sent), timeout=60, message="all read back")
        assert sorted(got) == sorted(e.id for e in sent)  # each exactly once
    finally:
        await bus.close()
