"""Typed publish → durable consume against a real nats-server."""

import asyncio

import nats
import pytest
from prometheus_client import CollectorRegistry

from chorus_common.bus import Bus, Delivery
from chorus_common.bus import consumer as bus_module
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import UnavailableError
from chorus_common.metrics import BusMetrics
from chorus_common.natsserver import NatsServer
from chorus_common.subjects import msg_id, routes
from chorus_common.testing import wait_until


def sample(message_type: MessageType, **fields: object) -> Envelope:
    return Envelope(
        type=message_type,
        sender="agent-1",
        sender_role="backend",
        project="chorus",
        task="t-1",
        thread="th-1",
        payload=SAMPLE_PAYLOADS[message_type],
        **fields,
    )


async def test_every_type_round_trips_publish_to_durable_consume(bus_client: Bus) -> None:
    sent = {t: sample(t) for t in MessageType}
    for env in sent.values():
        acks = await bus_client.publish(env)
        assert acks[0].stream == "CHORUS_EVENTS" and not acks[0].duplicate

    received: dict[str, Envelope] = {}

    async def handle(env: Envelope, delivery: Delivery) -> None:
        received[env.id] = env

    # one durable consumer per primary subject family keeps copies (role/project) out
    await bus_client.subscribe("chorus.coord.>", "rt-coord", handle)
    await bus_client.subscribe("chorus.hmmm.>", "rt-hmmm", handle)
    await bus_client.subscribe("chorus.context.>", "rt-context", handle)
    await bus_client.subscribe("chorus.project.chorus.>", "rt-project", handle)
    await wait_until(lambda: len(received) == len(sent), timeout=10, message="all 31 consumed")
    for env in sent.values():
        got = received[env.id]
        assert got == env
        assert type(got.payload) is type(env.payload)
    assert len(sent) == 31


async def test_duplicate_publish_is_deduplicated(bus_client: Bus) -> None:
    env = sample(MessageType.TASK_CLAIM)
    first = await bus_client.publish(env)
    second = await bus_client.publish(env)
    assert second[0].duplicate and second[0].seq == first[0].seq


async def test_role_fan_out_reaches_role_subject(bus_client: Bus) -> None:
    env = sample(MessageType.EXPERTISE_REQUEST, to_roles=["security", "devops"])
    acks = await bus_client.publish(env)
    assert len(acks) >= 3
    nc = bus_client.client
    js = nc.jetstream()
    msg = await js.get_last_msg("CHORUS_EVENTS", "chorus.role.security.expertise_request")
    assert Envelope.decode(msg.data).id == env.id


async def test_failed_handler_is_redelivered_then_acked(bus_client: Bus) -> None:
    env = sample(MessageType.TASK_PROGRESS)
    await bus_client.publish(env)
    attempts: list[int] = []

    async def flaky(got: Envelope, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        if len(attempts) < 3:
            raise RuntimeError("transient")

    await bus_client.subscribe("chorus.coord.task_progress", "flaky", flaky)
    await wait_until(lambda: len(attempts) >= 3, timeout=10, message="three deliveries")
    assert attempts[:3] == [1, 2, 3]
    await asyncio.sleep(0.5)
    assert len(attempts) == 3  # acked after success: no further redelivery


async def test_poison_message_is_terminated_and_counted(nats_url: str) -> None:
    registry = CollectorRegistry()
    metrics = BusMetrics(registry)
    bus = Bus(ChorusSettings(nats_url=nats_url), "poison-test", metrics=metrics)
    await bus.connect(timeout=10)
    try:
        await bus.jetstream.publish("chorus.coord.task_claim", b"{this is not json")
        good = sample(MessageType.TASK_CLAIM)
        await bus.publish(good)
        seen: list[str] = []

        async def handle(env: Envelope, delivery: Delivery) -> None:
            seen.append(env.id)

        await bus.subscribe("chorus.coord.task_claim", "poison", handle)
        await wait_until(lambda: seen == [good.id], timeout=10, message="good one handled")
        value = registry.get_sample_value(
            "chorus_bus_poison_messages_total",
            {"consumer": "poison", "reason": "malformed_envelope"},
        )
        assert value == 1.0
        info = await bus.jetstream.consumer_info("CHORUS_EVENTS", "poison")
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        await bus.close()


async def test_traceparent_header_travels_with_the_envelope(bus_client: Bus) -> None:
    env = sample(MessageType.STATUS_UPDATE)
    headers: dict[str, str] = {}

    async def handle(got: Envelope, delivery: Delivery) -> None:
        headers.update(delivery.headers)

    await bus_client.publish(env)
    await bus_client.subscribe("chorus.project.chorus.status_update", "trace", handle)
    await wait_until(lambda: headers, timeout=10, message="delivery")
    assert headers["Nats-Msg-Id"] == env.id
    assert headers["traceparent"].startswith("00-")


async def test_a_handler_publishing_onwards_stays_in_the_senders_trace(bus_client: Bus) -> None:
    """REST → NATS → service → NATS keeps one trace id (the hop a trace is for)."""
    first = sample(MessageType.TASK_CLAIM)
    reply = sample(MessageType.TASK_PROGRESS)
    seen: dict[str, str] = {}

    async def relay(env: Envelope, delivery: Delivery) -> None:
        seen["in"] = delivery.headers["traceparent"]
        await bus_client.publish(reply)

    async def watch(env: Envelope, delivery: Delivery) -> None:
        seen["out"] = delivery.headers["traceparent"]

    await bus_client.subscribe("chorus.coord.task_claim", "relay", relay)
    await bus_client.subscribe("chorus.coord.task_progress", "after-relay", watch)
    await bus_client.publish(first)
    await wait_until(lambda: "out" in seen, timeout=10, message="relayed envelope")
    trace_id = seen["in"].split("-")[1]
    assert seen["out"].split("-")[1] == trace_id and int(trace_id, 16) != 0
    assert seen["out"] != seen["in"]  # same trace, the relay's own publish span


async def test_acknowledged_envelopes_survive_sigkill_of_nats(nats_server: NatsServer) -> None:
    bus = Bus(ChorusSettings(nats_url=nats_server.url), "durability")
    await bus.connect(timeout=10)
    try:
        sent = [sample(MessageType.TASK_ANNOUNCEMENT) for _ in range(50)]
        for env in sent:
            await bus.publish(env)
        nats_server.kill()
        with pytest.raises(UnavailableError):
            await bus.publish(sample(MessageType.TASK_ANNOUNCEMENT), timeout=0.5)
        nats_server.start()
        await wait_until(lambda: bus.is_connected, timeout=15, message="reconnected")
        got: list[str] = []

        async def handle(env: Envelope, delivery: Delivery) -> None:
            got.append(env.id)

        await bus.subscribe("chorus.coord.task_announcement", "after-kill", handle)
        await wait_until(lambda: len(got) >= len(sent), timeout=15, message="all back")
        assert [e.id for e in sent] == got[: len(sent)]
    finally:
        await bus.close()


async def test_connect_to_nothing_says_where_it_tried() -> None:
    bus = Bus(ChorusSettings(nats_url="nats://127.0.0.1:1"), "nowhere")
    with pytest.raises(UnavailableError) as info:
        await bus.connect(timeout=0.5)
    assert "nats://127.0.0.1:1" in info.value.detail


async def test_core_subscribers_see_published_envelopes(bus_client: Bus, nats_url: str) -> None:
    """What `nats sub 'chorus.>'` shows a user debugging the bus."""
    nc = await nats.connect(nats_url)
    seen: list[str] = []

    async def cb(msg: nats.aio.msg.Msg) -> None:
        seen.append(msg.subject)

    await nc.subscribe("chorus.>", cb=cb)
    await nc.flush()
    await bus_client.publish(sample(MessageType.TASK_COMPLETE))
    await wait_until(lambda: "chorus.coord.task_complete" in seen, timeout=5, message="seen")
    await nc.close()


async def test_a_late_pong_does_not_kill_the_connection(nats_server: NatsServer) -> None:
    """Found by the fuzzer (POST /v1/stepdown hung 15 s): nats-py's read loop stopped for
    good when the PONG of a timed-out flush arrived, so one slow health probe left the
    service deaf to NATS. A probe that times out must leave the connection working."""
    bus = Bus(ChorusSettings(nats_url=nats_server.url), "late-pong")
    await bus.connect(timeout=10)
    try:
        nats_server.pause()
        try:
            with pytest.raises(TimeoutError):
                await bus.rtt(timeout=1)
        finally:
            nats_server.resume()

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"pong")

        await bus.client.subscribe("late.pong", cb=answer)
        reply = await bus.client.request("late.pong", b"ping", timeout=5)
        assert reply.data == b"pong"
        assert await bus.rtt(timeout=5) < 5
    finally:
        await bus.close()


def batch_counts(registry: CollectorRegistry) -> dict[str, float]:
    return {
        outcome: registry.get_sample_value("chorus_bus_publish_batches_total", {"outcome": outcome})
        or 0.0
        for outcome in ("committed", "resent")
    }


async def test_publish_many_commits_atomic_batches_with_an_ack_per_envelope(
    nats_url: str,
) -> None:
    metrics = BusMetrics(registry := CollectorRegistry())
    settings = ChorusSettings(nats_url=nats_url, max_message_bytes=4096)
    bus = Bus(settings, "batcher", metrics=metrics)
    await bus.connect()
    try:
        # 2,300 envelopes of two or three routes each: batches of at most 1,000 messages
        envs = [
            sample(MessageType.TASK_CLAIM)
            if n % 3
            else sample(MessageType.TASK_HELP_REQUEST, to_roles=["backend"])
            for n in range(2300)
        ]
        too_big = Envelope(
            type=MessageType.META_DISCUSSION,
            sender="agent-1",
            thread="th-1",
            payload={"content": "x" * 5000},
        )
        results = await bus.publish_many([*envs[:1000], too_big, *envs[1000:]])
        assert isinstance(results[1000], Exception)  # one bad envelope, the rest unaffected
        acks = results[:1000] + results[1001:]
        assert not any(isinstance(r, Exception) for r in acks)
        n_batches = batch_counts(registry)["committed"]
        assert n_batches >= 5 and batch_counts(registry)["resent"] == 0
        # every ack names the stream sequence that really holds that envelope's route
        for env, env_acks in zip(envs, acks, strict=True):
            assert not isinstance(env_acks, Exception)
            assert len(env_acks) == len(routes(env))
            for route, ack in enumerate(env_acks):
                stored = await bus.jetstream.get_msg("CHORUS_EVENTS", ack.seq)
                assert stored.headers is not None
                assert stored.headers["Nats-Msg-Id"] == msg_id(env, route)
                assert stored.subject == routes(env)[route]
        info = await bus.jetstream.stream_info("CHORUS_EVENTS")
        assert info.state.messages == sum(len(routes(e)) for e in envs)

        # a retry of the same envelopes: each batch is refused as holding stored ids and
        # resent message by message, where de-duplication answers with the first sequence
        again = await bus.publish_many(envs)
        assert batch_counts(registry) == {"committed": n_batches, "resent": n_batches}
        for first, second in zip(acks, again, strict=True):
            assert not isinstance(first, Exception) and not isinstance(second, Exception)
            assert [a.seq for a in second] == [a.seq for a in first]
            assert all(a.duplicate for a in second)
        assert (
            await bus.jetstream.stream_info("CHORUS_EVENTS")
        ).state.messages == info.state.messages
    finally:
        await bus.close()


async def test_publish_many_falls_back_on_a_stream_without_atomic_batches(
    nats_url: str,
) -> None:
    """A stream made by an older CHORUS (or nats-server) still takes every envelope."""
    from nats.js.api import StreamConfig

    from chorus_common.subjects import STREAM_EVENTS_SUBJECTS

    raw = await nats.connect(nats_url)
    await raw.jetstream().add_stream(
        StreamConfig(name="CHORUS_EVENTS", subjects=list(STREAM_EVENTS_SUBJECTS))
    )
    await raw.close()
    metrics = BusMetrics(registry := CollectorRegistry())
    bus = Bus(ChorusSettings(nats_url=nats_url), "old-stream", metrics=metrics)
    await bus.connect(declare=False)
    try:
        envs = [sample(MessageType.TASK_CLAIM) for _ in range(50)]
        results = await bus.publish_many(envs)
        assert all(not isinstance(r, Exception) and not r[0].duplicate for r in results)
        assert batch_counts(registry) == {"committed": 0, "resent": 1}
        more = await bus.publish_many([sample(MessageType.TASK_CLAIM) for _ in range(50)])
        assert all(not isinstance(r, Exception) for r in more)
        assert batch_counts(registry) == {"committed": 0, "resent": 1}  # no second attempt
        assert (await bus.jetstream.stream_info("CHORUS_EVENTS")).state.messages == 100 * len(
            routes(envs[0])
        )
    finally:
        await bus.close()


async def test_publish_many_on_a_dead_bus_answers_each_envelope(nats_server: NatsServer) -> None:
    """No exception escapes and nothing hangs: every envelope gets its own 'unavailable',
    and once the server is back the retry stores each envelope once."""
    bus = Bus(ChorusSettings(nats_url=nats_server.url), "dead-bus")
    await bus.connect(timeout=10)
    try:
        nats_server.kill()
        envs = [sample(MessageType.TASK_CLAIM) for _ in range(300)]
        results = await asyncio.wait_for(bus.publish_many(envs, timeout=1), timeout=30)
        assert len(results) == 300
        assert all(isinstance(r, UnavailableError) for r in results)
        # the bus comes back (same store): the same envelopes go through, each once
        nats_server.start()

        async def published() -> bool:
            again = await bus.publish_many(envs, timeout=2)
            return not any(isinstance(r, Exception) for r in again)

        await wait_until(published, timeout=30, interval=0.5, message="publishing after restart")
        info = await bus.jetstream.stream_info("CHORUS_EVENTS")
        assert info.state.messages == 300 * len(routes(envs[0]))
    finally:
        await bus.close()


@pytest.mark.parametrize("resume", ["reconnect", "silence"])
async def test_a_consumer_resumes_after_nats_restarts(
    nats_server: NatsServer, resume: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open pull request dies with the server. The consumer asks again when the bus
    reconnects, and, should that be missed, once the server's heartbeats stop."""
    if resume == "silence":
        monkeypatch.setattr(bus_module.Consumer, "kick", lambda self: None)
    bus = Bus(ChorusSettings(nats_url=nats_server.url), "through-restart")
    await bus.connect(timeout=10)
    got: list[str] = []

    async def handle(env: Envelope, delivery: Delivery) -> None:
        got.append(env.id)

    try:
        await bus.subscribe("chorus.coord.task_announcement", "through-restart", handle)
        before = [sample(MessageType.TASK_ANNOUNCEMENT) for _ in range(20)]
        for env in before:
            await bus.publish(env)
        await wait_until(lambda: len(got) == 20, timeout=10, message="the first 20")
        nats_server.kill()
        nats_server.start()
        await wait_until(lambda: bus.is_connected, timeout=15, message="reconnected")
        after = [sample(MessageType.TASK_ANNOUNCEMENT) for _ in range(20)]

        async def publish_after() -> bool:  # JetStream takes a moment to recover its streams
            for env in after:
                await bus.publish(env, timeout=1)
            return True

        await wait_until(publish_after, timeout=20, message="publishing after the restart")
        await wait_until(
            lambda: len(set(got)) == 40, timeout=15, message="the 20 after the restart"
        )
        # in order; the last acks before a SIGKILL may not have reached the disk, so an
        # envelope from before it may come again (at least once, as JetStream promises)
        assert list(dict.fromkeys(got)) == [e.id for e in before + after]
    finally:
        await bus.close()


async def test_a_consumer_takes_what_comes_after_its_pull_request_expired(
    bus_client: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus_module, "PULL_EXPIRES", 0.5)
    monkeypatch.setattr(bus_module, "PULL_HEARTBEAT", 0.2)
    got: list[str] = []

    async def handle(env: Envelope, delivery: Delivery) -> None:
        got.append(env.id)

    await bus_client.subscribe("chorus.hmmm.*.task_help_request", "expiry", handle)
    await asyncio.sleep(1.3)  # two requests expire unanswered
    env = sample(MessageType.TASK_HELP_REQUEST)
    await bus_client.publish(env)
    await wait_until(lambda: got == [env.id], timeout=5, message="the envelope after expiry")
