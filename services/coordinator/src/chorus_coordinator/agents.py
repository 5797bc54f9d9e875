"""The agents the coordinator may assign work to: live registry entries, profiled and scored."""

from __future__ import annotations

import time
from typing import Any

from chorus_common.bus import Bucket, Bus
from chorus_common.topology import BUCKET_REGISTRY
from chorus_coordinator.board_view import BoardView
from chorus_coordinator.documents import AgentEntry, TaskRecord
from chorus_coordinator.scoring import AgentProfile, Scorer, TaskNeeds

__all__ = ["AgentPool", "registry_agents"]


def registry_agents(bus: Bus) -> Bucket[AgentEntry]:
    """The agents' documents of ``chorus-registry`` (``agent.<id>``), as far as the
    coordinator reads them."""
    return bus.bucket(BUCKET_REGISTRY, AgentEntry, prefix="agent.")


class AgentPool:
    """Registry entries (``chorus-registry``, ``agent.*``) with load and track record from
    the board view, and the scorer's verdict on each for a task."""

    def __init__(
        self, registry: Bucket[AgentEntry], view: BoardView, scorer: Scorer, agent_ttl: float
    ) -> None:
        self.registry, self.view, self.scorer, self.agent_ttl = registry, view, scorer, agent_ttl

    async def live(self) -> list[AgentEntry]:
        """Registry entries of agents that can be auto-assigned now (read once per round)."""
        now = time.time()
        try:
            entries = await self.registry.scan()
        except Exception:  # the bus is away: nobody to assign to this round
            return []
        return [
            entry
            for entry in entries.values()
            # only a key registered: never offered to work; humans are not auto-assigned;
            # silent agents have left
            if entry.offered and entry.kind != "human" and now - entry.updated_at <= self.agent_ttl
        ]

    def profiles(self, live: list[AgentEntry]) -> list[AgentProfile]:
        """Registry entries with load and track record from the board view as it is now."""
        load = self.view.load()
        return [
            AgentProfile(
                agent=doc.agent,
                capabilities=frozenset(doc.capabilities),
                expertise=frozenset(doc.expertise),
                roles=frozenset(doc.roles),
                current_tasks=load.get(doc.agent, 0),
                max_tasks=doc.max_tasks,
                status=str(doc.availability),
                completed=self.view.completed_by(doc.agent),
                failed=self.view.failed_by(doc.agent),
            )
            for doc in live
        ]

    async def agents(self) -> list[AgentProfile]:
        return self.profiles(await self.live())

    async def candidates(
        self, task: TaskRecord, live: list[AgentEntry] | None = None
    ) -> list[dict[str, Any]]:
        """Scored agents for ``task``; ``live``: this round's registry read, if there is one."""
        needs = TaskNeeds(
            task.id,
            frozenset(task.required_capabilities),
            frozenset(task.required_expertise),
            task.role,
        )
        agents = self.profiles(live if live is not None else await self.live())
        return [c.as_dict() for c in await self.scorer.score(needs, agents)]
