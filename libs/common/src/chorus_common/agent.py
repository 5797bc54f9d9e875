"""The agent SDK: join the mesh, announce yourself, claim and report tasks, with a signed feed.

agent = Agent(bus, "builder-1", capabilities=["python"], roles=["backend"])
await agent.start()                  # registers the key, announces, keeps availability fresh
task = await agent.claim("t-42")     # exactly one claimant wins; others get ConflictError
await agent.progress("t-42", 0.5)    # renews the claim's lease
await agent.complete("t-42")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bus
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.errors import (
    ChorusError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnavailableError,
)
from chorus_common.feeds import FeedWriter
from chorus_common.registry import AgentDirectory
from chorus_common.signing import AgentKey

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

    async def start(self) -> None:
        self.directory = await AgentDirectory.open(self.bus.js, cache_seconds=0)
        await self.directory.register_key(self.agent_id, self.key.public_key)
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
        request = json.dumps({"agent": self.agent_id, **body}).encode()
        for attempt in range(LICENSE_RETRIES + 1):
            try:
                msg = await self.bus.nc.request(
                    f"chorus.svc.coordinator.{verb}", request, timeout=5
                )
            except Exception as exc:
                raise UnavailableError(
                    f"the coordinator did not answer {verb}: {exc or type(exc).__name__}"
                ) from None
            doc: dict[str, Any] = json.loads(msg.data)
            if doc.get("ok"):
                task: dict[str, Any] = doc["task"]
                return task
            error = doc.get("error", {})
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
