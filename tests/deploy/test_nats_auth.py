"""The whole constellation under its own NATS users: every service ready and doing its work.

The NATS server runs the generated ``deploy/compose/nats-auth.conf`` (the file compose and the
Helm chart ship) with the passwords in its environment; each service connects as its own user.
A subject a service uses without being allowed shows here as a service that never gets ready,
a call that fails, or a violation in the server's log.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from chorus_cli import nats_users
from chorus_cli.constellation import Constellation
from chorus_common import nats_auth
from chorus_common.agent import Agent
from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.feeds import FeedWriter
from chorus_common.natsserver import NatsServer
from chorus_common.sealed import RoleKeyPair
from chorus_common.signing import AgentKey
from chorus_common.testing import wait_for
from chorus_common.ucxl_client import open_record

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "deploy" / "nats" / "generate.py"


def test_generated_authorization_files_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = (ROOT / "deploy/compose/nats-auth.conf").read_text()
    assert text == nats_users.render_authorization()
    assert (ROOT / "deploy/helm/chorus/files/nats-auth.conf").read_text() == text


def test_generator_prints_passwords_for_every_user() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--passwords"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    pairs = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(pairs) == {u.password_env for u in nats_users.USERS}
    assert all(p[0].isalpha() and p.isalnum() for p in pairs.values())


_wait = wait_for


class Running:
    """The constellation's URLs and admin token, for the calls below."""

    def __init__(self, c: Constellation, server: NatsServer, passwords: dict[str, str]) -> None:
        self.c, self.server, self.passwords = c, server, passwords
        self.http = httpx.Client(timeout=10, headers={"Authorization": f"Bearer {c.admin_token}"})

    def url(self, instance: str) -> str:
        return str(next(p.url for p in self.c.processes if p.instance == instance))

    def gauge(self, instance: str, name: str) -> float | None:
        """A gauge's value in the instance's /metrics (the first series of that name)."""
        for line in self.http.get(self.url(instance) + "/metrics").text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def get(self, instance: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.get(self.url(instance) + path, **kwargs)
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture
def secured_constellation(tmp_path: Path) -> Iterator[Running]:
    passwords = nats_auth.new_passwords(nats_users.USERS)
    server = NatsServer(
        store_dir=tmp_path / "nats",
        extra_config=(ROOT / "deploy/compose/nats-auth.conf").read_text(),
        env=passwords,
    ).start()
    data = tmp_path / "up"
    data.mkdir()
    c = Constellation(
        data_dir=data,
        nats_url=server.url,
        per_service_env={
            name: nats_auth.client_env(user, passwords)
            for name, user in nats_users.SERVICE_USERS.items()
        },
    )
    try:
        started = time.monotonic()
        procs = c.start_services()
        deadline = time.monotonic() + 60
        for p in procs:
            while not p.is_ready():
                assert p.running, f"{p.instance} exited:\n{p.log_tail()}"
                assert time.monotonic() < deadline, f"{p.instance} not ready:\n{p.log_tail()}"
                time.sleep(0.1)
        print(
            f"constellation ready under per-service NATS users in {time.monotonic() - started:.1f}s"
        )
        running = Running(c, server, passwords)
        try:
            yield running
        finally:
            running.http.close()
    finally:
        c.stop()
        server.stop()


@pytest.mark.slow
def test_every_service_works_under_its_own_nats_user(secured_constellation: Running) -> None:
    r = secured_constellation
    c = r.c

    # licensing answered every other service's seat request over NATS micro
    holders = set(r.get("licensing", "/v1/license")["holders"])
    assert holders == {p.instance for p in c.processes} - {"licensing"}

    # election: an admin is elected, holding the admin lease
    admin = _wait(
        lambda: (v := r.get("election", "/v1/admin"))["admin"] and v,
        15,
        "an admin elected",
    )
    assert admin["admin"] == "election" and admin["term"] >= 1 and admin["is_self"]

    # backbeat: a faster tempo (a KV write of the beat clock), then frames flow
    resp = r.http.put(r.url("backbeat") + "/v1/tempo", json={"tempo_bpm": 600})
    assert resp.status_code == 200, resp.text
    _wait(lambda: r.get("backbeat", "/v1/tempo")["beat_index"] > 0, 15, "beats")
    index = r.get("backbeat", "/v1/tempo")["beat_index"]
    _wait(lambda: r.get("backbeat", "/v1/tempo")["beat_index"] >= index + 3, 10, "more beats")

    # pubsub-gateway: register a key, publish a signed envelope, JetStream acknowledges it
    key = AgentKey.generate()
    resp = r.http.post(
        r.url("pubsub-gateway") + "/v1/agents/agent-g/keys", json={"public_key": key.public_key}
    )
    assert resp.status_code == 201, resp.text
    env = FeedWriter("agent-g", key).seal(
        Envelope(
            type=MessageType.STATUS_UPDATE,
            sender="agent-g",
            to_roles=["backend"],
            payload=SAMPLE_PAYLOADS[MessageType.STATUS_UPDATE],
        )
    )
    resp = r.http.post(r.url("pubsub-gateway") + "/v1/envelopes", json=env.model_dump(mode="json"))
    assert resp.status_code == 201, resp.text
    assert (
        resp.json()["seq"] >= 1 and "chorus.role.backend.status_update" in resp.json()["subjects"]
    )

    # dht: a role key (registry write), a put on one node, a decrypted get from another
    role = RoleKeyPair.generate()
    resp = r.http.post(
        r.url("dht-1") + "/v1/roles/architect/keys", json={"public_key": role.public_text}
    )
    assert resp.status_code == 201, resp.text
    address = quote("ucxl://gpt4:architect@chorus:auth/*^/decisions/d1.json", safe="")
    resp = r.http.put(
        r.url("dht-2") + f"/v1/ucxl/{address}",
        json={"value": {"decision": "per-service users"}, "roles": ["architect"]},
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["replicas"]) == 3  # DHT RPC reached every node
    got = r.get("dht-3", f"/v1/ucxl/{address}")  # sealed; opened here with the role key
    assert open_record(got, unquote(address), "architect", role) == {
        "decision": "per-service users"
    }

    # hap: a person's HMMM message, signed and published
    resp = r.http.post(r.url("hap") + "/v1/hmmm", json={"text": "users per service?"})
    assert resp.status_code == 201, resp.text

    # coordinator: a task created over REST, claimed by an SDK agent as the "agent" user
    resp = r.http.post(
        r.url("coordinator") + "/v1/tasks",
        json={"id": "t-auth", "repository": "chorus", "title": "auth everywhere"},
    )
    assert resp.status_code == 201, resp.text
    claimed = asyncio.run(_agent_claims(r, "t-auth"))
    assert claimed["assignee"] == "builder-1"
    task = r.get("coordinator", "/v1/tasks/t-auth")
    assert task["status"] == "completed" and task["assignee"] == "builder-1"

    # the coordinator holds its own leader lease (leader.coordinator) and runs the assignment loop
    _wait(lambda: r.gauge("coordinator", "chorus_coordination_is_leader") == 1.0, 10, "a leader")

    # the coordinator's task announcement and the agent's claim are in the stream
    stored = r.get("pubsub-gateway", "/v1/messages", params={"subject": "chorus.coord.>"})
    types = {m["envelope"]["type"] for m in stored["messages"]}
    assert {"task_announcement", "task_claim", "task_complete"} <= types

    # backbeat heard other services' operations (their status claims on chorus.backbeat.status.*)
    _wait(
        lambda: (
            {o["kind"] for o in r.get("backbeat", "/v1/operations")["operations"]}
            >= {"pubsub.publish", "dht.store"}
        ),
        10,
        "operations reported on the beat",
    )

    # nothing anywhere was refused: not in the server's log, not in any service's log
    r.c.stop()
    server_log = r.server.log_path.read_text(errors="replace")
    assert "Violation" not in server_log, [
        line for line in server_log.splitlines() if "Violation" in line
    ]
    for p in c.processes:
        text = p.log_path.read_text(errors="replace").lower()
        assert "permissions violation" not in text, f"{p.instance}:\n{p.log_tail()}"
        assert "authorization violation" not in text, f"{p.instance}:\n{p.log_tail()}"


async def _agent_claims(r: Running, task_id: str) -> dict[str, Any]:
    settings = ChorusSettings(
        nats_url=r.server.url,
        nats_user=nats_users.AGENT.name,
        nats_password=r.passwords[nats_users.AGENT.password_env],
    )
    bus = Bus(settings, "builder-1")
    await bus.connect(timeout=10)
    agent = Agent(bus, "builder-1", capabilities=["python"], roles=["backend"])
    try:
        await agent.start()
        task: dict[str, Any] = await agent.claim(task_id)
        await agent.complete(task_id)
        return task
    finally:
        await agent.stop()
        await bus.close()
