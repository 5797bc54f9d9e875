"""Pytest fixtures: real nats-server and redis-server per test, on free ports, stopped after.

Registered for the whole repository from the root pyproject (``-p``).
``--nats-url`` runs the bus tests against an existing server or cluster instead
(fault tests that restart the server are skipped then).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chorus_common.config import ChorusSettings
from chorus_common.natsserver import NatsServer
from chorus_common.testing._redis import RedisServer

__all__ = [
    "bus_client",
    "make_settings",
    "nats_server",
    "nats_url",
    "pytest_addoption",
    "redis_server",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--nats-url",
        default=None,
        help="use this NATS server/cluster instead of starting one per test",
    )


@pytest.fixture
def nats_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NatsServer]:
    """A fresh nats-server -js with its own store; tests may kill, pause and restart it."""
    if request.config.getoption("--nats-url"):
        pytest.skip("test controls its own nats-server; not possible with --nats-url")
    server = NatsServer(store_dir=tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nats_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    external = request.config.getoption("--nats-url")
    if external:
        yield str(external)
        return
    server = NatsServer(store_dir=tmp_path / "nats-url").start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def make_settings(nats_url: str, tmp_path: Path) -> Callable[..., ChorusSettings]:
    """Settings for an in-process service on this test's bus, with fast health checks."""

    def build(cls: type[ChorusSettings] = ChorusSettings, **overrides: Any) -> ChorusSettings:
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "http_port": 0,
            "health_interval_seconds": 0.2,
            "health_timeout_seconds": 2.0,
            "data_dir": tmp_path / "data",
            "admin_token": "test-admin-token",
            "node_id": "test-node",
            # the one place tests turn the license gate off: a test about licensing turns
            # it back on (license_required=True) and runs a licensing service beside it
            "license_required": False,
            # reads open, as on a laptop: tests of scopes (the behaviour suite's, the
            # constellation's) turn it off and send scoped tokens
            "public_read": True,
        }
        values.update(overrides)
        return cls(**values)

    return build


@pytest.fixture
async def bus_client(nats_url: str) -> AsyncIterator[Any]:
    """A connected :class:`chorus_common.bus.Bus` with the topology declared."""
    from chorus_common.bus import Bus

    bus = Bus(ChorusSettings(nats_url=nats_url), name="test-client")
    await bus.connect(timeout=10)
    try:
        yield bus
    finally:
        await bus.close()
