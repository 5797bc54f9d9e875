"""Coordinator envelopes are signed per replica: an SDK agent acts on a real allocation,
announcement and escalation, and refuses (and counts) forged ones from a plain NATS client."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import nats

from chorus_common.agent import Agent
from chorus_common.bus import Bus
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.feeds import FeedWriter
from chorus_common.service_signing import service_sender
from chorus_common.signing import AgentKey
from chorus_common.subjects import routes
from chorus_common.testing import serve_in_process, wait_until
from chorus_coordinator import CoordinatorService
from chorus_coordinator.settings import CoordinatorSettings

ADMIN = {"Authorization": "Bearer test-admin-token"}


def _forged(mtype: MessageType, sender: str, payload: dict[str, Any], **fields: Any) -> Envelope:
    return Envelope(type=mtype, sender=sender, sender_role="coordinator", payload=payload, **fields)


def _forged_metric(text: str, reason: str) -> float:
    pattern = (
        rf'^chorus_bus_forged_total{{[^}}]*kind="envelope"[^}}]*reason="{reason}"[^}}]*}} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_forged_allocations_announcements_and_escalations_are_refused(
    make_settings: Callable[..., Any], bus_client: Bus, nats_url: str
) -> None:
    settings = make_settings(
        CoordinatorSettings,
        node_id="c1",
        coordinator_assign_interval_seconds=0.2,
        coordinator_lease_ttl_seconds=0.6,
        coordinator_session_max_messages=2,
    )
    service = CoordinatorService(settings)
    agent = Agent(bus_client, "worker", capabilities=["python"], max_tasks=5)
    plain = await nats.connect(nats_url)  # any client, e.g. one logged in as `agent`

    async def inject(env: Envelope) -> None:
        for subject in routes(env):
            await plain.publish(subject, env.encode())
        await plain.flush()

    try:
        async with (
            serve_in_process(service) as url,
            httpx.AsyncClient(base_url=url, headers=ADMIN) as client,
        ):
            await agent.start()
            # forgeries first: the old unsigned sender, the replica's own sender unsigned, the
            # replica's sender signed with another key, and an agent's well-signed envelope of a
            # type only coordinators send
            mallory = AgentKey.generate()
            real_sender = service_sender("coordinator", "c1")
            alloc = {"task_id": "stolen", "agent": "worker", "score": 1.0, "term": 99}
            announce = {"task_id": "fake", "repository": "r", "title": "do evil"}
            escalate = {"thread": "s-x", "reason": "forged", "rounds": 9}
            forgeries = [
                FeedWriter("coordinator", mallory).seal(
                    _forged(MessageType.WORK_ALLOCATION, "coordinator", alloc)
                ),
                _forged(MessageType.WORK_ALLOCATION, real_sender, alloc),
                FeedWriter(real_sender, mallory).seal(
                    _forged(MessageType.WORK_ALLOCATION, real_sender, alloc)
                ),
                FeedWriter("worker-2", mallory).seal(
                    _forged(MessageType.WORK_ALLOCATION, "worker-2", alloc)
                ),
                _forged(MessageType.TASK_ANNOUNCEMENT, "coordinator", announce),
                FeedWriter(real_sender, mallory).seal(
                    _forged(MessageType.TASK_ANNOUNCEMENT, real_sender, announce)
                ),
                _forged(MessageType.ESCALATION_TRIGGER, "coordinator", escalate, thread="s-x"),
                FeedWriter(real_sender, mallory).seal(
                    _forged(MessageType.ESCALATION_TRIGGER, real_sender, escalate, thread="s-x")
                ),
            ]
            for env in forgeries:
                await inject(env)
            assert agent.verifier is not None
            await wait_until(
                lambda: sum(agent.verifier.forged.values()) == len(forgeries),
                timeout=10,
                message="every forgery refused",
            )
            assert agent.verifier.forged == {
                ("envelope", "unknown_sender"): 1,
                ("envelope", "unsigned"): 3,
                ("envelope", "bad_signature"): 3,
                ("envelope", "not_service"): 1,
            }
            assert not agent.assigned and not agent.announced and not agent.escalations

            # the real ones keep flowing: an announcement, the allocation, an escalation
            await client.post(
                "/v1/tasks",
                json={
                    "id": "real",
                    "repository": "chorus",
                    "title": "real work",
                    "required_capabilities": ["python"],
                },
            )
            await wait_until(lambda: "real" in agent.assigned, timeout=15, message="allocated")
            assert "real" in agent.announced
            allocation = agent.assigned["real"]
            assert allocation.sender == real_sender and allocation.sig is not None
            assert "stolen" not in agent.assigned and "fake" not in agent.announced

            await client.post(
                "/v1/tasks",
                json={"id": "schema-a", "repository": "api", "title": "orders table migration"},
            )
            await client.post(
                "/v1/tasks",
                json={"id": "schema-b", "repository": "web", "title": "read the orders schema"},
            )
            session = next(
                s["session_id"] for s in (await client.get("/v1/sessions")).json()["sessions"]
            )
            # a forged participant turn in the coordinator's name does not count as a round
            forged_turn = _forged(
                MessageType.META_DISCUSSION,
                "coordinator",
                {"content": "we are stuck, need a human", "kind": "concern"},
                thread=session,
            )
            await inject(forged_turn)
            await agent.say(
                MessageType.META_DISCUSSION,
                {"content": "we are stuck, need a human", "kind": "concern"},
                thread=session,
            )
            await wait_until(
                lambda: any(e.thread == session for e in agent.escalations),
                timeout=15,
                message="the real escalation reaches the agent",
            )
            transcript = (await client.get(f"/v1/sessions/{session}")).json()["transcript"]
            assert [m["agent"] for m in transcript] == ["worker"]

            metrics = (await client.get("/metrics")).text
            assert _forged_metric(metrics, "unsigned") == 1  # the forged turn
    finally:
        await agent.stop()
        await plain.close()
