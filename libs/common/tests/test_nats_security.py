"""TLS with a self-signed CA, and per-service subject permissions enforced by NATS."""

from pathlib import Path

import pytest

from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import UnavailableError
from chorus_common.natsserver import NatsServer
from chorus_common.testing._tls import make_tls


async def test_bus_over_tls_with_a_private_ca(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    server = NatsServer(
        store_dir=tmp_path / "nats",
        extra_config=f'tls {{\n  cert_file: "{tls.cert}"\n  key_file: "{tls.key}"\n}}',
    ).start()
    try:
        url = f"tls://127.0.0.1:{server.port}"
        bus = Bus(ChorusSettings(nats_url=url, nats_tls_ca=tls.ca), "tls-client")
        await bus.connect(timeout=10)
        ack = await bus.publish(
            Envelope(
                type=MessageType.TASK_CLAIM,
                sender="a",
                payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
            )
        )
        assert ack[0].seq == 1
        await bus.close()

        untrusted = Bus(ChorusSettings(nats_url=url), "no-ca")
        with pytest.raises(UnavailableError):
            await untrusted.connect(timeout=1.5)
    finally:
        server.kill()


PERMISSIONS = """
authorization {
  users = [
    {user: admin, password: admin-secret}
    {user: hap, password: hap-secret, permissions: {
      publish: {allow: ["chorus.hmmm.>", "$JS.API.>", "_INBOX.>"]}
      subscribe: {allow: ["chorus.>", "_INBOX.>"]}
    }}
  ]
}
"""


async def test_service_is_refused_outside_its_subject_permissions(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "nats", extra_config=PERMISSIONS).start()
    try:
        admin = Bus(
            ChorusSettings(nats_url=server.url, nats_user="admin", nats_password="admin-secret"),
            "admin",
        )
        await admin.connect(timeout=10)  # declares the streams
        await admin.close()

        hap = Bus(
            ChorusSettings(nats_url=server.url, nats_user="hap", nats_password="hap-secret"), "hap"
        )
        await hap.connect(timeout=10, declare=False)
        allowed = Envelope(
            type=MessageType.META_DISCUSSION,
            sender="human-1",
            thread="t1",
            payload=SAMPLE_PAYLOADS[MessageType.META_DISCUSSION],
        )
        assert (await hap.publish(allowed))[0].stream == "CHORUS_EVENTS"
        forbidden = Envelope(
            type=MessageType.TASK_CLAIM,
            sender="human-1",
            payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
        )
        with pytest.raises(UnavailableError) as info:
            await hap.publish(forbidden, timeout=1)
        assert "task_claim" in info.value.detail
        await hap.close()

        wrong = Bus(
            ChorusSettings(nats_url=server.url, nats_user="hap", nats_password="nope"), "wrong"
        )
        with pytest.raises(UnavailableError):
            await wrong.connect(timeout=1.5)
    finally:
        server.kill()
