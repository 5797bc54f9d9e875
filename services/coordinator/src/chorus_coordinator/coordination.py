"""Meta-coordination: dependency detection on announcement, sessions, escalation (SPEC.md §10)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any

import httpx

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Delivery
from chorus_common.envelopes import Envelope, MessageType, MetaDiscussion
from chorus_common.service_signing import ServiceVerifier
from chorus_coordinator.board import TaskBoard
from chorus_coordinator.board_view import BoardView
from chorus_coordinator.documents import TaskRecord
from chorus_coordinator.metrics import CoordinatorMetrics
from chorus_coordinator.rules import Dependency, DependencyRule, TaskView, detect
from chorus_coordinator.sessions import Message, Session
from chorus_coordinator.settings import CoordinatorSettings
from chorus_coordinator.voice import Voice

__all__ = ["DEPENDENCY_HISTORY", "Coordination"]

#: how many recent dependency detections GET /v1/dependencies keeps
DEPENDENCY_HISTORY = 1000
log = logging.getLogger("chorus.coordinator")


class Coordination:
    """Announces tasks, opens a session per cross-repository dependency, follows the HMMM
    threads of its sessions to resolution or escalation, and forgets finished sessions."""

    def __init__(
        self,
        settings: CoordinatorSettings,
        rules: tuple[DependencyRule, ...],
        metrics: CoordinatorMetrics,
        board: TaskBoard,
        view: BoardView,
        verifier: ServiceVerifier,
        voice: Voice,
    ) -> None:
        self.settings, self.rules, self.metrics = settings, rules, metrics
        self.board, self.view, self.verifier, self.voice = board, view, verifier, voice
        self.sessions: dict[str, Session] = {}
        self.dependencies: deque[Dependency] = deque(maxlen=DEPENDENCY_HISTORY)
        self._posts: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Escalations already decided still reach the webhook (for a while)."""
        if self._posts:
            await asyncio.wait(self._posts, timeout=5)
        await cancel_and_wait(self._posts)

    # -- announcement -------------------------------------------------------------------------

    async def announce(self, task: dict[str, Any]) -> TaskRecord:
        """Put ``task`` (a ``TaskIn``'s fields) on the board, say so, and open a session for
        every dependency on an open or claimed task of another repository."""
        doc = await self.board.announce(task)
        await self.voice.say(
            MessageType.TASK_ANNOUNCEMENT,
            {
                "task_id": task["id"],
                "repository": task["repository"],
                "title": task["title"],
                "description": task["description"],
                "labels": task["labels"],
                "required_capabilities": task["required_capabilities"],
                "required_expertise": task["required_expertise"],
                "priority": task["priority"],
                "dependencies": task["dependencies"],
            },
            project=task["project"],
        )
        new = TaskView(
            f"{task['project']}:{task['id']}",
            task["repository"],
            task["title"],
            task["description"],
            tuple(task["labels"]),
        )
        known = [
            TaskView(f"{t.project}:{t.id}", t.repository, t.title, t.description, tuple(t.labels))
            for t in self.view.tasks()  # open and claimed: finished work needs no coordinating
            if t.id != task["id"]
        ]
        for dep in detect(new, known, self.rules):
            self.dependencies.append(dep)
            self.metrics.rule_matches.labels(dep.rule).inc()
            await self.open_session(dep)
        return doc

    # -- sessions -----------------------------------------------------------------------------

    async def open_session(self, dep: Dependency) -> Session:
        session_id = f"s-{secrets.token_hex(4)}"
        session = Session(
            session_id,
            "dependency",
            [],
            time.time(),
            max_messages=self.settings.coordinator_session_max_messages,
            max_seconds=self.settings.coordinator_session_max_seconds,
        )
        self.sessions[session_id] = session
        found = {
            "rule": dep.rule,
            "confidence": dep.confidence,
            "reason": dep.reason,
            "task_a": dep.task_a,
            "task_b": dep.task_b,
        }
        await self.voice.say(
            MessageType.META_DISCUSSION,
            {
                "message_type": "dependency_detected",
                "content": dep.reason,
                "dependency": found,
                "repositories": list(dep.repositories),
                "hop_count": 0,
                "max_hops": 3,
                "detected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "session_id": session_id,
            },
            thread=session_id,
        )
        await self.voice.say(
            MessageType.DEPENDENCY_ALERT,
            {**found, "repositories": list(dep.repositories), "session_id": session_id},
            thread=session_id,
        )
        await self.voice.say(
            MessageType.COORDINATION_REQUEST,
            {
                "session_id": session_id,
                "session_type": "dependency",
                "participants": ["coordinator"],
                "tasks": [dep.task_a, dep.task_b],
                "reason": dep.reason,
                "max_rounds": self.settings.coordinator_session_max_messages,
            },
            thread=session_id,
        )
        return session

    async def on_hmmm(self, env: Envelope, delivery: Delivery) -> None:
        """A message on an HMMM thread: a participant's turn in one of this replica's sessions."""
        if env.thread not in self.sessions:
            return
        # a redelivered envelope is no replay here: the consumer hands it over again
        verdict = await self.verifier.check_envelope(env, dedupe=False)
        if not verdict.ok or verdict.identity is not None:
            return  # forged (counted), or a coordinator's own word: not a participant's turn
        if not isinstance(env.payload, MetaDiscussion):
            return
        session = self.sessions[env.thread]
        kind = env.payload.kind if env.payload.kind != "info" else "info"
        outcome = session.add(Message(env.sender, kind, env.payload.content, time.time()))
        if outcome == "resolved":
            self.metrics.sessions.labels("resolved").inc()
            await self.voice.say(
                MessageType.COORDINATION_COMPLETE,
                {
                    "session_id": session.session_id,
                    "outcome": "resolved",
                    "summary": session.outcome_reason,
                    "participants": session.participants,
                    "rounds": len(session.transcript),
                },
                thread=session.session_id,
            )
        elif outcome == "escalated":
            await self.escalate(session)

    async def tick(self) -> None:
        """Sessions that ran out of time escalate (the leader's round calls this)."""
        for session in list(self.sessions.values()):
            if session.tick(time.time()) == "escalated":
                await self.escalate(session)

    async def escalate(self, session: Session) -> None:
        self.metrics.sessions.labels("escalated").inc()
        self.metrics.escalations.inc()
        payload = {
            "thread": session.session_id,
            "reason": session.outcome_reason,
            "participants": session.participants,
            "rounds": len(session.transcript),
            "requested_human_role": "maintainer",
            "session_id": session.session_id,
        }
        await self.voice.say(MessageType.ESCALATION_TRIGGER, payload, thread=session.session_id)
        if self.settings.coordinator_escalation_webhook:
            post = asyncio.create_task(self._post_webhook(payload), name="escalation-webhook")
            self._posts.add(post)
            post.add_done_callback(self._posts.discard)

    async def _post_webhook(self, payload: dict[str, Any]) -> None:
        """Tell the configured hook; a slow or failing hook never holds up coordination."""
        url = self.settings.coordinator_escalation_webhook
        assert url is not None
        body = {"event": "escalation_trigger", "node_id": self.settings.node_id, **payload}
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.post(url, json=body)
                resp.raise_for_status()
        except httpx.HTTPError as exc:
            self.metrics.webhook.labels("failed").inc()
            log.warning("escalation webhook %s failed: %s", url, exc)
        else:
            self.metrics.webhook.labels("delivered").inc()

    # -- forgetting ---------------------------------------------------------------------------

    async def sweep_loop(self) -> None:
        """Closed sessions, and sessions past their max age, leave memory (SPEC.md §10)."""
        while True:
            await asyncio.sleep(self.settings.coordinator_session_sweep_seconds)
            self.sweep_sessions(time.time())

    def sweep_sessions(self, now: float) -> int:
        max_age = self.settings.coordinator_session_max_age_seconds
        gone = [k for k, v in self.sessions.items() if v.sweepable(now, max_age)]
        for key in gone:
            del self.sessions[key]
        return len(gone)
