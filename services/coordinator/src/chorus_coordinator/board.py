"""The task board in the ``chorus-tasks`` KV bucket: every change is a compare-and-set.

Claims, allocations, progress and completion all read a task, change it and
write it back on the revision they read; a concurrent writer makes the write
fail and exactly one claimant wins.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from chorus_common.errors import ConflictError, NotFoundError
from chorus_common.kvscan import scan
from chorus_common.topology import BUCKET_TASKS

__all__ = ["TASK_ID", "TaskBoard", "Wrote"]

#: task ids end up in KV keys and subjects: letters, digits, '_' and '-'
TASK_ID = r"^[A-Za-z0-9_\-]{1,64}$"


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "at": time.time(), **fields}


Wrote = Callable[[dict[str, Any], int], None]
#: a change to a task document: the new document, or a refusal (raised)
Change = Callable[[dict[str, Any]], dict[str, Any]]


class TaskBoard:
    def __init__(
        self, nc: Client, kv: KeyValue, claim_ttl: float, wrote: Wrote | None = None
    ) -> None:
        """``wrote(doc, revision)`` hears of every successful write (the live view)."""
        self.nc, self.kv, self.claim_ttl = nc, kv, claim_ttl
        self._wrote: Wrote = wrote or (lambda doc, revision: None)

    async def _put(self, doc: dict[str, Any], last: int | None) -> None:
        """Create (``last`` None) or compare-and-set the task's key."""
        key, data = f"task.{doc['id']}", json.dumps(doc).encode()
        if last is None:
            revision = await self.kv.create(key, data)
        else:
            revision = await self.kv.update(key, data, last=last)
        self._wrote(doc, revision)

    async def get(self, task_id: str) -> tuple[dict[str, Any], int]:
        try:
            entry = await self.kv.get(f"task.{task_id}")
        except KeyNotFoundError:
            raise NotFoundError(f"no task {task_id!r}") from None
        assert entry.value is not None and entry.revision is not None
        return json.loads(entry.value), entry.revision

    async def all(self) -> list[dict[str, Any]]:
        """Every task, finished ones included (the REST listing; the loop uses the view)."""
        values = await scan(self.nc, BUCKET_TASKS, "task.>")
        return [json.loads(v) for v in values.values()]

    async def announce(self, task: dict[str, Any]) -> dict[str, Any]:
        doc = {
            **task,
            "status": "open",
            "assignee": None,
            "claim_expires_at": None,
            "term": None,
            "history": [_event("announced")],
        }
        try:
            await self._put(doc, None)
        except Exception as exc:
            if "wrong last sequence" in str(exc).lower() or isinstance(
                exc, KeyWrongLastSequenceError
            ):
                raise ConflictError(f"task {task['id']!r} exists already") from None
            raise
        return doc

    async def _change(self, task_id: str, change: Change) -> dict[str, Any]:
        for _ in range(5):
            doc, revision = await self.get(task_id)
            doc = change(doc)
            try:
                await self._put(doc, revision)
                return doc
            except KeyWrongLastSequenceError:
                continue
        raise ConflictError(f"task {task_id!r} is changing too fast; try again")

    async def claim(self, task_id: str, agent: str, term: int | None = None) -> dict[str, Any]:
        """Exactly one claimant wins; the others get a refusal naming the holder."""
        doc, revision = await self.get(task_id)
        now = time.time()
        if doc["status"] == "completed":
            raise ConflictError(f"task {task_id!r} is already completed by {doc['assignee']}")
        if (
            doc["status"] == "claimed"
            and doc["claim_expires_at"] > now
            and doc["assignee"] != agent
        ):
            raise ConflictError(
                f"task {task_id!r} is held by {doc['assignee']}", holder=doc["assignee"]
            )
        if doc["status"] == "claimed" and doc["assignee"] != agent:
            # the holder's claim lapsed and the sweep has not run yet: say so in the history,
            # so every change of holder there follows a release
            doc["history"].append(_event("lease_expired", agent=doc["assignee"]))
        doc.update(
            status="claimed", assignee=agent, claim_expires_at=now + self.claim_ttl, term=term
        )
        doc["history"].append(_event("allocated" if term else "claimed", agent=agent, term=term))
        try:
            await self._put(doc, revision)
        except KeyWrongLastSequenceError:
            current, _ = await self.get(task_id)
            raise ConflictError(
                f"task {task_id!r} was claimed by {current['assignee']} first",
                holder=current["assignee"],
            ) from None
        return doc

    async def progress(self, task_id: str, agent: str, progress: float) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["assignee"] != agent or doc["status"] != "claimed":
                raise ConflictError(
                    f"{agent} does not hold task {task_id!r} (holder: {doc['assignee']})"
                )
            doc["claim_expires_at"] = time.time() + self.claim_ttl
            doc["progress"] = progress
            return doc

        return await self._change(task_id, change)

    async def complete(self, task_id: str, agent: str, success: bool = True) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["assignee"] != agent or doc["status"] != "claimed":
                raise ConflictError(
                    f"{agent} does not hold task {task_id!r} (holder: {doc['assignee']})"
                )
            doc["status"] = "completed" if success else "open"
            if not success:
                doc["assignee"] = None
            doc["history"].append(_event("completed" if success else "failed", agent=agent))
            return doc

        return await self._change(task_id, change)

    async def release_expired(
        self, tasks: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Claims whose lease lapsed go back to open (``tasks``: a board read this round)."""
        released = []
        now = time.time()
        for doc in tasks if tasks is not None else await self.all():
            if doc["status"] == "claimed" and doc["claim_expires_at"] < now:

                def change(d: dict[str, Any]) -> dict[str, Any]:
                    if d["status"] != "claimed" or d["claim_expires_at"] >= time.time():
                        raise ConflictError("renewed meanwhile")
                    d["history"].append(_event("lease_expired", agent=d["assignee"]))
                    d.update(status="open", assignee=None, claim_expires_at=None, term=None)
                    return d

                try:
                    released.append(await self._change(doc["id"], change))
                except ConflictError:
                    continue
        return released
