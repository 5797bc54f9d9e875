"""Seat leases: never more holders than seats, expired seats come back, the gate fails closed."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from chorus_common.config import ChorusSettings
from chorus_common.service import Service
from chorus_common.testing import serve_in_process, wait_until
from chorus_licensing import LicensingService
from chorus_licensing.service import LicensingSettings

from .conftest import make_license

ADMIN = {"Authorization": "Bearer test-admin-token"}

RACER = """
import asyncio, json, sys, httpx
async def main():
    url, who = sys.argv[1], sys.argv[2]
    async with httpx.AsyncClient(headers={"Authorization": "Bearer test-admin-token"}, timeout=30) as c:
        rs = await asyncio.gather(*[c.post(url + "/v1/leases", json={"holder": f"{who}-{i}"}) for i in range(10)])
    print(json.dumps([r.status_code for r in rs]))
asyncio.run(main())
"""


async def test_fifty_concurrent_requests_from_five_processes_get_exactly_ten_seats(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    issued, _ = make_license(tmp_path, seats=10)
    settings = make_settings(
        LicensingSettings,
        license_file=issued.license_file,
        license_issuer_key=str(issued.issuer_public_key_file),
        license_lease_ttl_seconds=60,
    )
    a, b = LicensingService(settings), LicensingService(settings)  # two replicas, one seat table
    async with serve_in_process(a) as url_a, serve_in_process(b) as url_b:
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", RACER, url, f"p{i}", stdout=asyncio.subprocess.PIPE
            )
            for i, url in enumerate([url_a, url_b, url_a, url_b, url_a])
        ]
        codes: list[int] = []
        for proc in procs:
            out, _ = await proc.communicate()
            codes += json.loads(out)
        assert len(codes) == 50
        assert codes.count(201) == 10 and codes.count(403) == 40
        async with httpx.AsyncClient() as client:
            held = (await client.get(f"{url_b}/v1/leases")).json()["leases"]
            status = (await client.get(f"{url_a}/v1/license")).json()
        assert len(held) == 10 and len({lease["seat"] for lease in held}) == 10
        assert status["seats"] == {"total": 10, "used": 10, "free": 0}


class GuardedService(Service):
    """A service that must hold a seat to change anything."""

    name = "guarded"

    def routes(self, app: FastAPI) -> None:
        @app.post("/v1/work")
        async def work() -> dict[str, bool]:
            return {"done": True}


async def test_gate_fails_closed_without_a_seat_and_resumes_by_itself(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    issued, _ = make_license(tmp_path, seats=1)
    lic_settings = make_settings(
        LicensingSettings,
        license_file=issued.license_file,
        license_issuer_key=str(issued.issuer_public_key_file),
        license_lease_ttl_seconds=1.0,
    )
    # health checks a minute apart: readiness must follow the seat, not the interval
    guarded = GuardedService(
        make_settings(
            ChorusSettings,
            license_required=True,
            node_id="guarded-1",
            health_interval_seconds=60,
        )
    )
    licensing = LicensingService(lic_settings)
    async with (
        serve_in_process(guarded, ready=False) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        # set up, but no licensing service yet: closed (before set-up it is 503, starting)
        await wait_until(lambda: guarded.setup_done.is_set(), timeout=15, message="set up")
        refused = await client.post("/v1/work")
        assert refused.status_code == 403 and "license" in refused.json()["detail"]
        assert (await client.get("/health/ready")).status_code == 503
        async with serve_in_process(licensing) as lic_url:
            await wait_until(lambda: guarded.ready, timeout=15, message="gate opens with a seat")
            assert (await client.post("/v1/work")).json() == {"done": True}
            async with httpx.AsyncClient() as c:
                holders = (await c.get(f"{lic_url}/v1/license")).json()["holders"]
            assert holders == ["guarded-1"]

        # licensing gone: the lease runs out, the gate closes
        async def closed() -> bool:
            return (await client.post("/v1/work")).status_code == 403

        await wait_until(closed, timeout=10, message="fails closed when the lease lapses")
        await wait_until(lambda: not guarded.ready, timeout=5, message="not ready without a seat")
        licensing2 = LicensingService(lic_settings)
        async with serve_in_process(licensing2):

            async def reopened() -> bool:
                return (await client.post("/v1/work")).status_code == 200

            await wait_until(reopened, timeout=15, message="resumes by itself")
            await wait_until(lambda: guarded.ready, timeout=5, message="ready again with a seat")


async def test_a_killed_holder_frees_its_seat_after_the_ttl(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    issued, _ = make_license(tmp_path, seats=1)
    settings = make_settings(
        LicensingSettings,
        license_file=issued.license_file,
        license_issuer_key=str(issued.issuer_public_key_file),
        license_lease_ttl_seconds=1.0,
    )
    service = LicensingService(settings)
    async with (
        serve_in_process(service) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
    ):
        grant = await client.post("/v1/leases", json={"holder": "doomed"})
        assert grant.status_code == 201
        # the holder dies without releasing: nobody renews
        assert (await client.post("/v1/leases", json={"holder": "next"})).status_code == 403
        started = time.monotonic()

        async def granted() -> bool:
            return (await client.post("/v1/leases", json={"holder": "next"})).status_code == 201

        await wait_until(granted, timeout=10, interval=0.1, message="seat reclaimed after TTL")
        assert time.monotonic() - started >= 0.5
        renew = await client.put(f"/v1/leases/{grant.json()['lease_id']}")
        assert renew.status_code in (404, 409)  # the old lease is gone
