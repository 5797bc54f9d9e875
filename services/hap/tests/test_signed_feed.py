"""A person is never shown a service's word the service did not sign: a forged escalation in
the coordinator's name stays out of HAP's live feed (and is counted), a signed one appears."""

from __future__ import annotations

from pathlib import Path

import nats

from chorus_common.bus import Bus
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.feeds import FeedWriter
from chorus_common.service_signing import ServiceSigner
from chorus_common.signing import AgentKey
from chorus_common.subjects import primary_subject
from chorus_common.testing import wait_until
from chorus_hap.portal import Portal


def _escalation(sender: str, reason: str) -> Envelope:
    return Envelope(
        type=MessageType.ESCALATION_TRIGGER,
        sender=sender,
        thread="s-1",
        payload={"thread": "s-1", "reason": reason, "rounds": 10},
    )


async def test_forged_service_envelopes_stay_out_of_the_live_feed(
    bus_client: Bus, nats_url: str, tmp_path: Path
) -> None:
    portal = Portal(bus_client, tmp_path, quorum=1, role="maintainer", dht_url=None)
    await portal.start()
    plain = await nats.connect(nats_url)
    try:
        coordinator = await ServiceSigner.open(bus_client, "coordinator", "c1", tmp_path / "c1")
        forged = [
            _escalation("coordinator", "forged: the old unsigned sender"),
            _escalation(coordinator.sender, "forged: no signature"),
            FeedWriter(coordinator.sender, AgentKey.generate()).seal(
                _escalation(coordinator.sender, "forged: another key")
            ),
        ]
        real = coordinator.seal(_escalation("x", "agents disagree"))
        for env in [*forged, real]:
            await plain.publish(primary_subject(env), env.encode())
        await plain.flush()
        await wait_until(
            lambda: any(i.text == "agents disagree" for i in portal.recent),
            timeout=10,
            message="the signed escalation shown",
        )
        shown = [i.text for i in portal.recent]
        assert not [t for t in shown if t.startswith("forged")], shown
        assert portal.verifier is not None
        assert portal.verifier.forged == {
            ("envelope", "unsigned"): 2,
            ("envelope", "bad_signature"): 1,
        }
    finally:
        await plain.close()
        await portal.stop()
