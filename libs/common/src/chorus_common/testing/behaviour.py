"""The behaviour every service shares, as a test class each service's tests inherit.

``class TestElectionBehaviour(ServiceBehaviour): service_class = ElectionService``
runs: health endpoints, metrics with constant labels, a NATS micro PING/INFO,
problem+json errors, and a SIGTERM drain of the real ``python -m`` process.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx
import nats
import pytest

from chorus_common.config import ChorusSettings
from chorus_common.natsserver import free_port
from chorus_common.processes import ServiceProcess
from chorus_common.service import Service
from chorus_common.testing._inprocess import serve_in_process


class ServiceBehaviour:
    service_class: ClassVar[type[Service]]
    #: extra settings a service needs to start in tests
    settings_overrides: ClassVar[dict[str, Any]] = {}
    #: extra environment for the SIGTERM process test
    process_env: ClassVar[dict[str, str]] = {}

    @pytest.fixture
    async def running(
        self, make_settings: Callable[..., ChorusSettings]
    ) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
        settings = make_settings(self.service_class.settings_class, **self.settings_overrides)
        service = self.service_class(settings)
        async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
            yield service, client

    async def test_health_endpoints(self, running: tuple[Service, httpx.AsyncClient]) -> None:
        service, client = running
        for path in ("/health/live", "/livez"):
            resp = await client.get(path)
            assert resp.status_code == 200 and resp.json()["status"] == "alive"
        for path in ("/health/ready", "/readyz"):
            resp = await client.get(path)
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "ready"
        doc = (await client.get("/health")).json()
        assert doc["service"] == service.name and doc["ready"] is True
        checks = (await client.get("/health/checks")).json()["checks"]
        nats_check = next(c for c in checks if c["name"] == "nats")
        assert nats_check["critical"] is True and nats_check["status"] == "pass"
        assert nats_check["latency_ms"] is not None

    async def test_metrics_exposed_with_constant_labels(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        service, client = running
        await client.get("/health")
        text = (await client.get("/metrics")).text
        assert "chorus_bus_connected{" in text
        line = next(m for m in text.splitlines() if m.startswith("chorus_bus_connected{"))
        assert f'node_id="{service.settings.node_id}"' in line
        assert 'version="' in line and 'environment="' in line and 'cluster="' in line
        assert line.endswith(" 1.0")
        assert "chorus_system_http_requests_total{" in text

    async def test_nats_micro_ping_and_info(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        service, _ = running
        nc = await nats.connect(service.settings.nats_url)
        try:
            name = f"chorus-{service.name}"
            ping = json.loads((await nc.request(f"$SRV.PING.{name}", b"", timeout=2)).data)
            assert ping["name"] == name and ping["version"] == service.version
            info = json.loads((await nc.request(f"$SRV.INFO.{name}", b"", timeout=2)).data)
            assert any(
                e["subject"] == f"chorus.svc.{service.name}.health" for e in info["endpoints"]
            )
            health = json.loads(
                (await nc.request(f"chorus.svc.{service.name}.health", b"", timeout=2)).data
            )
            assert health["service"] == service.name and health["ready"] is True
        finally:
            await nc.close()

    async def test_errors_are_problem_json(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        _, client = running
        resp = await client.get("/no/such/route")
        assert resp.status_code == 404
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert body["status"] == 404 and body["detail"] and "Traceback" not in resp.text

    def test_sigterm_drains_within_ten_seconds(self, nats_url: str, tmp_path: Path) -> None:
        proc = ServiceProcess(
            instance=self.service_class.name,
            service=self.service_class.name,
            port=free_port(),
            env={
                "CHORUS_NATS_URL": nats_url,
                "CHORUS_DATA_DIR": str(tmp_path / "data"),
                "CHORUS_HEALTH_INTERVAL_SECONDS": "0.5",
                "CHORUS_ADMIN_TOKEN": "test-admin-token",
                **self.process_env,
            },
            log_path=tmp_path / "service.log",
        ).start()
        try:
            deadline = time.monotonic() + 30
            while not proc.is_ready():
                assert proc.running, proc.log_tail()
                assert time.monotonic() < deadline, f"not ready:\n{proc.log_tail()}"
                time.sleep(0.1)
            proc.signal(signal.SIGTERM)
            assert proc.proc is not None
            code = proc.proc.wait(timeout=10)
            assert code == 0, proc.log_tail()
        finally:
            proc.kill()
