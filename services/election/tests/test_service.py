"""The shared service behaviour, run against the election service."""

from collections.abc import Callable

import httpx
import nats

from chorus_common.config import ChorusSettings
from chorus_common.testing import serve_in_process, wait_until
from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_election import ElectionService
from chorus_election.service import ElectionSettings


class TestElectionBehaviour(ServiceBehaviour):
    service_class = ElectionService
    #: the participant tells election events apart by the last token of chorus.election.*
    poison_subjects = tuple(
        f"chorus.election.{event}"
        for event in ("candidacy", "heartbeat", "discovery_request", "started", "winner")
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
            for data in (b"", b"{}", b'{"term": 7}', b'{"node": 5, "term": 1}', b"[1]"):
                await nc.publish("chorus.election.heartbeat", data)
            # a real heartbeat after the noise: it is taken, so the noise was read first
            await nc.publish("chorus.election.heartbeat", b'{"node": "node-a", "term": 3}')
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
