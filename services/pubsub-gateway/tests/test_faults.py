"""The gateway as a real process: NATS killed and restarted mid-run, secrets never in its log."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.feeds import FeedWriter
from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess
from chorus_common.signing import AgentKey
from chorus_common.testing import wait_for

from .conftest import ADMIN

_wait = wait_for


@pytest.mark.slow
def test_nats_restart_loses_no_acknowledged_envelope_and_secrets_stay_out_of_logs(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    proc = ServiceProcess(
        instance="pubsub-gateway",
        service="pubsub-gateway",
        port=free_port(),
        env={
            "CHORUS_NATS_URL": nats_server.url,
            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
            "CHORUS_ADMIN_TOKEN": "test-admin-token",
            "CHORUS_HEALTH_INTERVAL_SECONDS": "0.3",
            "CHORUS_LOG_LEVEL": "DEBUG",
            "CHORUS_DATA_DIR": str(tmp_path / "data"),
        },
        log_path=tmp_path / "gateway.log",
    ).start()
    secret = "xoxb-123456789012-SuperSecretSlackToken"
    try:
        _wait(proc.is_ready, 30, f"gateway ready:\n{proc.log_tail()}")
        client = httpx.Client(base_url=proc.url, headers=ADMIN, timeout=10)
        key = AgentKey.generate()
        assert (
            client.post("/v1/agents/a1/keys", json={"public_key": key.public_key}).status_code
            == 201
        )
        writer = FeedWriter("a1", key)

        def send(i: int) -> httpx.Response:
            env = writer.seal(
                Envelope(
                    type=MessageType.TASK_HELP_REQUEST,
                    sender="a1",
                    payload={
                        "task_id": f"t{i}",
                        "agent": "a1",
                        "problem": f"token {secret} rejected",
                    },
                )
            )
            return client.post("/v1/envelopes", json=env.model_dump(mode="json"))

        acked = [send(i).json()["id"] for i in range(20)]
        nats_server.kill()  # SIGKILL mid-run
        before = writer.state
        refused = send(20)
        assert refused.status_code == 503 and refused.json()["code"] == "unavailable"
        _wait(lambda: client.get("/health/ready").status_code == 503, 15, "not ready without NATS")
        nats_server.start()
        _wait(proc.is_ready, 30, f"ready again without a restart:\n{proc.log_tail()}")
        # the refused envelope was never acknowledged: the agent sends it again and goes on
        writer.state = before
        for i in range(20, 25):
            resp = send(i)
            if resp.status_code != 201:
                pytest.fail(resp.text)
            acked.append(resp.json()["id"])

        stored = []
        seq = 1
        while True:
            page = client.get(
                "/v1/messages", params={"subject": "chorus.hmmm.*.>", "from_seq": seq, "limit": 100}
            ).json()
            if not page["messages"]:
                break
            stored += [m["envelope"]["id"] for m in page["messages"]]
            seq = page["next_seq"]
        assert stored == acked  # every acknowledged envelope, once, in order
        report = client.get("/v1/feeds/a1/verify").json()
        assert report["ok"], report
    finally:
        proc.terminate()
    log = proc.log_path.read_text()
    assert "SuperSecretSlackToken" not in log
    raw = b"".join(p.read_bytes() for p in (nats_server.store_dir / "jetstream").rglob("*.blk"))
    assert b"SuperSecretSlackToken" not in raw and b"[REDACTED:slack_token]" in raw
