"""Wiring and lifecycle of the coordinator: task board, agent registry view, leader-only scored
assignment, meta-coordination."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from fastapi import APIRouter

from chorus_common.aio import cancel_and_wait
from chorus_common.leadership import LeaderLease
from chorus_common.service import MicroHandler, Service
from chorus_common.service_signing import ServiceSigner, ServiceVerifier
from chorus_coordinator.agents import AgentPool, registry_agents
from chorus_coordinator.app import router
from chorus_coordinator.assignment import Assigner
from chorus_coordinator.board import TaskBoard, tasks_bucket
from chorus_coordinator.board_view import BoardView
from chorus_coordinator.coordination import Coordination
from chorus_coordinator.metrics import CoordinatorMetrics
from chorus_coordinator.micro import TaskEndpoints
from chorus_coordinator.rules import BUILTIN_RULES, parse_custom_rules
from chorus_coordinator.scoring import HeuristicScorer, LlmScorer, Scorer
from chorus_coordinator.settings import CoordinatorSettings
from chorus_coordinator.voice import Voice

__all__ = ["CoordinatorService", "CoordinatorSettings"]


class CoordinatorService(Service):
    name = "coordinator"
    description = "Task board, scored assignment and meta-coordination"
    settings_class = CoordinatorSettings
    settings: CoordinatorSettings
    routers: ClassVar[tuple[APIRouter, ...]] = (router,)

    def __init__(self, settings: CoordinatorSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        self.rules = BUILTIN_RULES + parse_custom_rules(s.coordinator_custom_rules)
        self.coordinator_metrics = self.provide(
            CoordinatorMetrics(self.metrics.registry, rules=[rule.name for rule in self.rules])
        )
        self.scorer: Scorer = (
            LlmScorer(s.coordinator_llm_url, s.coordinator_llm_model)
            if s.coordinator_llm_url
            else HeuristicScorer()
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self) -> None:
        s = self.settings
        tasks = tasks_bucket(self.bus)
        self.view = BoardView(tasks)
        self.board = self.provide(
            TaskBoard(tasks, s.coordinator_claim_ttl_seconds, wrote=self.view.wrote)
        )
        await self.view.start()
        # every envelope this replica says is signed into its own feed (svc-coordinator-<node>)
        self.signer = await ServiceSigner.open(self.bus, self.name, s.node_id, s.data_dir)
        self.verifier = await ServiceVerifier.open(self.bus)
        voice = Voice(self.signer, self.bus.publish)
        self.agents = self.provide(
            AgentPool(
                registry_agents(self.bus), self.view, self.scorer, s.coordinator_agent_ttl_seconds
            )
        )
        self.coordination = self.provide(
            Coordination(
                s, self.rules, self.coordinator_metrics, self.board, self.view, self.verifier, voice
            )
        )
        self.lease = await LeaderLease.open(
            self.bus,
            "coordinator",
            s.node_id,
            ttl=s.coordinator_lease_ttl_seconds,
            may_hold=lambda: self.licensed,  # no seat: give the lease up, stop leading
        )
        self.on_license_change.append(self.lease.poke)
        self.lease.start()
        await self.bus.subscribe(
            "chorus.hmmm.>",
            f"coordinator-{s.node_id}",
            self.coordination.on_hmmm,
            deliver_new_only=True,
        )
        assigner = Assigner(
            s.coordinator_assign_interval_seconds,
            self.lease,
            self.board,
            self.view,
            self.agents,
            self.coordination,
            voice,
            self.coordinator_metrics,
        )
        self._tasks.append(asyncio.create_task(assigner.run(), name="assignment"))
        self._tasks.append(
            asyncio.create_task(self.coordination.sweep_loop(), name="session-sweep")
        )

    async def teardown(self) -> None:
        await cancel_and_wait(self._tasks)
        await self.coordination.close()
        await self.lease.stop(release=True)
        await self.view.stop()

    def micro_endpoints(self) -> dict[str, MicroHandler]:
        """Claim, progress and complete over NATS (``chorus.svc.coordinator.<endpoint>``)."""
        return TaskEndpoints(self.board, self.coordinator_metrics).handlers()
