"""The leader's loop: scored assignment of open tasks, lapsed claims back to open."""

from __future__ import annotations

import asyncio
import time

from chorus_common.envelopes import MessageType
from chorus_common.errors import ConflictError
from chorus_common.leadership import LeaderLease
from chorus_coordinator.agents import AgentPool
from chorus_coordinator.board import TaskBoard
from chorus_coordinator.board_view import BoardView
from chorus_coordinator.coordination import Coordination
from chorus_coordinator.documents import AgentEntry, TaskRecord
from chorus_coordinator.metrics import CoordinatorMetrics
from chorus_coordinator.voice import Voice

__all__ = ["Assigner"]


class Assigner:
    """Every ``interval`` seconds: export the board's counts and, while this replica holds the
    lease, release lapsed claims, allocate each open task to its best eligible agent (fenced
    by the lease's term) and let sessions that ran out of time escalate."""

    def __init__(
        self,
        interval: float,
        lease: LeaderLease,
        board: TaskBoard,
        view: BoardView,
        agents: AgentPool,
        coordination: Coordination,
        voice: Voice,
        metrics: CoordinatorMetrics,
    ) -> None:
        self.interval, self.lease, self.board, self.view = interval, lease, board, view
        self.agents, self.coordination, self.voice = agents, coordination, voice
        self.metrics = metrics

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.metrics.leader.set(1 if self.lease.is_leader else 0)
            try:
                await self.view.check_fresh()
                for status, count in self.view.counts().items():
                    self.metrics.tasks.labels(status).set(count)
                if not self.lease.is_leader or self.lease.term is None:
                    continue
                term = self.lease.term
                # the round works from the live view (open and claimed tasks only) and one
                # registry read; each claim it makes shows in the view's load at once
                tasks = self.view.tasks()
                for released in await self.board.release_expired(tasks):
                    self.metrics.expired.inc()
                    await self.voice.say(
                        MessageType.STATUS_UPDATE,
                        {
                            "agent": "coordinator",
                            "status": "task released",
                            "detail": f"{released.id} returned to open: claim lease lapsed",
                            "task_id": released.id,
                        },
                    )
                waiting = sorted(
                    (t for t in tasks if t.status == "open"), key=lambda t: -t.priority
                )
                # the registry is read only when there is something to assign: an idle
                # board costs no registry scan (and no short-lived consumer) per round
                live = await self.agents.live() if waiting else []
                for task in waiting:
                    await self._assign(task, term, live)
                await self.coordination.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus may be away; the next round tries again
                continue

    async def _assign(self, task: TaskRecord, term: int, live: list[AgentEntry]) -> None:
        cards = [c for c in await self.agents.candidates(task, live) if c["eligible"]]
        if not cards:
            return
        best = cards[0]
        self.lease.require_term(term)  # fencing: a demoted leader allocates nothing
        try:
            claimed = await self.board.claim(task.id, best["agent"], term=term)
        except ConflictError:
            return
        self.metrics.assigned.inc()
        announced = claimed.history[0].at if claimed.history else time.time()
        self.metrics.assign_latency.observe(max(0.0, time.time() - announced))
        await self.voice.say(
            MessageType.WORK_ALLOCATION,
            {
                "task_id": task.id,
                "agent": best["agent"],
                "score": best["total"],
                "term": term,
                "reason": "highest score",
                "breakdown": best["breakdown"],
            },
            to_roles=[],
        )
