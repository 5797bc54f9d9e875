"""The service base: readiness follows critical checks, degradation follows the others."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from chorus_common.config import ChorusSettings
from chorus_common.errors import ConflictError
from chorus_common.service import Service
from chorus_common.testing import serve_in_process, wait_until
from chorus_common.testing.behaviour import ServiceBehaviour


class Widget(BaseModel):
    name: str
    size: int


class ProbeService(Service):
    """A small service whose checks the test can flip."""

    name = "probe"
    critical_ok = True
    optional_ok = True

    async def setup(self) -> None:
        async def critical() -> str:
            if not self.critical_ok:
                raise RuntimeError("disk is full")
            return "fine"

        async def optional() -> None:
            if not self.optional_ok:
                raise RuntimeError("cache cold")

        self.health.add("disk", critical, critical=True, timeout=1)
        self.health.add("cache", optional, critical=False, timeout=1)

    def routes(self, app: FastAPI) -> None:
        @app.post("/v1/widgets", dependencies=[Depends(self.require_admin())])
        async def create(widget: Widget) -> Widget:
            if widget.name == "taken":
                raise ConflictError(f"widget {widget.name!r} exists already")
            return widget


class TestProbeBehaviour(ServiceBehaviour):
    service_class = ProbeService

    def test_sigterm_drains_within_ten_seconds(self) -> None:  # type: ignore[override]
        pytest.skip("ProbeService has no python -m entry; each real service runs this")


@pytest.fixture
async def probe(
    make_settings: Callable[..., ChorusSettings],
) -> AsyncIterator[tuple[ProbeService, httpx.AsyncClient]]:
    service = ProbeService(make_settings())
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        yield service, client


async def test_failed_critical_check_turns_ready_to_503_and_back(
    probe: tuple[ProbeService, httpx.AsyncClient],
) -> None:
    service, client = probe
    assert (await client.get("/health/ready")).status_code == 200

    service.critical_ok = False

    async def not_ready() -> bool:
        return (await client.get("/health/ready")).status_code == 503

    await wait_until(not_ready, timeout=5, message="ready turns 503")
    body = (await client.get("/health/ready")).json()
    assert body["failing"][0]["name"] == "disk"
    assert body["failing"][0]["detail"] == "disk is full"
    assert (await client.get("/health")).json()["status"] == "unhealthy"
    metrics = (await client.get("/metrics")).text
    assert any(
        line.startswith("chorus_health_ready{") and line.endswith(" 0.0")
        for line in metrics.splitlines()
    )

    service.critical_ok = True

    async def ready_again() -> bool:
        return (await client.get("/health/ready")).status_code == 200

    await wait_until(ready_again, timeout=5, message="ready again")


async def test_failed_optional_check_degrades_but_stays_ready(
    probe: tuple[ProbeService, httpx.AsyncClient],
) -> None:
    service, client = probe
    service.optional_ok = False

    async def degraded() -> bool:
        return (await client.get("/health")).json()["status"] == "degraded"

    await wait_until(degraded, timeout=5, message="degraded")
    assert (await client.get("/health/ready")).status_code == 200
    checks = {c["name"]: c for c in (await client.get("/health/checks")).json()["checks"]}
    assert checks["cache"]["status"] == "fail" and checks["cache"]["critical"] is False


async def test_nats_down_makes_service_not_ready_until_it_returns(
    nats_server, make_settings: Callable[..., ChorusSettings]
) -> None:
    service = ProbeService(make_settings(nats_url=nats_server.url))
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        nats_server.kill()

        async def status(code: int) -> bool:
            return (await client.get("/health/ready")).status_code == code

        await wait_until(lambda: status(503), timeout=10, message="not ready without NATS")
        nats_server.start()
        await wait_until(lambda: status(200), timeout=15, message="ready after NATS returns")


async def test_mutating_route_needs_admin_token(
    probe: tuple[ProbeService, httpx.AsyncClient],
) -> None:
    _, client = probe
    resp = await client.post("/v1/widgets", json={"name": "a", "size": 1})
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "Authorization: Bearer" in resp.json()["detail"]

    wrong = await client.post(
        "/v1/widgets", json={"name": "a", "size": 1}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401

    auth = {"Authorization": "Bearer test-admin-token"}
    ok = await client.post("/v1/widgets", json={"name": "a", "size": 1}, headers=auth)
    assert ok.status_code == 200 and ok.json() == {"name": "a", "size": 1}


async def test_bad_body_and_domain_errors_are_problem_json(
    probe: tuple[ProbeService, httpx.AsyncClient],
) -> None:
    _, client = probe
    auth = {"Authorization": "Bearer test-admin-token"}
    bad = await client.post("/v1/widgets", json={"name": "a", "size": "huge"}, headers=auth)
    assert bad.status_code == 422
    problem = bad.json()
    assert problem["code"] == "request_invalid"
    assert "size" in problem["detail"]

    malformed = await client.post(
        "/v1/widgets", content=b"{not json", headers={**auth, "content-type": "application/json"}
    )
    assert malformed.status_code == 422

    conflict = await client.post("/v1/widgets", json={"name": "taken", "size": 1}, headers=auth)
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == "widget 'taken' exists already"
    metrics = (await client.get("/metrics")).text
    assert "chorus_system_errors_total{" in metrics and 'code="conflict"' in metrics


class BrokenSetupService(Service):
    name = "broken"

    async def setup(self) -> None:
        raise RuntimeError("schema v3 required")


async def test_failed_setup_keeps_service_up_and_not_ready_with_the_reason(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    service = BrokenSetupService(make_settings())
    async with (
        serve_in_process(service, ready=False) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        await wait_until(lambda: service.setup_error, timeout=10, message="setup failed")
        resp = await client.get("/health/ready")
        assert resp.status_code == 503
        failing = {c["name"]: c for c in resp.json()["failing"]}
        assert failing["setup"]["detail"] == "RuntimeError: schema v3 required"
        assert (await client.get("/health/live")).status_code == 200


class SlowStartService(Service):
    """Set-up waits for the test, as a real one waits for NATS after a restart."""

    name = "slowstart"

    def __init__(self, settings: ChorusSettings) -> None:
        super().__init__(settings)
        self.release = asyncio.Event()
        self.board: dict[str, str] | None = None

    async def setup(self) -> None:
        await self.release.wait()
        self.board = {"t1": "open"}

    def routes(self, app: FastAPI) -> None:
        @app.get("/v1/tasks/{task_id}")
        async def task(task_id: str) -> dict[str, str]:
            assert self.board is not None  # half-built state, were the guard missing
            return {"id": task_id, "status": self.board[task_id]}


async def test_domain_routes_answer_503_until_setup_finishes(
    make_settings: Callable[..., ChorusSettings],
) -> None:
    service = SlowStartService(make_settings())
    async with serve_in_process(service, ready=False) as url, httpx.AsyncClient(base_url=url) as c:
        early = await c.get("/v1/tasks/t1")
        assert early.status_code == 503, early.text
        assert early.headers["content-type"].startswith("application/problem+json")
        assert early.headers["retry-after"] == "1"
        assert "still starting" in early.json()["detail"]
        assert (await c.get("/health/live")).status_code == 200  # probes still answer
        assert (await c.get("/health/ready")).status_code == 503
        assert (
            "503"
            in (await c.get("/openapi.json")).json()["paths"]["/v1/tasks/{task_id}"]["get"][
                "responses"
            ]
        )
        service.release.set()
        await wait_until(lambda: service.ready, timeout=10, message="ready")
        assert (await c.get("/v1/tasks/t1")).json() == {"id": "t1", "status": "open"}


async def test_set_up_waits_out_a_jetstream_that_does_not_answer_yet(
    make_settings: Callable[..., ChorusSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica (re)started while a NATS node is away gets timeouts from JetStream for a
    while: it waits them out and becomes ready, rather than staying not ready for good."""
    import nats.errors
    from nats.js import JetStreamContext

    from chorus_common.bus import Bus

    real, connect = JetStreamContext.key_value, Bus.connect
    refusals = {"left": 3, "armed": 0}

    async def connected(self: Bus, **kwargs: Any) -> None:
        await connect(self, **kwargs)
        refusals["armed"] = 1  # the topology is declared: the refusals are set-up's

    async def flaky(self: JetStreamContext, bucket: str) -> Any:
        if refusals["armed"] and refusals["left"] > 0:
            refusals["left"] -= 1
            raise nats.errors.TimeoutError
        return await real(self, bucket)

    monkeypatch.setattr(Bus, "connect", connected)
    monkeypatch.setattr(JetStreamContext, "key_value", flaky)
    service = ProbeService(make_settings())
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health/ready")).status_code == 200
    assert refusals["left"] == 0
