"""FeedIndex against a real nats-server: the store grants each (agent, feed_seq) once."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from nats.js.api import PubAck

from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.registry import FeedIndex
from chorus_common.topology import BUCKET_FEEDS


def digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@pytest.fixture
async def two_indexes(nats_url: str) -> AsyncIterator[tuple[FeedIndex, FeedIndex]]:
    """Two connections, as two gateway replicas have."""
    buses = [Bus(ChorusSettings(nats_url=nats_url), name=f"replica-{n}") for n in range(2)]
    for bus in buses:
        await bus.connect(timeout=10)
    try:
        a, b = [await FeedIndex.open(bus.client, bus.jetstream) for bus in buses]
        yield a, b
    finally:
        for bus in buses:
            await bus.close()


async def test_racing_batches_get_each_seq_once(two_indexes: tuple[FeedIndex, FeedIndex]) -> None:
    a, b = two_indexes
    agents = [f"agent-{n}" for n in range(60)]

    async def race(agent: str) -> None:
        mine = [(seq, digest(agent, seq, "a")) for seq in range(1, 6)]
        theirs = [(seq, digest(agent, seq, "b")) for seq in range(1, 6)]
        got_a, got_b = await asyncio.gather(
            a.reserve(agent, mine, batch="ba"), b.reserve(agent, theirs, batch="bb")
        )
        for (seq, _), ra, rb in zip(mine, got_a, got_b, strict=True):
            assert ra.ours != rb.ours, (agent, seq)
            assert ra.entry.digest == rb.entry.digest  # both see the one the store kept
            stored = await a.get(agent, seq)
            assert stored is not None and stored.digest == ra.entry.digest

    await asyncio.gather(*(race(agent) for agent in agents))


async def test_a_batch_meeting_a_taken_seq_falls_back_to_one_by_one(
    two_indexes: tuple[FeedIndex, FeedIndex],
) -> None:
    a, b = two_indexes
    [taken] = await b.reserve("x", [(2, digest("b", 2))])
    got = await a.reserve("x", [(seq, digest("a", seq)) for seq in (1, 2, 3)], batch="b1")
    assert [r.ours for r in got] == [True, False, True]
    assert got[1].entry.digest == taken.entry.digest

    await a.release("x", 3, got[2].entry)
    assert await a.get("x", 3) is None
    [again] = await b.reserve("x", [(3, digest("b", 3))])
    assert again.ours  # a released seq can be reserved anew


async def test_acks_recorded_for_a_batch_or_one_entry_are_read_back(
    two_indexes: tuple[FeedIndex, FeedIndex],
) -> None:
    a, b = two_indexes
    got = await a.reserve("y", [(1, digest(1)), (2, digest(2))], batch="batch1")
    entry = await b.get("y", 1)
    assert entry is not None and not entry.stored and entry.written is not None
    await a.record_acks("y", "batch1", "CHORUS_EVENTS", {1: (10, None)})  # 2's publish failed
    one, two = await b.get("y", 1), await b.get("y", 2)
    assert one is not None and (one.stream, one.seq) == ("CHORUS_EVENTS", 10)
    assert two is not None and not two.stored

    done = await b.complete("y", 2, two, "CHORUS_EVENTS", 11, {"aws_key": 1})
    assert done.seq == 11
    later = await a.complete("y", 2, got[1].entry, "CHORUS_EVENTS", 12, None)
    assert later.seq == 11  # the first ack recorded stays the answer
    [three, four] = await a.complete_many(
        "y",
        [
            (seq, r.entry, PubAck(stream="CHORUS_EVENTS", seq=20 + seq), None)
            for seq, r in zip(
                (3, 4), await a.reserve("y", [(3, digest(3)), (4, digest(4))]), strict=True
            )
        ],
    )
    assert (three.seq, four.seq) == (23, 24)
    assert (await b.get("y", 4)).seq == 24  # type: ignore[union-attr]


async def test_the_bucket_takes_atomic_batches_and_keeps_records_past_the_stream(
    bus_client: Bus,
) -> None:
    info = await bus_client.jetstream.stream_info(f"KV_{BUCKET_FEEDS}")
    events = await bus_client.jetstream.stream_info("CHORUS_EVENTS")
    assert info.config.allow_atomic is True
    assert info.config.max_age is not None and events.config.max_age is not None
    assert info.config.max_age > events.config.max_age
