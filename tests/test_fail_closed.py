"""Fail closed on every path: without a seat a service does no work — REST, NATS micro,
leader-only loops — and the licensing service takes a renewed license file without a restart.

Real parts throughout: a real nats-server, the real licensing service with a signed
license file, real coordinators, and the SDK agent claiming over NATS as agents do.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_common.agent import Agent
from chorus_common.bus import Bus
from chorus_common.errors import ForbiddenError
from chorus_common.leadership import current_term
from chorus_common.signing import AgentKey
from chorus_common.testing import metric_value, serve_in_process, wait_until
from chorus_coordinator import CoordinatorService
from chorus_coordinator.service import CoordinatorSettings
from chorus_licensing import LicensingService
from chorus_licensing.issuing import IssuedLicense, issue
from chorus_licensing.service import LicensingSettings

ADMIN = {"Authorization": "Bearer test-admin-token"}


def licensing_settings(
    make_settings: Callable[..., Any], issued: IssuedLicense, **kw: Any
) -> LicensingSettings:
    values: dict[str, Any] = {
        "node_id": "licensing",
        "license_file": issued.license_file,
        "license_issuer_key": str(issued.issuer_public_key_file),
        "license_lease_ttl_seconds": 1.0,
        **kw,
    }
    settings: LicensingSettings = make_settings(LicensingSettings, **values)
    return settings


def coordinator(make_settings: Callable[..., Any], node: str) -> CoordinatorService:
    return CoordinatorService(
        make_settings(CoordinatorSettings, node_id=node, license_required=True)
    )


async def announce(client: httpx.AsyncClient, *ids: str) -> None:
    for task_id in ids:
        resp = await client.post(
            "/v1/tasks", json={"id": task_id, "repository": "api", "title": f"work {task_id}"}
        )
        assert resp.status_code == 201, resp.text


async def test_an_unlicensed_coordinator_refuses_claim_progress_complete_over_nats_and_stops_leading(
    tmp_path: Path, make_settings: Callable[..., Any], bus_client: Bus
) -> None:
    issued = issue(tmp_path / "lic", AgentKey.generate(), customer="t", cluster_id="local", seats=4)
    lic_settings = licensing_settings(make_settings, issued)
    c1 = coordinator(make_settings, "c1")
    agent = Agent(bus_client, "ann")
    async with (
        serve_in_process(c1, ready=False) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
    ):
        async with serve_in_process(LicensingService(lic_settings)):
            await wait_until(lambda: c1.ready, timeout=15, message="c1 holds a seat")
            await announce(client, "t-1", "t-2")
            assert (await agent.claim("t-1"))["status"] == "claimed"
            await wait_until(lambda: c1.lease.is_leader, timeout=10, message="c1 leads")

        # licensing gone: the seat lease lapses, and with it every way to change the board
        await wait_until(lambda: not c1.licensed, timeout=10, message="the seat lapses")
        for verb, call in (
            ("claim", lambda: agent.claim("t-2")),
            ("progress", lambda: agent.progress("t-1", 50)),
            ("complete", lambda: agent.complete("t-1")),
        ):
            with pytest.raises(ForbiddenError) as refused:
                await call()
            assert refused.value.extra["reason"] == "license_unavailable", verb
            assert "license seat" in refused.value.detail
        rest = await client.post(
            "/v1/tasks", json={"id": "t-3", "repository": "api", "title": "more"}
        )
        assert rest.status_code == 403 and rest.json()["reason"] == "license_unavailable"
        assert (await client.get("/health/ready")).status_code == 503
        # the leader-only assignment loop stops: the lease is given up, not left to expire
        await wait_until(lambda: not c1.lease.is_leader, timeout=5, message="c1 stops leading")
        holder, _ = await current_term(c1.lease.kv, "coordinator")
        assert holder is None
        text = (await client.get("/metrics")).text
        assert metric_value(text, "chorus_coordination_is_leader") == 0
        board = (await client.get("/v1/tasks/t-1")).json()
        assert board["status"] == "claimed" and board.get("progress", 0) == 0  # nothing moved

        async with serve_in_process(LicensingService(lic_settings)):
            await wait_until(lambda: c1.ready, timeout=15, message="c1 takes a seat again")
            assert (await agent.complete("t-1"))["status"] == "completed"
            await wait_until(lambda: c1.lease.is_leader, timeout=10, message="c1 leads again")


async def test_with_one_seat_for_two_coordinators_every_sdk_claim_still_succeeds(
    tmp_path: Path, make_settings: Callable[..., Any], bus_client: Bus
) -> None:
    """The queue group hands requests to either replica; the unlicensed one refuses before
    doing anything, and the SDK sends the request again until the licensed one answers."""
    issued = issue(tmp_path / "lic", AgentKey.generate(), customer="t", cluster_id="local", seats=1)
    c1, c2 = coordinator(make_settings, "c1"), coordinator(make_settings, "c2")
    async with (
        serve_in_process(LicensingService(licensing_settings(make_settings, issued))),
        serve_in_process(c1, ready=False) as url1,
        serve_in_process(c2, ready=False) as url2,
    ):
        await wait_until(lambda: c1.ready or c2.ready, timeout=15, message="one holds the seat")
        await asyncio.sleep(1.5)  # a renewal or two: the seat stays where it is
        licensed, unlicensed = (c1, c2) if c1.ready else (c2, c1)
        assert not unlicensed.licensed
        url = url1 if licensed is c1 else url2
        async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
            ids = [f"q-{i}" for i in range(30)]
            await announce(client, *ids)
            agents = [Agent(bus_client, f"agent-{i}") for i in range(30)]
            claimed = await asyncio.gather(*(a.claim(t) for a, t in zip(agents, ids, strict=True)))
        assert [t["status"] for t in claimed] == ["claimed"] * 30
        refused = metric_value(
            (await httpx.AsyncClient().get(f"{url2 if licensed is c1 else url1}/metrics")).text,
            "chorus_system_errors_total",
            code="forbidden",
        )
        assert refused > 0  # the unlicensed replica did get requests, and refused them
        assert not unlicensed.lease.is_leader and licensed.lease.is_leader


async def test_licensing_takes_a_new_license_file_without_a_restart(
    tmp_path: Path,
    make_settings: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Missing at start → one clear error per service; written later → seats at once; a
    broken replacement never takes away the license in force; a renewal replaces it."""
    caplog.set_level(logging.INFO)
    directory = tmp_path / "mounted"
    issuer = AgentKey.generate()
    first = issue(tmp_path / "first", issuer, customer="t", cluster_id="local", seats=2)
    renewed = issue(tmp_path / "renewed", issuer, customer="t", cluster_id="local", seats=3)
    directory.mkdir()
    target = directory / "license.json"
    settings = make_settings(
        LicensingSettings,
        node_id="licensing",
        license_file=target,  # not there yet: an operator has not created the Secret
        license_issuer_key=str(first.issuer_public_key_file),
        license_lease_ttl_seconds=1.0,
    )
    licensing = LicensingService(settings)
    c1 = coordinator(make_settings, "c1")
    async with (
        serve_in_process(licensing, ready=False) as lic_url,
        serve_in_process(c1, ready=False) as url,
        httpx.AsyncClient() as client,
    ):
        await asyncio.sleep(7)  # past the gate's start-up grace, several retries
        ready = await client.get(f"{url}/health/ready")
        assert ready.status_code == 503
        failing = {c["name"]: c for c in ready.json()["failing"]}
        assert "cannot read" in failing["license"]["detail"]
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.name == "chorus.license" and r.levelno == logging.ERROR
        ]
        assert len(errors) == 1, errors  # one line, not one per retry
        assert errors[0].startswith("license_unavailable:") and "cannot read" in errors[0]

        target.write_text(first.license_file.read_text())
        await wait_until(lambda: c1.ready, timeout=10, message="the written license grants")
        status = (await client.get(f"{lic_url}/v1/license")).json()
        assert status["license_id"] == first.license.license_id

        doc = json.loads(first.license_file.read_text())
        doc["license"]["seats"] = 500  # tampered: the signature no longer matches
        target.write_text(json.dumps(doc))

        async def refused_replacement() -> bool:
            s = (await client.get(f"{lic_url}/v1/license")).json()
            return bool(s["reload_error"])

        await wait_until(refused_replacement, timeout=10, message="the broken file is refused")
        status = (await client.get(f"{lic_url}/v1/license")).json()
        assert status["valid"] and status["license_id"] == first.license.license_id
        assert status["seats"]["total"] == 2 and c1.licensed

        target.write_text(renewed.license_file.read_text())

        async def renewed_in_force() -> bool:
            s = (await client.get(f"{lic_url}/v1/license")).json()
            return bool(s["license_id"] == renewed.license.license_id)

        await wait_until(renewed_in_force, timeout=10, message="the renewal is picked up")
        status = (await client.get(f"{lic_url}/v1/license")).json()
        assert status["seats"]["total"] == 3 and status["reload_error"] is None
        assert c1.licensed  # the seat held through both replacements
