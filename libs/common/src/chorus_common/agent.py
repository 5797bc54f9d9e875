"""The agent SDK: join the mesh, announce yourself, claim and report tasks, with a signed feed.

agent = Agent(bus, "builder-1", capabilities=["python"], roles=["backend"])
await agent.start()                  # registers the key, announces, keeps availability fresh
task = await agent.claim("t-42")     # exactly one claimant wins; others get ConflictError
await agent.progress("t-42", 0.5)    # renews the claim's lease
await agent.complete("t-42")
agent.assigned                       # tasks a coordinator allocated to this agent (verified)

The agent follows what coordinators say to it (task announcements, work allocations,
escalations) and believes only what a registered coordinator replica signed
(chorus_common.service_signing): a forged allocation from any other NATS client is
refused and counted in ``verifier.forged`` (and ``chorus_bus_forged_total``). Those are
envelopes, followed as envelopes; claim, progress and complete are requests on the
coordinator's task endpoints, the topic :data:`~chorus_common.topics.COORDINATOR_TASKS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.errors import (
    ChorusError,
    ConflictError,
    ForbiddenError,
    MalformedBodyError,
    NotFoundError,
    UnavailableError,
)
from chorus_common.feeds import FeedWriter
from chorus_common.registry import AgentDirectory
from chorus_common.service_signing import ServiceVerifier
from chorus_common.signing import AgentKey
from chorus_common.topics import COORDINATOR_TASKS, TaskAnswer, TaskCall

__all__ = ["Agent"]

log = logging.getLogger("chorus.agent")

#: what a coordinator says that an agent acts on, as core NATS subscriptions (each within the
#: ``agent`` NATS user's subscribe rights: announcements, allocations by role or project, and
#: escalations on any HMMM thread)
COORDINATION_SUBJECTS = (
    "chorus.coord.task_announcement",
    "chorus.role.*.work_allocation",
    "chorus.project.*.work_allocation",
    "chorus.hmmm.*.escalation_trigger",
)

_ERRORS: dict[str, type[ChorusError]] = {
    "conflict": ConflictError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "unavailable": UnavailableError,
}


#: how often a verb refused for want of a license seat is sent again: the queue group picks
#: a replica at random, so with one licensed replica of two, 16 retries all miss it once in
#: 130,000 calls; a fleet with no seat at all answers license_unavailable within ~0.5 s
LICENSE_RETRIES = 16
LICENSE_RETRY_PAUSE = 0.02


class Agent:
    def __init__(
        self,
        bus: Bus,
        agent_id: str,
        *,
        capabilities: list[str] | None = None,
        expertise: list[str] | None = None,
        roles: list[str] | None = None,
        max_tasks: int = 1,
        key: AgentKey | None = None,
        announce_interval: float = 5.0,
        on_coordination: Callable[[Envelope], Awaitable[None]] | None = None,
    ) -> None:
        self.bus, self.agent_id = bus, agent_id
        self.capabilities = capabilities or []
        self.expertise = expertise or []
        self.roles = roles or []
        self.max_tasks = max_tasks
        self.key = key or AgentKey.generate()
        self.writer = FeedWriter(agent_id, self.key)
        self.announce_interval = announce_interval
        self.directory: AgentDirectory | None = None
        self._task: asyncio.Task[None] | None = None
        #: called with every verified coordination envelope (announcement, allocation, escalation)
        self.on_coordination = on_coordination
        self.verifier: ServiceVerifier | None = None
        #: task id -> the verified work_allocation that gave the task to this agent
        self.assigned: dict[str, Envelope] = {}
        #: task id -> the verified task_announcement
        self.announced: dict[str, Envelope] = {}
        #: verified escalations, newest last
        self.escalations: deque[Envelope] = deque(maxlen=100)
        self._subs: list[Any] = []

    async def start(self) -> None:
        self.directory = await AgentDirectory.open(self.bus.jetstream, cache_seconds=0)
        await self.directory.register_key(self.agent_id, self.key.public_key)
        self.verifier = await ServiceVerifier.open(self.bus)
        for subject in COORDINATION_SUBJECTS:
            self._subs.append(await self.bus.client.subscribe(subject, cb=self._on_coordination))
        await self._refresh()
        await self.say(
            MessageType.CAPABILITY_BROADCAST,
            {
                "agent": self.agent_id,
                "capabilities": self.capabilities,
                "expertise": self.expertise,
                "roles": self.roles,
            },
        )
        for role in self.roles:
            await self.say(
                MessageType.ROLE_ANNOUNCEMENT,
                {"agent": self.agent_id, "role": role, "expertise": self.expertise},
            )
        self._task = asyncio.create_task(self._availability_loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def _on_coordination(self, msg: Msg) -> None:
        """Act only on what a registered coordinator replica signed; refuse the rest."""
        try:
            env = Envelope.decode(msg.data)
        except Exception:
            return
        assert self.verifier is not None
        # announcements and allocations from anyone but a coordinator are forgeries; an
        # escalation from a person or an agent is no forgery, but not the coordinator's either
        verdict = await self.verifier.check_envelope(env)
        if not verdict.ok or verdict.identity is None or verdict.identity.service != "coordinator":
            return
        payload = env.payload.model_dump()
        if env.type is MessageType.WORK_ALLOCATION and payload.get("agent") == self.agent_id:
            self.assigned[str(payload["task_id"])] = env
        elif env.type is MessageType.TASK_ANNOUNCEMENT:
            self.announced[str(payload["task_id"])] = env
        elif env.type is MessageType.ESCALATION_TRIGGER:
            self.escalations.append(env)
        if self.on_coordination is not None:
            try:
                await self.on_coordination(env)
            except Exception:  # the agent's own handler must not stop the subscription
                log.exception("on_coordination of %s failed", self.agent_id)

    async def _refresh(self) -> None:
        assert self.directory is not None
        await self.directory.update(
            self.agent_id,
            capabilities=self.capabilities,
            expertise=self.expertise,
            roles=self.roles,
            max_tasks=self.max_tasks,
            availability="ready",
        )

    async def _availability_loop(self) -> None:
        while True:
            await asyncio.sleep(self.announce_interval)
            with contextlib.suppress(ChorusError, Exception):
                await self._refresh()
                await self.say(
                    MessageType.AVAILABILITY_BROADCAST,
                    {"agent": self.agent_id, "status": "ready", "max_tasks": self.max_tasks},
                )

    async def say(self, mtype: MessageType, payload: dict[str, Any], **fields: Any) -> None:
        """Sign into this agent's feed and publish."""
        env = self.writer.seal(
            Envelope(
                type=mtype,
                sender=self.agent_id,
                sender_role=self.roles[0] if self.roles else None,
                payload=payload,
                **fields,
            )
        )
        await self.bus.publish(env)

    async def _call(self, verb: str, **body: Any) -> dict[str, Any]:
        """One coordinator verb over NATS; its refusal raised as the matching ChorusError.

        A replica without a license seat refuses before doing anything, so the request
        is sent again (up to ``LICENSE_RETRIES`` times): the queue group may hand it to
        a replica that holds one. Only when none does is ``license_unavailable`` raised
        (a ForbiddenError whose ``extra["reason"]`` says so).
        """
        request = TaskCall(agent=self.agent_id, **body)
        topic = self.bus.topic(COORDINATOR_TASKS)
        for attempt in range(LICENSE_RETRIES + 1):
            try:
                answer = await topic.request(request, TaskAnswer, timeout=5, verb=verb)
            except MalformedBodyError:
                raise
            except Exception as exc:
                raise UnavailableError(
                    f"the coordinator did not answer {verb}: {exc or type(exc).__name__}"
                ) from None
            if answer.ok and answer.task is not None:
                return answer.task
            error = answer.error or {}
            unlicensed = error.get("reason") == "license_unavailable"
            if not unlicensed or attempt == LICENSE_RETRIES:
                extra = {k: v for k, v in error.items() if k in ("reason", "instance")}
                raise _ERRORS.get(error.get("code", ""), ChorusError)(
                    error.get("detail", f"{verb} refused"), **extra
                )
            await asyncio.sleep(LICENSE_RETRY_PAUSE)
        raise AssertionError("unreachable")

    async def claim(self, task_id: str, repository: str = "") -> dict[str, Any]:
        task = await self._call("claim", task_id=task_id)
        await self.say(
            MessageType.TASK_CLAIM,
            {
                "task_id": task_id,
                "repository": repository or task["repository"],
                "agent": self.agent_id,
                "capabilities_used": self.capabilities,
            },
        )
        return task

    async def progress(self, task_id: str, progress: float, note: str = "") -> dict[str, Any]:
        task = await self._call("progress", task_id=task_id, progress=progress)
        await self.say(
            MessageType.TASK_PROGRESS,
            {"task_id": task_id, "agent": self.agent_id, "progress": progress, "note": note},
        )
        return task

    async def complete(
        self, task_id: str, success: bool = True, summary: str = ""
    ) -> dict[str, Any]:
        task = await self._call("complete", task_id=task_id, success=success)
        await self.say(
            MessageType.TASK_COMPLETE,
            {"task_id": task_id, "agent": self.agent_id, "success": success, "summary": summary},
        )
        return task
