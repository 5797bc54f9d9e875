"""Typed topics and buckets on a real nats-server: what a service sees of the bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from chorus_common.bus import Bus, Received, TopicSpec
from chorus_common.errors import ConflictError, MalformedBodyError, UnavailableError
from chorus_common.topology import BUCKET_REGISTRY


class Beat(BaseModel):
    node: str
    n: int


class Ping(BaseModel):
    text: str


class Pong(BaseModel):
    text: str
    by: str


BEATS = TopicSpec("chorus.test.beat.{node}", Beat, "a node's beat")
PINGS = TopicSpec("chorus.test.ping.{node}", Ping, reply=Pong)


def test_a_subject_is_filled_in_part_by_part_and_refuses_what_would_widen_it() -> None:
    assert BEATS.subject(node="n1") == "chorus.test.beat.n1"
    assert BEATS.wildcard == "chorus.test.beat.*"
    for bad in ("", "a.b", "*", ">", "a b"):
        with pytest.raises(ValueError, match="one subject token"):
            BEATS.subject(node=bad)
    with pytest.raises(ValueError, match="missing node"):
        BEATS.subject()


async def test_messages_arrive_decoded_and_a_malformed_one_is_counted_and_dropped(
    bus_client: Bus,
) -> None:
    topic = bus_client.topic(BEATS)
    got: list[Received[Beat]] = []
    malformed: list[bytes] = []
    arrived = asyncio.Event()

    async def on_beat(message: Received[Beat]) -> None:
        got.append(message)
        arrived.set()

    await topic.subscribe(on_beat, on_malformed=lambda msg, exc: malformed.append(msg.data))
    await bus_client.client.publish("chorus.test.beat.n2", b'{"node": "n2"}')  # no n
    await topic.publish(Beat(node="n1", n=7), node="n1", headers={"X-Sig": "s"})
    await asyncio.wait_for(arrived.wait(), 5)
    assert [(m.value, m.subject, m.headers.get("X-Sig")) for m in got] == [
        (Beat(node="n1", n=7), "chorus.test.beat.n1", "s")
    ]
    assert malformed == [b'{"node": "n2"}']


async def test_a_request_gets_its_typed_answer_and_nobody_answering_is_a_503(
    bus_client: Bus,
) -> None:
    topic = bus_client.topic(PINGS)

    async def answer(message: Received[Ping]) -> None:
        await message.respond(Pong(text=message.value.text, by="n1"))

    await topic.subscribe(answer, subject=PINGS.subject(node="n1"))
    pong = await topic.request(Ping(text="hi"), Pong, node="n1")
    assert pong == Pong(text="hi", by="n1")
    with pytest.raises(UnavailableError, match=r"chorus\.test\.ping\.n9"):
        await topic.request(Ping(text="hi"), Pong, node="n9", timeout=0.5)


class Lease(BaseModel):
    holder: str
    term: int


async def test_a_bucket_writes_by_revision_and_refuses_a_stale_or_second_create(
    bus_client: Bus,
) -> None:
    leases = bus_client.bucket(BUCKET_REGISTRY, Lease, prefix="test-lease.")
    assert await leases.get("admin") is None
    first = await leases.create("admin", Lease(holder="a", term=1))
    with pytest.raises(ConflictError):
        await leases.create("admin", Lease(holder="b", term=1))
    second = await leases.update("admin", Lease(holder="a", term=2), first)
    with pytest.raises(ConflictError):  # written meanwhile: the old revision no longer holds
        await leases.update("admin", Lease(holder="b", term=3), first)
    now = await leases.get("admin")
    assert now is not None and now.value == Lease(holder="a", term=2) and now.revision == second
    await leases.put("other", Lease(holder="c", term=1))
    kv = await leases.kv()
    await kv.put("test-lease.rotten", b"not json")
    with pytest.raises(MalformedBodyError, match=r"test-lease\.rotten is not a Lease"):
        await leases.get("rotten")
    # a scan leaves out what does not decode, and strips the prefix
    assert await leases.scan() == {
        "admin": Lease(holder="a", term=2),
        "other": Lease(holder="c", term=1),
    }
    await leases.delete("other")
    assert await leases.get("other") is None


async def test_stream_reads_records_replays_and_taps(bus_client: Bus) -> None:
    from chorus_common.topology import AUDIT_SUBJECT_PREFIX

    STREAM_AUDIT = "CHORUS_AUDIT"

    first = await bus_client.record(f"{AUDIT_SUBJECT_PREFIX}.test", Lease(holder="a", term=1))
    await bus_client.record(f"{AUDIT_SUBJECT_PREFIX}.test", b'{"holder": "b", "term": 2}')
    assert await bus_client.stream_last_seq(STREAM_AUDIT) == first.seq + 1
    stored = await bus_client.stream_message(STREAM_AUDIT, first.seq)
    assert stored is not None and Lease.model_validate_json(stored.data) == Lease(
        holder="a", term=1
    )
    assert await bus_client.stream_message(STREAM_AUDIT, first.seq + 2) is None
    replayed: list[bytes] = []
    done = asyncio.Event()

    async def on_replayed(msg: Any) -> None:
        replayed.append(msg.data)
        if len(replayed) == 2:
            done.set()

    sub = await bus_client.replay(
        f"{AUDIT_SUBJECT_PREFIX}.>", on_replayed, stream=STREAM_AUDIT, start_seq=first.seq
    )
    await asyncio.wait_for(done.wait(), 5)
    await sub.unsubscribe()
    assert [Lease.model_validate_json(d).holder for d in replayed] == ["a", "b"]
    with pytest.raises(ValueError, match="envelope subjects only"):
        await bus_client.tap("$KV.>", on_replayed)
