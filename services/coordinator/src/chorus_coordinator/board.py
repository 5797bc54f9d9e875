"""The task board in the ``chorus-tasks`` KV bucket: every change is a compare-and-set.

Claims, allocations, progress and completion all read a task, change it and
write it back on the revision they read; a concurrent writer makes the write
fail and exactly one claimant wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chorus_common.bus import Bucket, Bus
from chorus_common.errors import ConflictError, NotFoundError
from chorus_common.topology import BUCKET_TASKS
from chorus_coordinator.documents import TASK_ID, HistoryEvent, TaskRecord

__all__ = ["PREFIX", "TASK_ID", "TaskBoard", "Wrote", "tasks_bucket"]

#: every task is the document under ``task.<id>``
PREFIX = "task."

Wrote = Callable[[TaskRecord, int], None]
#: a change to a task document: the new document, or a refusal (raised)
Change = Callable[[TaskRecord], TaskRecord]


def tasks_bucket(bus: Bus) -> Bucket[TaskRecord]:
    """The tasks of ``chorus-tasks`` by id."""
    return bus.bucket(BUCKET_TASKS, TaskRecord, prefix=PREFIX)


class TaskBoard:
    def __init__(
        self, tasks: Bucket[TaskRecord], claim_ttl: float, wrote: Wrote | None = None
    ) -> None:
        """``wrote(doc, revision)`` hears of every successful write (the live view)."""
        self.tasks, self.claim_ttl = tasks, claim_ttl
        self._wrote: Wrote = wrote or (lambda doc, revision: None)

    async def _put(self, doc: TaskRecord, last: int | None) -> None:
        """Create (``last`` None) or compare-and-set the task's key (409 when it moved on)."""
        if last is None:
            revision = await self.tasks.create(doc.id, doc)
        else:
            revision = await self.tasks.update(doc.id, doc, last)
        self._wrote(doc, revision)

    async def get(self, task_id: str) -> tuple[TaskRecord, int]:
        found = await self.tasks.get(task_id)
        if found is None:
            raise NotFoundError(f"no task {task_id!r}")
        return found.value, found.revision

    async def all(self) -> list[TaskRecord]:
        """Every task, finished ones included (the REST listing; the loop uses the view)."""
        return list((await self.tasks.scan()).values())

    async def announce(self, task: dict[str, Any]) -> TaskRecord:
        doc = TaskRecord.model_validate(
            {
                **task,
                "status": "open",
                "assignee": None,
                "claim_expires_at": None,
                "term": None,
                "history": [HistoryEvent.now("announced")],
            }
        )
        try:
            await self._put(doc, None)
        except ConflictError:
            raise ConflictError(f"task {task['id']!r} exists already") from None
        return doc

    async def _change(self, task_id: str, change: Change) -> TaskRecord:
        for _ in range(5):
            doc, revision = await self.get(task_id)
            doc = change(doc)
            try:
                await self._put(doc, revision)
                return doc
            except ConflictError:  # written meanwhile: read it again
                continue
        raise ConflictError(f"task {task_id!r} is changing too fast; try again")

    async def claim(self, task_id: str, agent: str, term: int | None = None) -> TaskRecord:
        """Exactly one claimant wins; the others get a refusal naming the holder."""
        doc, revision = await self.get(task_id)
        now = time.time()
        if doc.status == "completed":
            raise ConflictError(f"task {task_id!r} is already completed by {doc.assignee}")
        if (
            doc.status == "claimed"
            and (doc.claim_expires_at or 0.0) > now
            and doc.assignee != agent
        ):
            raise ConflictError(f"task {task_id!r} is held by {doc.assignee}", holder=doc.assignee)
        if doc.status == "claimed" and doc.assignee != agent:
            # the holder's claim lapsed and the sweep has not run yet: say so in the history,
            # so every change of holder there follows a release
            doc.history.append(HistoryEvent.now("lease_expired", agent=doc.assignee))
        doc.status, doc.assignee = "claimed", agent
        doc.claim_expires_at, doc.term = now + self.claim_ttl, term
        doc.history.append(
            HistoryEvent.now("allocated" if term else "claimed", agent=agent, term=term)
        )
        try:
            await self._put(doc, revision)
        except ConflictError:
            current, _ = await self.get(task_id)
            raise ConflictError(
                f"task {task_id!r} was claimed by {current.assignee} first",
                holder=current.assignee,
            ) from None
        return doc

    async def progress(self, task_id: str, agent: str, progress: float) -> TaskRecord:
        def change(doc: TaskRecord) -> TaskRecord:
            if doc.assignee != agent or doc.status != "claimed":
                raise ConflictError(
                    f"{agent} does not hold task {task_id!r} (holder: {doc.assignee})"
                )
            doc.claim_expires_at = time.time() + self.claim_ttl
            doc.progress = progress
            return doc

        return await self._change(task_id, change)

    async def complete(self, task_id: str, agent: str, success: bool = True) -> TaskRecord:
        def change(doc: TaskRecord) -> TaskRecord:
            if doc.assignee != agent or doc.status != "claimed":
                raise ConflictError(
                    f"{agent} does not hold task {task_id!r} (holder: {doc.assignee})"
                )
            doc.status = "completed" if success else "open"
            if not success:
                doc.assignee = None
            doc.history.append(HistoryEvent.now("completed" if success else "failed", agent=agent))
            return doc

        return await self._change(task_id, change)

    async def release_expired(self, tasks: list[TaskRecord] | None = None) -> list[TaskRecord]:
        """Claims whose lease lapsed go back to open (``tasks``: a board read this round)."""
        released = []
        now = time.time()
        for doc in tasks if tasks is not None else await self.all():
            if doc.status == "claimed" and (doc.claim_expires_at or 0.0) < now:

                def change(d: TaskRecord) -> TaskRecord:
                    if d.status != "claimed" or (d.claim_expires_at or 0.0) >= time.time():
                        raise ConflictError("renewed meanwhile")
                    d.history.append(HistoryEvent.now("lease_expired", agent=d.assignee))
                    d.status, d.assignee, d.claim_expires_at, d.term = "open", None, None, None
                    return d

                try:
                    released.append(await self._change(doc.id, change))
                except ConflictError:
                    continue
        return released
