"""The agents the coordinator may assign work to: live registry entries, profiled and scored."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from nats.aio.client import Client

from chorus_common.kvscan import scan
from chorus_common.topology import BUCKET_REGISTRY
from chorus_coordinator.board_view import BoardView
from chorus_coordinator.scoring import AgentProfile, Scorer, TaskNeeds

__all__ = ["AgentPool"]


class AgentPool:
    """Registry entries (``chorus-registry``, ``agent.*``) with load and track record from
    the board view, and the scorer's verdict on each for a task."""

    def __init__(self, nc: Client, view: BoardView, scorer: Scorer, agent_ttl: float) -> None:
        self.nc, self.view, self.scorer, self.agent_ttl = nc, view, scorer, agent_ttl

    async def live(self) -> list[dict[str, Any]]:
        """Registry entries of agents that can be auto-assigned now (read once per round)."""
        now = time.time()
        try:
            values = await scan(self.nc, BUCKET_REGISTRY, "agent.>")
        except Exception:
            return []
        out = []
        for value in values.values():
            with contextlib.suppress(ValueError):
                doc = json.loads(value)
                if (
                    not isinstance(doc, dict)
                    or "agent" not in doc
                    or "availability" not in doc  # only a key registered: never offered to work
                    or doc.get("kind") == "human"
                    or now - float(doc.get("updated_at", 0)) > self.agent_ttl
                ):
                    continue  # humans are not auto-assigned; silent agents have left
                out.append(doc)
        return out

    def profiles(self, live: list[dict[str, Any]]) -> list[AgentProfile]:
        """Registry entries with load and track record from the board view as it is now."""
        load = self.view.load()
        return [
            AgentProfile(
                agent=doc["agent"],
                capabilities=frozenset(doc.get("capabilities", [])),
                expertise=frozenset(doc.get("expertise", [])),
                roles=frozenset(doc.get("roles", [])),
                current_tasks=load.get(doc["agent"], 0),
                max_tasks=int(doc.get("max_tasks", 1)),
                status=str(doc.get("availability", "ready")),
                completed=self.view.completed_by(doc["agent"]),
                failed=self.view.failed_by(doc["agent"]),
            )
            for doc in live
        ]

    async def agents(self) -> list[AgentProfile]:
        return self.profiles(await self.live())

    async def candidates(
        self, task: dict[str, Any], live: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Scored agents for ``task``; ``live``: this round's registry read, if there is one."""
        needs = TaskNeeds(
            task["id"],
            frozenset(task.get("required_capabilities", [])),
            frozenset(task.get("required_expertise", [])),
            task.get("role"),
        )
        agents = self.profiles(live if live is not None else await self.live())
        return [c.as_dict() for c in await self.scorer.score(needs, agents)]
