"""Service identities and signatures: naming, replay windows, and the verifier on a real bus."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from nats.js.kv import KeyValue

from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter
from chorus_common.natsserver import NatsServer
from chorus_common.service_signing import (
    REFRESH_SECONDS,
    SERVICE_NAMES,
    ForgedKind,
    ReplayWindow,
    ServiceSigner,
    ServiceVerifier,
    claimed_service,
    registry_key,
    service_sender,
)
from chorus_common.signing import AgentKey
from chorus_common.topology import BUCKET_REGISTRY

BEAT = ForgedKind.BEAT


def test_sender_per_replica_is_a_token_and_names_its_service() -> None:
    assert service_sender("coordinator", "node-1") == "svc-coordinator-node-1"
    assert service_sender("pubsub-gateway", "a.b") == "svc-pubsub-gateway-a_b"
    long = service_sender("election", "n" * 64)
    assert len(long) == 64 and long != service_sender("election", "n" * 63 + "m")
    for sender in ("svc-coordinator-node-1", "svc-pubsub-gateway-a_b", long):
        assert claimed_service(sender) in SERVICE_NAMES
    assert claimed_service("svc-pubsub-gateway-x") == "pubsub-gateway"
    assert claimed_service("coordinator") == "coordinator"  # the unsigned sender of old
    assert claimed_service("svc-nobody-x") == ""  # claims a service, matches none
    assert claimed_service("alice") is None and claimed_service("coordinator_bob") is None
    with pytest.raises(ValueError):
        service_sender("mallory", "n1")


def test_replay_window() -> None:
    w = ReplayWindow(window=100, memory=8)
    assert w.take("s", "k", 1000) == "new"
    assert w.take("s", "k", 1000) == "duplicate"
    assert w.take("s", "k", 990) == "new"  # out of order within the window
    assert w.take("s", "k", 900) == "replay"  # older than the window
    assert w.take("s", "k2", 900) == "new"  # a new key is a new feed
    for seq in range(1001, 1040):
        assert w.take("s", "k", seq) == "new"
    assert w.take("s", "k", 1039) == "duplicate"


def test_key_and_feed_persist_together(tmp_path: Path) -> None:
    first = ServiceSigner.load("coordinator", "c1", tmp_path)
    key_file = tmp_path / "service-keys" / "svc-coordinator-c1.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    env = first.seal(
        Envelope(
            type=MessageType.STATUS_UPDATE,
            sender="x",
            payload=SAMPLE_PAYLOADS[MessageType.STATUS_UPDATE],
        )
    )
    again = ServiceSigner.load("coordinator", "c1", tmp_path)
    assert again.identity.public_key == first.identity.public_key
    assert again.writer.state.seq == 1 and again.writer.state.head == env.digest()
    # an emptied data dir (or half of one) is a new key and a new feed
    (tmp_path / "service-keys" / "svc-coordinator-c1.feed.json").unlink()
    fresh = ServiceSigner.load("coordinator", "c1", tmp_path)
    assert fresh.identity.public_key != first.identity.public_key
    assert fresh.writer.state.seq == 0


def _allocation(sender: str) -> Envelope:
    return Envelope(
        type=MessageType.WORK_ALLOCATION,
        sender=sender,
        payload=SAMPLE_PAYLOADS[MessageType.WORK_ALLOCATION],
    )


async def test_verifier_takes_a_registered_service_and_refuses_forgeries(
    bus_client: Bus, tmp_path: Path
) -> None:
    kv: KeyValue = await bus_client.jetstream.key_value(BUCKET_REGISTRY)
    signer = await ServiceSigner.open(kv, "coordinator", "c1", tmp_path)
    verifier = await ServiceVerifier.open(bus_client)

    real = signer.seal(_allocation("ignored"))
    verdict = await verifier.check_envelope(real)
    assert verdict.ok and verdict.identity is not None
    assert verdict.identity.service == "coordinator" and verdict.identity.node_id == "c1"
    again = await verifier.check_envelope(real)
    assert not again.ok and again.reason is None  # a copy: not acted on twice, not a forgery

    mallory = AgentKey.generate()
    forgeries = {
        "not_service": [_allocation("coordinator-bot"), _allocation("alice")],
        "unsigned": [_allocation(signer.sender), _allocation("coordinator")],
        "bad_signature": [FeedWriter(signer.sender, mallory).seal(_allocation("x"))],
        "unknown_sender": [FeedWriter("svc-coordinator-c9", mallory).seal(_allocation("x"))],
    }
    for reason, envelopes in forgeries.items():
        for env in envelopes:
            verdict = await verifier.check_envelope(env)
            assert not verdict.ok and verdict.reason == reason, (env.sender, verdict)
    assert verifier.forged == {
        ("envelope", "not_service"): 2,
        ("envelope", "unsigned"): 2,
        ("envelope", "bad_signature"): 1,
        ("envelope", "unknown_sender"): 1,
    }
    # a registry entry written where a coordinator does not live is no coordinator's
    await kv.put(
        registry_key("election", "svc-coordinator-c9"),
        json.dumps({"kind": "service", "service": "coordinator"}).encode(),
    )
    bogus = FeedWriter("svc-coordinator-c9", mallory).seal(_allocation("x"))
    assert (await verifier.check_envelope(bogus)).reason == "unknown_sender"
    # an agent's own envelope is not this verifier's to judge
    chat = Envelope(
        type=MessageType.STATUS_UPDATE,
        sender="alice",
        payload=SAMPLE_PAYLOADS[MessageType.STATUS_UPDATE],
    )
    assert (await verifier.check_envelope(chat)).ok


async def test_detached_signature_binds_subject_body_and_a_new_key_is_believed_at_once(
    bus_client: Bus, tmp_path: Path
) -> None:
    kv: KeyValue = await bus_client.jetstream.key_value(BUCKET_REGISTRY)
    signer = await ServiceSigner.open(kv, "backbeat", "b1", tmp_path)
    verifier = await ServiceVerifier.open(bus_client)
    body = b'{"beat_index": 1}'
    headers = signer.sign_headers("chorus.backbeat.beat", body)
    ident = await verifier.check_detached(BEAT, "backbeat", "chorus.backbeat.beat", body, headers)
    assert ident is not None and ident.sender == signer.sender
    # the same signature on another subject, over another body, or from another service
    other = signer.sign_headers("chorus.backbeat.beat", body)
    assert (
        await verifier.check_detached(BEAT, "backbeat", "chorus.backbeat.bar", body, other) is None
    )
    other = signer.sign_headers("chorus.backbeat.beat", body)
    assert (
        await verifier.check_detached(BEAT, "backbeat", "chorus.backbeat.beat", b"{}", other)
        is None
    )
    other = signer.sign_headers("chorus.backbeat.beat", body)
    assert (
        await verifier.check_detached(BEAT, "election", "chorus.backbeat.beat", body, other) is None
    )
    assert await verifier.check_detached(BEAT, "backbeat", "chorus.backbeat.beat", body, {}) is None
    assert verifier.forged[("beat", "bad_signature")] == 2
    assert verifier.forged[("beat", "not_service")] == 1
    assert verifier.forged[("beat", "unsigned")] == 1

    # the replica restarts with an empty data dir: its new key is believed without waiting
    # out the 5 s cache (a failed signature re-reads the registry, at most every
    # REFRESH_SECONDS: the failures above just did), and the old key's signatures are not
    await asyncio.sleep(REFRESH_SECONDS)
    old = signer
    new = await ServiceSigner.open(kv, "backbeat", "b1", tmp_path / "empty")
    assert new.identity.public_key != old.identity.public_key
    fresh = new.sign_headers("chorus.backbeat.beat", body)
    assert await verifier.check_detached(BEAT, "backbeat", "chorus.backbeat.beat", body, fresh)
    stale = old.sign_headers("chorus.backbeat.beat", body)
    assert (
        await verifier.check_detached(BEAT, "backbeat", "chorus.backbeat.beat", body, stale) is None
    )


async def test_registering_waits_out_a_nats_server_that_is_briefly_away(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A replica (re)starting during a NATS outage registers once the server is back,
    instead of failing its set-up and staying not ready for good."""
    bus = Bus(ChorusSettings(nats_url=nats_server.url), name="signing-outage")
    await bus.connect(timeout=10)
    try:
        kv: KeyValue = await bus.jetstream.key_value(BUCKET_REGISTRY)
        signer = ServiceSigner.load("election", "e1", tmp_path)
        nats_server.kill()
        for _ in range(100):
            if not bus.client.is_connected:
                break
            await asyncio.sleep(0.05)
        assert not bus.client.is_connected
        registering = asyncio.create_task(signer.register(kv, timeout=60))
        await asyncio.sleep(6.0)  # past the 5 s JetStream publish timeout: at least one retry
        assert not registering.done(), registering  # still trying, not failed
        nats_server.start()
        await asyncio.wait_for(registering, 30)
        entry = await kv.get(registry_key("election", signer.sender))
        assert json.loads(entry.value or b"{}")["public_key"] == signer.identity.public_key
    finally:
        await bus.close()
