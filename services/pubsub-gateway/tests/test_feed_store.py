"""Single-writer, replay-proof feeds: what the store holds whatever the replicas, retries and clocks.

Every test here reads the stream itself, because the defect each guards against
was an answer that looked right (201) while a second entry was stored.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.js.errors import NotFoundError as JsNotFoundError

from chorus_common.bus import EVENTS_STREAM
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType, new_id
from chorus_common.feeds import FeedState, FeedWriter, verify_feed
from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process
from chorus_gateway import GatewayService
from chorus_gateway.settings import GatewaySettings

from .conftest import ADMIN, SigningAgent, as_json

GatewayFixture = tuple[GatewayService, httpx.AsyncClient]
#: the de-duplication window the tests give CHORUS_EVENTS, so waiting past it is quick
SHORT_WINDOW = 1.0


async def stored(service: GatewayService) -> list[Envelope]:
    """Every envelope in CHORUS_EVENTS, in stream order, as the consumers see them."""
    out: list[Envelope] = []
    seq = 1
    while True:
        try:
            msg = await service.bus.jetstream.get_msg(
                EVENTS_STREAM, seq=seq, subject="chorus.>", next=True
            )
        except JsNotFoundError:
            return out
        assert msg.seq is not None and msg.data is not None
        out.append(Envelope.decode(msg.data))
        seq = msg.seq + 1


async def shorten_dedupe_window(service: GatewayService) -> None:
    """Make JetStream forget message ids after SHORT_WINDOW (only the gateway's record remains)."""
    info = await service.bus.jetstream.stream_info(EVENTS_STREAM)
    info.config.duplicate_window = SHORT_WINDOW
    await service.bus.jetstream.update_stream(info.config)
    info = await service.bus.jetstream.stream_info(EVENTS_STREAM)
    assert info.config.duplicate_window == SHORT_WINDOW


def reseal(agent: SigningAgent, env: Envelope, **update: Any) -> Envelope:
    """Another envelope signed by the agent at the same feed position as ``env``."""
    other = env.model_copy(update={"id": new_id(), "sig": None, **update})
    return other.model_copy(update={"sig": agent.key.sign(bytes.fromhex(other.digest()))})


async def register(client: httpx.AsyncClient, agent_id: str) -> AgentKey:
    key = AgentKey.generate()
    resp = await client.post(f"/v1/agents/{agent_id}/keys", json={"public_key": key.public_key})
    assert resp.status_code == 201, resp.text
    return key


@pytest.fixture
async def replicas(
    make_settings: Callable[..., ChorusSettings],
) -> AsyncIterator[list[tuple[GatewayService, httpx.AsyncClient]]]:
    """Two gateways on one NATS, as the Helm chart runs them."""
    services = [GatewayService(make_settings(GatewaySettings)) for _ in range(2)]  # type: ignore[arg-type]
    async with (
        serve_in_process(services[0]) as url0,
        serve_in_process(services[1]) as url1,
        httpx.AsyncClient(base_url=url0, headers=ADMIN, timeout=30) as c0,
        httpx.AsyncClient(base_url=url1, headers=ADMIN, timeout=30) as c1,
    ):
        yield [(services[0], c0), (services[1], c1)]


AGENTS = 48


async def test_two_replicas_store_one_entry_per_agent_and_seq(
    replicas: list[tuple[GatewayService, httpx.AsyncClient]],
) -> None:
    """Two different signed envelopes at one feed_seq, sent at once to both replicas, for 48
    agents and three positions (fresh feed, continued feed, a batch): one is stored, the
    other is refused as a fork, and never both."""
    (service, c0), (_, c1) = replicas
    ids = [f"racer-{n}" for n in range(AGENTS)]
    keys = await asyncio.gather(*(register(c0, a) for a in ids))
    states = {a: FeedState() for a in ids}

    async def race_one(agent_id: str, key: AgentKey) -> list[tuple[int, str]]:
        """Both replicas get an envelope at the same seq; returns the winner's state."""
        writers = [FeedWriter(agent_id, key, state=states[agent_id]) for _ in range(2)]
        envs = [
            w.seal(
                Envelope(
                    type=MessageType.STATUS_UPDATE,
                    sender=agent_id,
                    payload={"agent": agent_id, "status": f"replica-{i}"},
                )
            )
            for i, w in enumerate(writers)
        ]
        answers = await asyncio.gather(
            c0.post("/v1/envelopes", json=as_json(envs[0])),
            c1.post("/v1/envelopes", json=as_json(envs[1])),
        )
        outcome = [(r.status_code, r.json().get("code", "")) for r in answers]
        for i, r in enumerate(answers):
            if r.status_code == 201:
                states[agent_id] = writers[i].state
        return outcome

    for _ in range(2):  # seq 1 of fresh feeds, then seq 2 on top of each winner
        rounds = await asyncio.gather(*(race_one(a, k) for a, k in zip(ids, keys, strict=True)))
        for outcome in rounds:
            assert sorted(outcome) == [(201, ""), (409, "feed_fork")], outcome

    async def race_batch(agent_id: str, key: AgentKey) -> None:
        writers = [FeedWriter(agent_id, key, state=states[agent_id]) for _ in range(2)]
        batches = [
            [
                as_json(
                    w.seal(
                        Envelope(
                            type=MessageType.STATUS_UPDATE,
                            sender=agent_id,
                            payload={"agent": agent_id, "status": f"batch-{i}-{n}"},
                        )
                    )
                )
                for n in range(3)
            ]
            for i, w in enumerate(writers)
        ]
        answers = await asyncio.gather(
            c0.post("/v1/envelopes:batch", json={"envelopes": batches[0]}),
            c1.post("/v1/envelopes:batch", json={"envelopes": batches[1]}),
        )
        for r in answers:
            assert r.status_code == 200, r.text
            for item in r.json()["results"]:
                assert item["ok"] or item["error"]["code"] in ("feed_fork", "feed_gap"), item

    await asyncio.gather(*(race_batch(a, k) for a, k in zip(ids, keys, strict=True)))

    envelopes = await stored(service)
    per_seq = Counter((e.sender, e.feed_seq) for e in envelopes)
    assert max(per_seq.values()) == 1, [k for k, n in per_seq.items() if n > 1]
    for agent_id, key in zip(ids, keys, strict=True):
        feed = [e for e in envelopes if e.sender == agent_id]
        assert {e.feed_seq for e in feed} >= {1, 2}
        assert verify_feed(feed, key.public_key).ok, agent_id


@pytest.fixture
async def quick_gateway(
    make_settings: Callable[..., ChorusSettings],
) -> AsyncIterator[GatewayFixture]:
    """A gateway whose stream forgets message ids after 1 s and whose clock skew is 1 s."""
    settings = make_settings(GatewaySettings, gateway_max_clock_skew_seconds=SHORT_WINDOW)
    service = GatewayService(settings)  # type: ignore[arg-type]
    async with (
        serve_in_process(service) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=20) as client,
    ):
        await shorten_dedupe_window(service)
        yield service, client


async def past(seconds: float) -> None:
    """Let time pass: the point of these tests is what the gateway does after it has."""
    await asyncio.sleep(seconds)


async def test_exact_resend_after_the_dedupe_window_is_the_original_ack(
    quick_gateway: GatewayFixture,
) -> None:
    """JetStream has forgotten the id and created_at is out of the skew by then: the gateway's
    own record still answers with the original ack, and nothing is stored again."""
    service, client = quick_gateway
    key = await register(client, "late")
    agent = SigningAgent("late", key, FeedWriter("late", key))
    first = agent.envelope(MessageType.STATUS_UPDATE)
    accepted = await client.post("/v1/envelopes", json=as_json(first))
    assert accepted.status_code == 201, accepted.text
    original = accepted.json()
    assert original["duplicate"] is False

    await past(SHORT_WINDOW * 1.5)
    again = await client.post("/v1/envelopes", json=as_json(first))
    assert again.status_code == 201, again.text
    assert again.json()["seq"] == original["seq"] and again.json()["duplicate"] is True

    second = agent.envelope(MessageType.STATUS_UPDATE)
    assert (await client.post("/v1/envelopes", json=as_json(second))).status_code == 201
    behind = await client.post("/v1/envelopes:batch", json={"envelopes": [as_json(first)] * 2})
    assert [(r["seq"], r["duplicate"]) for r in behind.json()["results"]] == [
        (original["seq"], True)
    ] * 2

    fork = reseal(agent, first, created_at=datetime.now(UTC))
    refused = await client.post("/v1/envelopes", json=as_json(fork))
    assert refused.status_code == 409 and refused.json()["code"] == "feed_fork", refused.text

    # a batch's acks are recorded together; re-sent whole, past the window, it is answered
    # from that record
    batch = [as_json(agent.envelope(MessageType.STATUS_UPDATE)) for _ in range(3)]
    sent = (await client.post("/v1/envelopes:batch", json={"envelopes": batch})).json()
    await past(SHORT_WINDOW * 1.5)
    again_batch = (await client.post("/v1/envelopes:batch", json={"envelopes": batch})).json()
    assert [r["seq"] for r in again_batch["results"]] == [r["seq"] for r in sent["results"]]
    assert [r["duplicate"] for r in again_batch["results"]] == [True] * 3

    envelopes = await stored(service)
    assert [e.id for e in envelopes] == [first.id, second.id, *(e["id"] for e in batch)]


async def test_a_reservation_left_by_a_dead_gateway_is_completed_by_the_resend(
    quick_gateway: GatewayFixture,
) -> None:
    """A gateway killed between reserving seq 1 and publishing it leaves a record without an
    ack: the same envelope sent again is published once; any other envelope there is a fork."""
    service, client = quick_gateway
    key = await register(client, "orphan")
    agent = SigningAgent("orphan", key, FeedWriter("orphan", key))
    first = agent.envelope(MessageType.STATUS_UPDATE)
    [reservation] = await service.feeds.reserve("orphan", [(1, first.digest())])
    assert reservation.ours

    fork = await client.post("/v1/envelopes", json=as_json(reseal(agent, first)))
    assert fork.status_code == 409 and fork.json()["code"] == "feed_fork"
    done = await client.post("/v1/envelopes", json=as_json(first))
    assert done.status_code == 201, done.text
    assert done.json()["duplicate"] is False
    assert (await client.post("/v1/envelopes", json=as_json(first))).json()["seq"] == done.json()[
        "seq"
    ]
    second = agent.envelope(MessageType.STATUS_UPDATE)
    assert (await client.post("/v1/envelopes", json=as_json(second))).status_code == 201
    assert [e.id for e in await stored(service)] == [first.id, second.id]


async def test_a_copy_stored_without_its_ack_is_found_not_stored_again(
    quick_gateway: GatewayFixture,
) -> None:
    """A gateway killed after the publish but before recording the ack: past the dedupe
    window, the re-send is answered with the stored copy's sequence, and the head, which
    that gateway never advanced either, still lets the feed continue."""
    service, client = quick_gateway
    key = await register(client, "halfway")
    agent = SigningAgent("halfway", key, FeedWriter("halfway", key))
    first = agent.envelope(MessageType.STATUS_UPDATE)
    await service.feeds.reserve("halfway", [(1, first.digest())])
    [ack] = await service.bus.publish(first)

    await past(SHORT_WINDOW * 1.5)
    again = await client.post("/v1/envelopes", json=as_json(first))
    assert again.status_code == 201, again.text
    assert again.json()["seq"] == ack.seq and again.json()["duplicate"] is True
    assert [e.id for e in await stored(service)] == [first.id]

    # seq 2 reserved and stored by a gateway that died before moving the head past 1
    second = agent.envelope(MessageType.STATUS_UPDATE)
    [reservation] = await service.feeds.reserve("halfway", [(2, second.digest())])
    [ack2] = await service.bus.publish(second)
    await service.feeds.complete("halfway", 2, reservation.entry, ack2.stream, ack2.seq, None)
    third = agent.envelope(MessageType.STATUS_UPDATE)
    resp = await client.post("/v1/envelopes", json=as_json(third))
    assert resp.status_code == 201, resp.text
    doc = (await client.get("/v1/agents/halfway")).json()
    assert doc["feed"]["seq"] == 3


@pytest.mark.parametrize("offset", [timedelta(days=-3650), timedelta(days=3650)])
async def test_created_at_outside_the_skew_is_refused(
    gateway: GatewayFixture, new_agent: Callable[..., Any], offset: timedelta
) -> None:
    service, client = gateway
    agent: SigningAgent = await new_agent("skewed")
    env = agent.envelope(MessageType.STATUS_UPDATE, created_at=datetime.now(UTC) + offset)
    resp = await client.post("/v1/envelopes", json=as_json(env))
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "clock_skew"
    assert (
        "±300 s" in problem["detail"]
        and "CHORUS_GATEWAY_MAX_CLOCK_SKEW_SECONDS" in (problem["detail"])
    )
    assert problem["max_skew_seconds"] == 300
    assert await stored(service) == []

    # the refused entry did not take the seq: the agent re-seals it with a good clock
    agent.writer.state = FeedState()
    good = agent.envelope(
        MessageType.STATUS_UPDATE, created_at=datetime.now(UTC) - timedelta(minutes=4)
    )
    assert (await client.post("/v1/envelopes", json=as_json(good))).status_code == 201


def test_the_skew_setting_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_GATEWAY_MAX_CLOCK_SKEW_SECONDS", "42")
    assert GatewaySettings().gateway_max_clock_skew_seconds == 42
    assert json.loads(GatewaySettings().model_dump_json())["gateway_max_clock_skew_seconds"] == 42
