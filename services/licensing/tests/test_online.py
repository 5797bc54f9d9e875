"""Online validation against a real authority process: grace, fail-closed, breaker, recovery."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chorus_common.natsserver import free_port
from chorus_common.processes import ServiceProcess
from chorus_common.testing import serve_in_process, wait_until
from chorus_licensing import LicensingService
from chorus_licensing.service import LicensingSettings

from .conftest import make_license

ADMIN = {"Authorization": "Bearer test-admin-token"}


def authority(nats_url: str, tmp_path: Path, lic: Path, pub: Path, port: int) -> ServiceProcess:
    proc = ServiceProcess(
        instance="authority",
        service="licensing",
        port=port,
        env={
            "CHORUS_NATS_URL": nats_url,
            "CHORUS_LICENSING_MODE": "authority",
            "CHORUS_LICENSE_FILE": str(lic),
            "CHORUS_LICENSE_ISSUER_KEY": str(pub),
            "CHORUS_NODE_ID": "authority",
            "CHORUS_DATA_DIR": str(tmp_path / "authority"),
        },
        log_path=tmp_path / "authority.log",
    ).start()
    deadline = time.monotonic() + 30
    while not proc.is_ready():
        assert proc.running and time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.05)
    return proc


async def test_grace_then_fail_closed_then_recovery(
    nats_url: str, tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    issued, _ = make_license(tmp_path, seats=3)
    port = free_port()
    upstream = authority(
        nats_url, tmp_path, issued.license_file, issued.issuer_public_key_file, port
    )
    settings = make_settings(
        LicensingSettings,
        license_file=issued.license_file,
        license_issuer_key=str(issued.issuer_public_key_file),
        license_upstream_url=f"http://127.0.0.1:{port}",
        license_grace_seconds=3600,
        license_validate_interval_seconds=0.2,
        license_breaker_failures=2,
        license_breaker_reset_seconds=0.6,
    )
    service = LicensingService(settings)
    offset = 0.0
    service.keeper.clock = lambda: (
        time.time() + offset
    )  # the 72 h grace is crossed by moving this clock
    try:
        async with (
            serve_in_process(service) as url,
            httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
        ):
            status = (await client.get("/v1/license")).json()
            assert status["valid"] and status["online"]["result"] == "valid"

            upstream.kill()
            await wait_until(
                lambda: service.keeper.online.result == "unreachable",
                timeout=10,
                message="upstream seen unreachable",
            )
            status = (await client.get("/v1/license")).json()
            assert status["valid"] is True  # inside the grace period
            assert 0 < status["online"]["grace_remaining_seconds"] <= 3600
            assert (await client.get("/health/ready")).status_code == 200
            assert (await client.post("/v1/leases", json={"holder": "h1"})).status_code == 201
            await wait_until(
                lambda: service.keeper.breaker.state.value == "open",
                timeout=10,
                message="breaker opens after repeated failures",
            )

            offset = 2 * 3600.0  # past the grace period
            await wait_until(
                lambda: not service.keeper.usable()[0], timeout=5, message="grace over"
            )
            refused = await client.post("/v1/leases", json={"holder": "h2"})
            assert refused.status_code == 403 and "grace" in refused.json()["detail"]

            async def not_ready() -> bool:
                return (await client.get("/health/ready")).status_code == 503

            await wait_until(not_ready, timeout=10, message="fail closed")
            assert (await client.get("/metrics")).text.count("chorus_licensing_breaker_state{") == 1

            upstream = authority(
                nats_url, tmp_path, issued.license_file, issued.issuer_public_key_file, port
            )
            # half-open: one probe goes out after the reset timeout, succeeds, the breaker closes
            await wait_until(
                lambda: service.keeper.breaker.state.value == "closed",
                timeout=15,
                message="breaker closes after a good probe",
            )

            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200

            await wait_until(ready, timeout=10, message="recovered")
            assert (await client.get("/v1/license")).json()["online"]["result"] == "valid"
    finally:
        upstream.kill()


def test_authority_refuses_unknown_and_revoked_licenses(nats_url: str, tmp_path: Path) -> None:
    issued, _ = make_license(tmp_path)
    port = free_port()
    proc = authority(nats_url, tmp_path, issued.license_file, issued.issuer_public_key_file, port)
    try:
        base = f"http://127.0.0.1:{port}/api/v1/licenses"
        good = {"license_id": issued.license.license_id, "cluster_id": "local"}
        assert httpx.post(f"{base}/validate", json=good).json()["valid"] is True
        other = httpx.post(f"{base}/activate", json={**good, "license_id": "lic-nope"}).json()
        assert other["valid"] is False and "unknown license" in other["reason"]
        wrong = httpx.post(f"{base}/heartbeat", json={**good, "cluster_id": "elsewhere"}).json()
        assert wrong["valid"] is False
    finally:
        proc.kill()
