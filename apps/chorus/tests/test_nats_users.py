"""The per-service NATS users of chorus_cli.nats_users, enforced by a real nats-server.

The whole constellation running under these users is in tests/deploy/test_nats_auth.py;
here each user is shown refused when it steps outside its lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from chorus_cli import nats_users
from chorus_cli.roster import SERVICE_MODULES
from chorus_common import nats_auth
from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import UnavailableError
from chorus_common.leadership import LeaseRecord
from chorus_common.natsserver import NatsServer, nats_server_binary
from chorus_common.service_signing import SERVICE_NAMES, registry_key
from chorus_common.subjects import routes
from chorus_common.topology import BUCKET_ELECTION, BUCKET_REGISTRY, BUCKET_TASKS

PASSWORDS = nats_auth.new_passwords(nats_users.USERS)


def test_every_service_has_its_own_user_and_password_variable() -> None:
    assert set(nats_users.SERVICE_USERS) == set(SERVICE_MODULES)
    names = [u.name for u in nats_users.USERS]
    assert len(names) == len(set(names)) and {"admin", "agent"} <= set(names)
    variables = {u.password_env for u in nats_users.USERS}
    assert len(variables) == len(names)
    assert nats_users.PUBSUB_GATEWAY.password_env == "CHORUS_NATS_PASSWORD_PUBSUB_GATEWAY"


def test_the_beat_clock_key_is_the_one_backbeat_writes() -> None:
    backbeat = pytest.importorskip("chorus_backbeat.service")
    assert nats_users.BACKBEAT.may_publish(f"$KV.{BUCKET_ELECTION}.{backbeat.CLOCK_KEY}")


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_route_of_every_envelope_is_open_to_envelope_publishers_only(
    message_type: MessageType,
) -> None:
    env = Envelope(
        type=message_type,
        sender="agent-1",
        to_roles=["backend"],
        project="chorus",
        thread="t1",
        payload=SAMPLE_PAYLOADS[message_type],
    )
    for subject in routes(env):
        for user in (nats_users.PUBSUB_GATEWAY, nats_users.HAP, nats_users.AGENT):
            assert user.may_publish(subject), (user.name, subject)
        for user in (
            nats_users.ELECTION,
            nats_users.DHT,
            nats_users.LICENSING,
            nats_users.BACKBEAT,
        ):
            assert not user.may_publish(subject), (user.name, subject)


def test_passwords_read_back_as_strings() -> None:
    for _ in range(200):
        password = nats_auth.new_password()
        assert password[0].isalpha() and password.isalnum() and len(password) == 32


def _check_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_nats_server_accepts_the_block_and_refuses_to_start_without_a_password(
    tmp_path: Path,
) -> None:
    config = tmp_path / "nats.conf"
    config.write_text('listen: "127.0.0.1:-1"\n' + nats_users.render_authorization())
    ok = _check_config(config, PASSWORDS)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = {k: v for k, v in PASSWORDS.items() if k != "CHORUS_NATS_PASSWORD_DHT"}
    refused = _check_config(config, missing)
    assert refused.returncode != 0
    assert "CHORUS_NATS_PASSWORD_DHT" in refused.stdout + refused.stderr


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server whose only users are the generated ones, topology declared by admin."""
    server = NatsServer(
        store_dir=tmp_path / "nats",
        extra_config=nats_users.render_authorization(),
        env=PASSWORDS,
    ).start()
    try:
        yield server
    finally:
        server.kill()


class Connection:
    """A raw client as one user, collecting the asynchronous errors the server sends it."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc, self.errors = nc, errors

    async def refused(self, what: str, subject: str, wait: float = 2.0) -> bool:
        """Whether the server reported a ``what`` (publish/subscription) violation on ``subject``.

        The server answers a violation before the PONG of the flush that follows it, so
        a short ``wait`` after the flush is enough to see that none came.
        """
        await self.nc.flush(timeout=2)
        needle = f'permissions violation for {what} to "{subject}"'.lower()
        deadline = asyncio.get_running_loop().time() + wait
        while not any(needle in e.lower() for e in self.errors):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@contextlib.asynccontextmanager
async def connect(server: NatsServer, user: nats_auth.NatsUser) -> AsyncIterator[Connection]:
    errors: list[str] = []

    async def collect(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        server.url,
        user=user.name,
        password=PASSWORDS[user.password_env],
        error_cb=collect,
        allow_reconnect=False,
    )
    try:
        yield Connection(nc, errors)
    finally:
        await nc.close()


def settings(server: NatsServer, user: nats_auth.NatsUser) -> ChorusSettings:
    return ChorusSettings(
        nats_url=server.url, nats_user=user.name, nats_password=PASSWORDS[user.password_env]
    )


#: (user, a subject outside its lists) — each one a thing that service must never do
FORBIDDEN_PUBLISHES = [
    (nats_users.HAP, "chorus.election.heartbeat"),  # speak for the admin
    (nats_users.PUBSUB_GATEWAY, "chorus.election.winner"),
    (nats_users.AGENT, "chorus.election.candidacy"),
    (nats_users.DHT, f"$KV.{BUCKET_ELECTION}.leader.admin"),  # take the admin lease
    (nats_users.COORDINATOR, f"$KV.{BUCKET_ELECTION}.leader.admin"),
    (nats_users.BACKBEAT, f"$KV.{BUCKET_ELECTION}.leader.coordinator"),
    (nats_users.ELECTION, f"$KV.{BUCKET_TASKS}.task.t1"),  # rewrite the task board
    (nats_users.HAP, f"$KV.{BUCKET_TASKS}.task.t1"),
    (nats_users.LICENSING, "chorus.coord.task_claim"),  # publish envelopes
    (nats_users.BACKBEAT, "chorus.hmmm.t1.meta_discussion"),
    (nats_users.ELECTION, "chorus.dht.rpc.dht-1"),  # call a DHT node
    (nats_users.HAP, "chorus.svc.coordinator.claim"),  # claim tasks over RPC
    (nats_users.PUBSUB_GATEWAY, "_INBOX.x"),  # forge a reply nobody asked it for
    (nats_users.COORDINATOR, "$JS.API.STREAM.DELETE.CHORUS_EVENTS"),  # destroy the bus
    (nats_users.AGENT, "$JS.API.STREAM.PURGE.CHORUS_EVENTS"),
]


async def test_each_service_is_refused_outside_its_publish_permissions(
    secured: NatsServer,
) -> None:
    admin = Bus(settings(secured, nats_users.ADMIN), "admin")
    await admin.connect(timeout=10)
    await admin.close()
    for user, subject in FORBIDDEN_PUBLISHES:
        assert not user.may_publish(subject), (user.name, subject)
        async with connect(secured, user) as conn:
            await conn.nc.publish(subject, b"{}")
            assert await conn.refused("publish", subject), (user.name, subject, conn.errors)
    # and an allowed publish of each service user passes without complaint
    for user, subject in [
        (nats_users.HAP, "chorus.hmmm.t1.meta_discussion"),
        (nats_users.ELECTION, "chorus.election.heartbeat"),
        (nats_users.DHT, "chorus.dht.announce"),
        (nats_users.BACKBEAT, "chorus.backbeat.bar"),
    ]:
        async with connect(secured, user) as conn:
            await conn.nc.publish(subject, b"{}")
            assert not await conn.refused("publish", subject, wait=0.1), conn.errors
            assert conn.errors == []


async def test_each_service_is_refused_outside_its_subscribe_permissions(
    secured: NatsServer,
) -> None:
    for user, subject in [
        (nats_users.DHT, "chorus.election.*"),
        (nats_users.COORDINATOR, "chorus.>"),
        (nats_users.LICENSING, "$SRV.PING.chorus-election"),  # answer discovery for another
        (nats_users.ELECTION, "chorus.svc.licensing.lease-grant"),  # hand out seats
        (nats_users.AGENT, "$KV.>"),
    ]:
        assert not user.may_subscribe(subject)
        async with connect(secured, user) as conn:
            await conn.nc.subscribe(subject)
            assert await conn.refused("subscription", subject), (user.name, subject, conn.errors)


async def test_the_bus_of_a_service_fails_to_publish_what_is_not_its_own(
    secured: NatsServer,
) -> None:
    """Through the real Bus and KV API: refused writes are never acknowledged, nothing changes."""
    election = Bus(settings(secured, nats_users.ELECTION), "election")
    await election.connect(timeout=10)  # declares streams and buckets as any service does
    lease = await election.jetstream.key_value(BUCKET_ELECTION)
    revision = await lease.create("leader.admin", LeaseRecord("election-1", 1, 5.0).encode())

    dht = Bus(settings(secured, nats_users.DHT), "dht")
    await dht.connect(timeout=10)
    stolen = await dht.jetstream.key_value(BUCKET_ELECTION)
    with pytest.raises(Exception):  # noqa: B017 - the server drops it: no ack, a timeout
        await asyncio.wait_for(
            stolen.put("leader.admin", LeaseRecord("dht-1", 2, 5.0).encode()), 1.5
        )
    entry = await lease.get("leader.admin")
    assert entry.revision == revision
    assert LeaseRecord.decode(entry.value or b"").holder == "election-1"

    backbeat = Bus(settings(secured, nats_users.BACKBEAT), "backbeat")
    await backbeat.connect(timeout=10)
    claim = Envelope(
        type=MessageType.TASK_CLAIM,
        sender="backbeat",
        payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
    )
    with pytest.raises(UnavailableError) as info:
        await backbeat.publish(claim, timeout=1)
    assert "task_claim" in info.value.detail
    with pytest.raises(Exception):  # noqa: B017 - a denied API call gets no answer
        await asyncio.wait_for(backbeat.jetstream.delete_stream("CHORUS_EVENTS"), 1.5)
    assert (await election.jetstream.stream_info("CHORUS_EVENTS")).config.name == "CHORUS_EVENTS"
    for bus in (election, dht, backbeat):
        await bus.close()

    with pytest.raises(UnavailableError):
        await Bus(
            ChorusSettings(nats_url=secured.url, nats_user="dht", nats_password="wrong"), "wrong"
        ).connect(timeout=1.5)


def test_service_names_are_the_nats_users_of_services() -> None:
    assert set(SERVICE_NAMES) == set(nats_users.SERVICE_USERS)


def test_only_a_service_writes_its_own_identities() -> None:
    """An agent (or the gateway, or HAP, which write agent documents) cannot register as a
    service; no service can register as another."""
    mine = f"$KV.{BUCKET_REGISTRY}.{registry_key('coordinator', 'svc-coordinator-c1')}"
    theirs = f"$KV.{BUCKET_REGISTRY}.{registry_key('election', 'svc-election-e1')}"
    assert nats_users.COORDINATOR.may_publish(mine)
    assert not nats_users.COORDINATOR.may_publish(theirs)
    assert nats_users.ELECTION.may_publish(theirs)
    for user in (nats_users.AGENT, nats_users.PUBSUB_GATEWAY, nats_users.HAP, nats_users.DHT):
        assert not user.may_publish(mine) and not user.may_publish(theirs), user.name
