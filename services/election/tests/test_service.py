"""The shared service behaviour, run against the election service."""

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import nats

from chorus_common.config import ChorusSettings
from chorus_common.service_signing import HEADER_SENDER, HEADER_SEQ, HEADER_SIG, ServiceSigner
from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process, wait_until
from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_common.topology import BUCKET_REGISTRY
from chorus_election import ElectionService
from chorus_election.settings import ElectionSettings


class TestElectionBehaviour(ServiceBehaviour):
    service_class = ElectionService
    #: the participant tells election events apart by the last token of chorus.election.*
    poison_subjects = tuple(
        f"chorus.election.{event}"
        for event in (
            "candidacy",
            "heartbeat",
            "discovery_request",
            "started",
            "winner",
            "stepdown",
        )
    )


async def test_malformed_heartbeats_never_install_an_admin(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    """Found by the poison fuzzer: an empty heartbeat read as one from node "None", and a
    stray term in one fenced out the real admin's heartbeats."""
    settings = make_settings(ElectionSettings, election_eligible=False)
    service = ElectionService(settings)  # type: ignore[arg-type]
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        nc = await nats.connect(settings.nats_url)
        try:
            node_a = await _replica(nc, "node-a", settings.data_dir)
            for data in (b"", b"{}", b'{"term": 7}', b'{"node": 5, "term": 1}', b"[1]"):
                subject = "chorus.election.heartbeat"
                await nc.publish(subject, data, headers=node_a.sign_headers(subject, data))
            # a real heartbeat after the noise: it is taken, so the noise was read first
            await _say(nc, node_a, "heartbeat", b'{"node": "node-a", "term": 3}')
            await nc.flush()
            await wait_until(
                lambda: (
                    service.participant is not None and service.participant.rules.admin == "node-a"
                ),
                timeout=10,
                message="the real heartbeat seen",
            )
            view = (await client.get("/v1/admin")).json()
            assert view["admin"] == "node-a" and view["term"] == 3
        finally:
            await nc.close()


async def _replica(nc: Any, node: str, data_dir: Any) -> ServiceSigner:
    """A registered election replica's key, as a second election process would hold it."""
    kv = await nc.jetstream().key_value(BUCKET_REGISTRY)
    return await ServiceSigner.open(kv, "election", node, data_dir / "other" / node)


async def _say(nc: Any, signer: ServiceSigner | None, event: str, data: bytes) -> None:
    subject = f"chorus.election.{event}"
    headers = signer.sign_headers(subject, data) if signer is not None else None
    await nc.publish(subject, data, headers=headers)


async def test_forged_heartbeats_winners_and_stepdowns_are_refused(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    """Any NATS client could keep a dead admin alive, install one, or unseat the real one by
    publishing on chorus.election.*; only a registered election replica's signed word counts."""
    settings = make_settings(ElectionSettings, election_eligible=False)
    service = ElectionService(settings)  # type: ignore[arg-type]
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        nc = await nats.connect(settings.nats_url)
        try:
            node_a = await _replica(nc, "node-a", settings.data_dir)
            await _say(nc, node_a, "heartbeat", b'{"node": "node-a", "term": 3}')
            p = service.participant
            assert p is not None
            await wait_until(lambda: p.rules.admin == "node-a", timeout=10, message="real admin")

            mallory = AgentKey.generate()
            body = b'{"node": "zz", "term": 9}'
            await _say(nc, None, "heartbeat", body)  # unsigned
            for sender in ("svc-election-zz", node_a.sender):  # unregistered; wrong key
                headers = {HEADER_SENDER: sender, HEADER_SEQ: str(time.time_ns() // 1000)}
                signed = b"chorus-signed-v1\nchorus.election.heartbeat\n%s\n%s" % (
                    headers[HEADER_SEQ].encode(),
                    body,
                )
                headers[HEADER_SIG] = mallory.sign(signed)
                await nc.publish("chorus.election.heartbeat", body, headers=headers)
            await _say(nc, node_a, "heartbeat", body)  # node-a's key, speaking for zz
            await _say(nc, None, "winner", b'{"node": "zz", "term": 10, "score": {}}')
            await _say(nc, None, "stepdown", b'{"node": "node-a", "term": 3, "reason": "manual"}')
            # the real replica goes on being heard: were the forged term 9 taken, it would
            # fence out this heartbeat of term 4
            await _say(nc, node_a, "heartbeat", b'{"node": "node-a", "term": 4}')
            await nc.flush()
            await wait_until(lambda: p.rules.admin_term == 4, timeout=10, message="term 4")
            assert p.verifier is not None
            await wait_until(
                lambda: sum(p.verifier.forged.values()) == 6,  # type: ignore[union-attr]
                timeout=10,
                message="six forgeries refused",
            )
            assert p.verifier.forged == {
                ("election", "unsigned"): 3,
                ("election", "unknown_sender"): 1,
                ("election", "bad_signature"): 1,
                ("election", "not_service"): 1,
            }
            view = (await client.get("/v1/admin")).json()
            assert view["admin"] == "node-a" and view["term"] == 4
            assert p.rules.state.value == "complete"  # the forged step-down started nothing
            metrics = (await client.get("/metrics")).text
            forged = [
                line
                for line in metrics.splitlines()
                if line.startswith("chorus_bus_forged_total{") and 'kind="election"' in line
            ]
            assert sum(float(line.rsplit(" ", 1)[1]) for line in forged) == 6
        finally:
            await nc.close()


class FakeLicensing:
    """Answers the license gate's grant and renew requests on the bus, while ``granting``."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.granting = True
        self.leases = 0

    async def start(self) -> None:
        for verb in ("grant", "renew", "release"):
            await self.nc.subscribe(f"chorus.svc.licensing.lease-{verb}", cb=self._answer)

    async def _answer(self, msg: Any) -> None:
        if msg.subject.endswith("release"):
            await msg.respond(b'{"ok": true}')
            return
        if not self.granting:
            body = {"ok": False, "error": {"status": 409, "detail": "no seat for you"}}
        else:
            self.leases += 1
            body = {"ok": True, "lease_id": "l1", "seat": 1, "expires_in_seconds": 1.0}
        await msg.respond(json.dumps(body).encode())


def _ticks(seconds: float) -> Iterator[None]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield


async def test_a_replica_without_a_license_seat_neither_stands_nor_acts(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    """With licensing required, eligibility follows the seat: a replica whose seat goes away
    steps down (reason license_unavailable), announces itself ineligible and stops acting;
    it stands again when a seat is granted."""
    settings = make_settings(ElectionSettings, license_required=True, node_id="lic-1")
    service = ElectionService(settings)  # type: ignore[arg-type]
    nc = await nats.connect(settings.nats_url)
    licensing = FakeLicensing(nc)
    await licensing.start()
    try:
        async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
            participant = service.participant
            assert participant is not None
            await wait_until(lambda: participant.is_admin, timeout=10, message="admin")
            licensing.granting = False
            await wait_until(lambda: not participant.is_admin, timeout=5, message="step-down")
            m = service.election_metrics
            reasons = m.stepdowns.labels("license_unavailable")._value.get()
            assert reasons == 1
            # it stays out: never tries for the lease, announces eligible: false, does not act
            acted = m.admin_actions._value.get()
            for _ in _ticks(2.0):
                assert not participant.is_admin
                await asyncio.sleep(0.1)
            assert m.admin_actions._value.get() == acted
            (me,) = (await client.get("/v1/candidates")).json()["candidates"]
            assert me["node_id"] == "lic-1" and me["eligible"] is False
            view = (await client.get("/v1/admin")).json()
            assert view["is_self"] is False and view["eligible"] is False
            licensing.granting = True
            await wait_until(lambda: participant.is_admin, timeout=10, message="admin again")
    finally:
        await nc.close()
