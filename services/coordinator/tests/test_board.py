"""The coordinator on a real bus: racing claims, lapsed leases, scored assignment across replicas,
and coordination sessions to completion and to escalation."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chorus_common.agent import Agent
from chorus_common.bus import Bus, Delivery
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.errors import ConflictError
from chorus_common.testing import serve_in_process, wait_until
from chorus_coordinator import CoordinatorService
from chorus_coordinator.settings import CoordinatorSettings

ADMIN = {"Authorization": "Bearer test-admin-token"}


def coordinator(make_settings: Callable[..., Any], node: str, **kw: Any) -> CoordinatorService:
    values = {
        "coordinator_assign_interval_seconds": 0.2,
        "coordinator_lease_ttl_seconds": 0.6,
        **kw,
    }
    settings = make_settings(CoordinatorSettings, node_id=node, **values)
    return CoordinatorService(settings)


async def add_task(client: httpx.AsyncClient, task_id: str, **kw: Any) -> None:
    body = {
        "id": task_id,
        "repository": kw.pop("repository", "chorus"),
        "title": kw.pop("title", task_id),
        **kw,
    }
    resp = await client.post("/v1/tasks", json=body)
    assert resp.status_code == 201, resp.text


async def test_twenty_agents_racing_for_a_hundred_tasks_one_holder_each(
    make_settings: Callable[..., Any], bus_client: Bus
) -> None:
    service = coordinator(
        make_settings, "c1", coordinator_assign_interval_seconds=60
    )  # no auto-assignment
    async with (
        serve_in_process(service) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
    ):
        for i in range(100):
            await add_task(client, f"t{i}")
        agents = [
            Agent(bus_client, f"racer-{i}", capabilities=["python"], max_tasks=100)
            for i in range(20)
        ]
        for a in agents:
            await a.start()
        wins: dict[str, str] = {}
        refusals = 0

        async def race(agent: Agent) -> None:
            nonlocal refusals
            for i in range(100):
                try:
                    await agent.claim(f"t{i}")
                    assert f"t{i}" not in wins, f"t{i} claimed twice"
                    wins[f"t{i}"] = agent.agent_id
                except ConflictError:
                    refusals += 1

        await asyncio.gather(*(race(a) for a in agents))
        tasks = (await client.get("/v1/tasks")).json()["tasks"]
        assert len(wins) == 100 and refusals == 1900
        assert all(t["status"] == "claimed" and t["assignee"] == wins[t["id"]] for t in tasks)

        # the listing pages: every task once, in id order, then `next` is null
        seen: list[str] = []
        after: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"limit": 30, **({"after": after} if after else {})}
            page = (await client.get("/v1/tasks", params=params)).json()
            seen += [t["id"] for t in page["tasks"]]
            after = page["next"]
            if after is None:
                break
        assert seen == sorted(wins) and len(seen) == 100
        open_page = await client.get("/v1/tasks", params={"status": "open"})
        assert open_page.json() == {"tasks": [], "next": None}
        bogus = await client.get("/v1/tasks", params={"status": "done"})
        assert bogus.status_code == 422 and "status" in bogus.text
        for a in agents:
            await a.stop()


KILLABLE_AGENT = """
import asyncio, sys
from chorus_common.agent import Agent
from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
async def main():
    bus = Bus(ChorusSettings(nats_url=sys.argv[1]), "doomed")
    await bus.connect(timeout=10)
    agent = Agent(bus, "doomed", capabilities=["go"], max_tasks=5, announce_interval=0.3)
    await agent.start()
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.mark.slow
async def test_scored_assignment_failover_and_lapsed_claims(
    make_settings: Callable[..., Any], bus_client: Bus, nats_url: str
) -> None:
    a = coordinator(make_settings, "c1", coordinator_claim_ttl_seconds=1.0)
    b = coordinator(make_settings, "c2", coordinator_claim_ttl_seconds=1.0)
    allocations: list[Envelope] = []

    async def on_alloc(env: Envelope, d: Delivery) -> None:
        if env.type is MessageType.WORK_ALLOCATION:
            allocations.append(env)

    await bus_client.subscribe("chorus.role.>", "alloc-watch", on_alloc, deliver_new_only=True)
    await bus_client.subscribe("chorus.project.>", "alloc-watch2", on_alloc, deliver_new_only=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLABLE_AGENT,
        nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
    except TimeoutError:
        proc.kill()
        assert proc.stderr is not None
        pytest.fail(f"agent process did not start: {(await proc.stderr.read()).decode()[-2000:]}")
    assert b"ready" in line
    async with (
        serve_in_process(a) as url_a,
        serve_in_process(b),
        httpx.AsyncClient(base_url=url_a, headers=ADMIN) as client,
    ):
        # the task needs "go": only the doomed agent has it, and the breakdown says so
        await add_task(client, "build-go", required_capabilities=["go"])
        cards = (await client.get("/v1/tasks/build-go/candidates")).json()["candidates"]
        assert cards[0]["agent"] == "doomed" and cards[0]["breakdown"]["capabilities"] == 1.0

        async def holder(task_id: str) -> str | None:
            return (await client.get(f"/v1/tasks/{task_id}")).json()["assignee"]

        await wait_until(
            lambda: _eq(holder("build-go"), "doomed"), timeout=10, message="allocated by score"
        )
        task = (await client.get("/v1/tasks/build-go")).json()
        assert task["term"] is not None and task["history"][-1]["event"] == "allocated"

        # kill the agent: its claim lapses, the task returns to open, and goes to a newcomer
        proc.kill()
        await proc.wait()
        helper = Agent(
            bus_client, "backup", capabilities=["go"], max_tasks=5, announce_interval=0.3
        )
        await helper.start()
        await wait_until(
            lambda: _eq(holder("build-go"), "backup"), timeout=20, message="reassigned"
        )
        history = [h["event"] for h in (await client.get("/v1/tasks/build-go")).json()["history"]]
        assert "lease_expired" in history

        # kill the leading coordinator: the other takes over, no task is allocated twice
        leader = a if a.lease.is_leader else b
        other = b if leader is a else a
        await leader.lease.stop(release=False)  # the leader stops renewing, as if it died
        leader._tasks[0].cancel()
        for i in range(5):
            await add_task(client, f"more-{i}", required_capabilities=["go"])
        await wait_until(lambda: other.lease.is_leader, timeout=10, message="takeover")
        await wait_until(
            lambda: _all_assigned(client, 5), timeout=15, message="all assigned by the new leader"
        )
        for i in range(5):
            events = [
                h
                for h in (await client.get(f"/v1/tasks/more-{i}")).json()["history"]
                if h["event"] == "allocated"
            ]
            assert len(events) == 1 and events[0]["term"] == other.lease.term
        await helper.stop()


async def _eq(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def _all_assigned(client: httpx.AsyncClient, n: int) -> bool:
    tasks = (await client.get("/v1/tasks")).json()["tasks"]
    return sum(1 for t in tasks if t["id"].startswith("more-") and t["assignee"]) == n


async def test_sessions_complete_and_escalate(
    make_settings: Callable[..., Any], bus_client: Bus
) -> None:
    service = coordinator(make_settings, "c1")
    seen: list[Envelope] = []

    async def watch(env: Envelope, d: Delivery) -> None:
        seen.append(env)

    await bus_client.subscribe("chorus.hmmm.>", "session-watch", watch)
    async with (
        serve_in_process(service) as url,
        httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
    ):
        await add_task(client, "api-def", repository="api", title="Define the orders API endpoint")
        await add_task(client, "api-use", repository="web", title="Call the orders API from the UI")
        await add_task(client, "db-a", repository="api", title="orders table migration")
        await add_task(client, "db-b", repository="reports", title="read the new orders schema")
        deps = (await client.get("/v1/dependencies")).json()["dependencies"]
        assert {d["rule"] for d in deps} >= {"API_Contract", "Database_Schema"}
        sessions = (await client.get("/v1/sessions")).json()["sessions"]
        api_session = next(s["session_id"] for s in sessions)
        db_session = [s["session_id"] for s in sessions if s["session_id"] != api_session][-1]
        alice = Agent(bus_client, "alice")
        bob = Agent(bus_client, "bob")
        for agent in (alice, bob):
            await agent.start()
        await alice.say(
            MessageType.META_DISCUSSION,
            {"content": "API first, v2 shape", "kind": "proposal"},
            thread=api_session,
        )
        await bob.say(
            MessageType.META_DISCUSSION,
            {"content": "agreed", "kind": "agreement"},
            thread=api_session,
        )
        await bob.say(
            MessageType.META_DISCUSSION,
            {"content": "we are stuck, need a human", "kind": "concern"},
            thread=db_session,
        )
        await wait_until(
            lambda: _types(seen, api_session, "coordination_complete"),
            timeout=10,
            message="complete",
        )
        await wait_until(
            lambda: _types(seen, db_session, "escalation_trigger"), timeout=10, message="escalated"
        )
        detected = next(
            e
            for e in seen
            if e.type is MessageType.META_DISCUSSION and e.sender == service.signer.sender
        )
        assert detected.payload.message_type == "dependency_detected"  # type: ignore[union-attr]
        assert detected.payload.hop_count == 0 and detected.payload.max_hops == 3  # type: ignore[union-attr]
        transcript = (await client.get(f"/v1/sessions/{api_session}")).json()
        assert transcript["status"] == "resolved" and len(transcript["transcript"]) == 2
        for agent in (alice, bob):
            await agent.stop()


def _types(seen: list[Envelope], thread: str, mtype: str) -> bool:
    return any(e.thread == thread and e.type.value == mtype for e in seen)
