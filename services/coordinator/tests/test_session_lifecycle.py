"""Escalations reach the configured webhook (and a dead hook costs nothing but a count);
closed sessions are swept from memory and from the API (SPEC.md §10)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from chorus_common.agent import Agent
from chorus_common.bus import Bus, Delivery
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.testing import free_port, metric_value, serve_in_process, wait_until
from chorus_coordinator import CoordinatorService
from chorus_coordinator.settings import CoordinatorSettings

ADMIN = {"Authorization": "Bearer test-admin-token"}


@contextlib.asynccontextmanager
async def hook_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint that records what is POSTed to it."""
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        received.append(await request.json())
        return {"ok": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=10, message="hook receiver")
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def open_db_session(client: httpx.AsyncClient) -> str:
    for task_id, repo, title in (
        ("db-a", "api", "orders table migration"),
        ("db-b", "reports", "read the new orders schema"),
    ):
        resp = await client.post(
            "/v1/tasks", json={"id": task_id, "repository": repo, "title": title}
        )
        assert resp.status_code == 201, resp.text
    sessions = (await client.get("/v1/sessions")).json()["sessions"]
    assert len(sessions) == 1 and sessions[0]["status"] == "active"
    return str(sessions[0]["session_id"])


async def webhook_posts(client: httpx.AsyncClient, outcome: str) -> float:
    text = (await client.get("/metrics")).text
    return metric_value(text, "chorus_coordination_webhook_posts_total", outcome=outcome)


@pytest.mark.parametrize("hook_alive", [True, False], ids=["hook-up", "hook-down"])
async def test_escalation_goes_to_the_webhook_and_the_closed_session_is_swept(
    make_settings: Callable[..., Any], bus_client: Bus, hook_alive: bool
) -> None:
    seen: list[Envelope] = []

    async def watch(env: Envelope, d: Delivery) -> None:
        seen.append(env)

    await bus_client.subscribe("chorus.hmmm.>", "lifecycle-watch", watch)
    async with hook_receiver() as (url, received):
        settings = make_settings(
            CoordinatorSettings,
            node_id="c1",
            coordinator_session_sweep_seconds=0.5,
            coordinator_escalation_webhook=url
            if hook_alive
            else f"http://127.0.0.1:{free_port()}/",
        )
        async with (
            serve_in_process(CoordinatorService(settings)) as base,
            httpx.AsyncClient(base_url=base, headers=ADMIN) as client,
        ):
            session_id = await open_db_session(client)
            bob = Agent(bus_client, "bob")
            await bob.start()
            await bob.say(
                MessageType.META_DISCUSSION,
                {"content": "we are stuck, need a human", "kind": "concern"},
                thread=session_id,
            )
            outcome = "delivered" if hook_alive else "failed"
            await wait_until(
                lambda: webhook_posts(client, outcome), timeout=15, message=f"webhook {outcome}"
            )
            # the hook's fate never holds back the bus: the escalation is published either way
            await wait_until(
                lambda: any(
                    e.thread == session_id and e.type is MessageType.ESCALATION_TRIGGER
                    for e in seen
                ),
                timeout=10,
                message="escalation_trigger on the bus",
            )
            if hook_alive:
                assert len(received) == 1
                body = received[0]
                assert body["event"] == "escalation_trigger" and body["session_id"] == session_id
                assert "bob asked for a human" in body["reason"] and body["node_id"] == "c1"
            else:
                assert received == []

            async def swept() -> bool:
                resp = await client.get(f"/v1/sessions/{session_id}")
                return resp.status_code == 404

            await wait_until(swept, timeout=10, message="escalated session swept")
            assert (await client.get("/v1/sessions")).json()["sessions"] == []
            # a message on the swept thread is ignored, not a crash or a resurrection
            await bob.say(
                MessageType.META_DISCUSSION,
                {"content": "still there?", "kind": "question"},
                thread=session_id,
            )
            await asyncio.sleep(0.5)
            assert (await client.get("/v1/sessions")).json()["sessions"] == []
            await bob.stop()


async def test_active_sessions_stay_until_their_max_age(
    make_settings: Callable[..., Any], bus_client: Bus
) -> None:
    settings = make_settings(
        CoordinatorSettings,
        node_id="c1",
        coordinator_session_sweep_seconds=0.3,
        coordinator_session_max_age_seconds=2.0,
    )
    async with (
        serve_in_process(CoordinatorService(settings)) as base,
        httpx.AsyncClient(base_url=base, headers=ADMIN) as client,
    ):
        session_id = await open_db_session(client)
        await asyncio.sleep(1.0)  # several sweeps pass; the session is active and young
        assert (await client.get(f"/v1/sessions/{session_id}")).status_code == 200

        async def gone() -> bool:
            return (await client.get(f"/v1/sessions/{session_id}")).status_code == 404

        await wait_until(gone, timeout=10, message="session past its max age swept")
