"""The coordinator's live picture of the task board, followed from a KV watch.

The assignment loop runs every second; reading every task from KV each round
made a round (and the coordinator's memory) grow with the whole history of the
board. The view keeps only what the loop acts on: open and claimed tasks in
full, finished tasks as per-agent counts (the scorer's track record). Its cost
follows the live work, not the board's age.

The watch is the source; the replica's own writes are applied at once (so the
next task in a round already sees the load it just added) and a per-key
revision keeps a late watch entry from undoing them. If the watch falls behind
the bucket's stream for ``stale_after`` seconds (a NATS node died under its
ordered consumer, say), the view is rebuilt from a fresh watch.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Bucket
from chorus_coordinator.board import PREFIX
from chorus_coordinator.documents import TaskRecord

__all__ = ["PREFIX", "BoardView"]

#: the operation of a watch entry whose key was deleted or purged (nats-py's KV_DEL, KV_PURGE)


@dataclass
class _State:
    active: dict[str, TaskRecord] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    completed_by: dict[str, int] = field(default_factory=dict)
    failed_by: dict[str, int] = field(default_factory=dict)
    watermark: int = 0  # the highest stream sequence the watch delivered

    def apply(self, task_id: str, revision: int, doc: TaskRecord | None, local: bool) -> None:
        if local and revision <= self.watermark:
            return  # the watch delivered this revision (or a later one) while the write was acked
        known = self.revisions.get(task_id)
        if known is not None and revision <= known:
            if not local and revision == known and task_id not in self.active:
                del self.revisions[task_id]  # the watch caught up with a local completion
            return
        before = self.active.pop(task_id, None)
        if doc is None:  # deleted or purged
            self.revisions.pop(task_id, None)
            return
        seen = len(before.history) if before else 0
        for event in doc.history[seen:]:
            if event.event == "failed" and event.agent:
                self.failed_by[event.agent] = self.failed_by.get(event.agent, 0) + 1
        if doc.status == "completed":
            self.completed += 1
            if doc.assignee:
                agent = doc.assignee
                self.completed_by[agent] = self.completed_by.get(agent, 0) + 1
            if local:
                self.revisions[task_id] = revision  # until the watch delivers it
            else:
                self.revisions.pop(task_id, None)
            return
        self.active[task_id] = doc
        self.revisions[task_id] = revision


class BoardView:
    def __init__(self, tasks: Bucket[TaskRecord], *, stale_after: float = 10.0) -> None:
        """``tasks``: the board's bucket (:func:`~chorus_coordinator.board.tasks_bucket`)."""
        self.bucket, self.stale_after = tasks, stale_after
        self._stream = f"KV_{tasks.name}"  # the stream behind the bucket
        self._state = _State()
        self._building: _State | None = None
        self._follower: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._behind: tuple[float, int] | None = None  # (since, stream seq to reach)
        self.rebuilds = 0

    # -- what the coordinator reads ------------------------------------------------------------

    def tasks(self) -> list[TaskRecord]:
        """Open and claimed tasks (completed ones are only counted)."""
        return list(self._state.active.values())

    def counts(self) -> dict[str, int]:
        active = self._state.active.values()
        return {
            "open": sum(1 for t in active if t.status == "open"),
            "claimed": sum(1 for t in active if t.status == "claimed"),
            "completed": self._state.completed,
        }

    def load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for t in self._state.active.values():
            if t.status == "claimed" and t.assignee:
                load[t.assignee] = load.get(t.assignee, 0) + 1
        return load

    def completed_by(self, agent: str) -> int:
        return self._state.completed_by.get(agent, 0)

    def failed_by(self, agent: str) -> int:
        return self._state.failed_by.get(agent, 0)

    def wrote(self, doc: TaskRecord, revision: int) -> None:
        """This replica wrote ``doc`` at ``revision``: show it now, before the watch does."""
        for state in (self._state, self._building):
            if state is not None:
                state.apply(doc.id, revision, doc, local=True)

    # -- following the watch -------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        """Follow the bucket; return once the view holds the board as it is now."""
        await self._restart(timeout)

    async def stop(self) -> None:
        if self._follower is not None:
            await cancel_and_wait([self._follower])

    async def check_fresh(self) -> bool:
        """Rebuild the view if its watch stopped delivering; True when it is current."""
        last = await self.bucket.bus.stream_last_seq(self._stream)
        now = time.monotonic()
        if self._state.watermark >= last:
            self._behind = None
            return True
        if self._behind is None or self._state.watermark >= self._behind[1]:
            self._behind = (now, last)  # behind, but moving: give the watch time
            return False
        if now - self._behind[0] >= self.stale_after:
            self._behind = None
            await self.rebuild()
        return False

    async def rebuild(self) -> None:
        """Replace the watch; the old picture serves until the new one is complete."""
        self.rebuilds += 1
        await self._restart(30.0)

    async def _restart(self, timeout: float) -> None:
        self._ready.clear()
        if self._follower is not None:
            await cancel_and_wait([self._follower])
        self._follower = asyncio.create_task(self._follow(), name="board-view")
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _follow(self) -> None:
        while True:
            try:
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus is away; try again with a fresh watch
                await asyncio.sleep(1.0)

    async def _watch_once(self) -> None:
        building = self._building = _State()
        floor = await self.bucket.bus.stream_last_seq(self._stream)
        changes = self.bucket.watch()
        try:
            async for change in changes:
                if change is None:  # the bucket as it was when the watch began is in
                    building.watermark = max(building.watermark, floor)
                    self._state, self._building = building, None
                    self._ready.set()
                    continue
                state = self._building or self._state
                state.watermark = max(state.watermark, change.revision)
                if change.value is None and not change.deleted:
                    continue  # not a task document; the board never writes one
                state.apply(change.key, change.revision, change.value, local=False)
        finally:
            self._building = None
            await changes.aclose()
