"""The coordinator: task board, agent registry view, leader-only scored assignment, meta-coordination."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
import time
from collections import deque
from typing import Annotated, Any, Literal

import httpx
import nats.errors
from fastapi import Depends, FastAPI, Query
from fastapi import Path as PathParam
from nats.micro.request import Request as MicroRequest
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, Field

from chorus_common.aio import cancel_and_wait
from chorus_common.bus import Delivery
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType, MetaDiscussion
from chorus_common.errors import (
    ChorusError,
    ConflictError,
    NotFoundError,
    RequestInvalidError,
    UnavailableError,
)
from chorus_common.kvscan import scan
from chorus_common.leadership import LeaderLease
from chorus_common.metrics import LATENCY_BUCKETS
from chorus_common.service import MicroHandler, Service, problem_responses
from chorus_common.service_signing import ServiceSigner, ServiceVerifier
from chorus_common.topology import BUCKET_REGISTRY, BUCKET_TASKS
from chorus_coordinator.board import TaskBoard
from chorus_coordinator.board_view import BoardView
from chorus_coordinator.rules import BUILTIN_RULES, Dependency, TaskView, detect, parse_custom_rules
from chorus_coordinator.scoring import AgentProfile, HeuristicScorer, LlmScorer, Scorer, TaskNeeds
from chorus_coordinator.sessions import Message, Session


class CoordinatorSettings(ChorusSettings):
    coordinator_claim_ttl_seconds: float = Field(default=60.0, gt=0)
    coordinator_assign_interval_seconds: float = Field(default=1.0, gt=0)
    coordinator_agent_ttl_seconds: float = Field(default=30.0, gt=0)
    coordinator_lease_ttl_seconds: float = Field(default=1.0, gt=0)
    coordinator_session_max_messages: int = Field(default=10, ge=2)
    coordinator_session_max_seconds: float = Field(default=1800.0, gt=0)
    coordinator_custom_rules: str = ""
    coordinator_llm_url: str | None = None
    coordinator_llm_model: str = "gpt-4o-mini"
    #: closed sessions, and any older than the max age, are dropped every sweep
    coordinator_session_sweep_seconds: float = Field(default=600.0, gt=0)
    coordinator_session_max_age_seconds: float = Field(default=7200.0, gt=0)
    #: every escalation is also POSTed here as JSON (a chat or paging hook)
    coordinator_escalation_webhook: str | None = None


#: how many recent dependency detections GET /v1/dependencies keeps
DEPENDENCY_HISTORY = 1000
log = logging.getLogger("chorus.coordinator")


#: task ids end up in KV keys and subjects: letters, digits, '_' and '-'
TASK_ID = r"^[A-Za-z0-9_\-]{1,64}$"
TaskId = PathParam(pattern=TASK_ID, description="the task id (letters, digits, '_', '-')")


class TaskIn(BaseModel):
    id: str = Field(pattern=TASK_ID)
    repository: str = Field(min_length=1)
    project: str = Field(default="default", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    title: str = Field(min_length=1)
    description: str = ""
    labels: list[str] = Field(default_factory=list)
    required_capabilities: list[str] = Field(default_factory=list)
    required_expertise: list[str] = Field(default_factory=list)
    role: str | None = None
    priority: int = Field(default=3, ge=1, le=5)
    dependencies: list[str] = Field(default_factory=list)


class AgentAction(BaseModel):
    agent: str = Field(min_length=1)
    progress: float = Field(default=0.0, ge=0, le=1)
    success: bool = True


def _micro_body(data: bytes) -> dict[str, Any]:
    """The JSON object of a micro request, or a 422 problem the agent can read."""
    try:
        doc = json.loads(data or b"{}")
    except (ValueError, RecursionError):
        raise RequestInvalidError("the request is not JSON: send a JSON object") from None
    if not isinstance(doc, dict):
        raise RequestInvalidError("the request must be a JSON object")
    return doc


def _field(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise RequestInvalidError(f"{name} is required (a non-empty string)")
    if name == "task_id" and not re.fullmatch(TASK_ID, value):
        raise RequestInvalidError(f"task_id {value!r} may contain only letters, digits, '_', '-'")
    return value


def _progress(value: Any) -> float:
    try:
        progress = float(value)
    except (TypeError, ValueError):
        raise RequestInvalidError("progress must be a number between 0 and 1") from None
    if not math.isfinite(progress) or not 0 <= progress <= 1:
        raise RequestInvalidError("progress must be a number between 0 and 1")
    return progress


def _success(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestInvalidError("success must be true or false")
    return value


class CoordinatorService(Service):
    name = "coordinator"
    description = "Task board, scored assignment and meta-coordination"
    settings_class = CoordinatorSettings
    settings: CoordinatorSettings

    def __init__(self, settings: CoordinatorSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        r = self.metrics.registry
        self.m_tasks = Gauge(
            "chorus_tasks_by_status", "Tasks on the board by status", ["status"], registry=r
        )
        self.m_conflicts = Counter(
            "chorus_tasks_claim_conflicts_total", "Claims refused because another won", registry=r
        )
        self.m_assigned = Counter(
            "chorus_tasks_assigned_total", "Tasks allocated by the leader", registry=r
        )
        self.m_assign_latency = Histogram(
            "chorus_tasks_assignment_latency_seconds",
            "From announcement to allocation",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.m_expired = Counter(
            "chorus_tasks_lease_expiries_total", "Claims returned to open", registry=r
        )
        self.m_sessions = Counter(
            "chorus_coordination_sessions_total", "Sessions by outcome", ["outcome"], registry=r
        )
        self.m_escalations = Counter(
            "chorus_coordination_escalations_total", "Escalations to humans", registry=r
        )
        self.m_webhook = Counter(
            "chorus_coordination_webhook_posts_total",
            "Escalations POSTed to the configured webhook, by outcome",
            ["outcome"],
            registry=r,
        )
        self.m_rules = Counter(
            "chorus_coordination_rule_matches_total",
            "Dependency rule matches",
            ["rule"],
            registry=r,
        )
        self.m_leader = Gauge(
            "chorus_coordination_is_leader", "1 while this replica assigns work", registry=r
        )
        for status in ("open", "claimed", "completed"):
            self.m_tasks.labels(status)
        for outcome in ("resolved", "escalated"):
            self.m_sessions.labels(outcome)
        for outcome in ("delivered", "failed"):
            self.m_webhook.labels(outcome)
        self.rules = BUILTIN_RULES + parse_custom_rules(s.coordinator_custom_rules)
        for rule in self.rules:
            self.m_rules.labels(rule.name)
        self.scorer: Scorer = (
            LlmScorer(s.coordinator_llm_url, s.coordinator_llm_model)
            if s.coordinator_llm_url
            else HeuristicScorer()
        )
        self.sessions: dict[str, Session] = {}
        self.dependencies: deque[Dependency] = deque(maxlen=DEPENDENCY_HISTORY)
        self._tasks: list[asyncio.Task[None]] = []
        self._posts: set[asyncio.Task[None]] = set()

    async def setup(self) -> None:
        s = self.settings
        tasks_kv = await self.bus.js.key_value(BUCKET_TASKS)
        self.view = BoardView(tasks_kv)
        self.board = TaskBoard(
            self.bus.nc, tasks_kv, s.coordinator_claim_ttl_seconds, wrote=self.view.wrote
        )
        await self.view.start()
        self.registry = await self.bus.js.key_value(BUCKET_REGISTRY)
        # every envelope this replica says is signed into its own feed (svc-coordinator-<node>)
        self.signer = await ServiceSigner.open(self.registry, self.name, s.node_id, s.data_dir)
        self.verifier = await ServiceVerifier.open(self.bus)
        self.lease = await LeaderLease.open(
            self.bus.js,
            "coordinator",
            s.node_id,
            ttl=s.coordinator_lease_ttl_seconds,
            may_hold=lambda: self.licensed,  # no seat: give the lease up, stop leading
        )
        self.on_license_change.append(self.lease.poke)
        self.lease.start()
        await self.bus.subscribe(
            "chorus.hmmm.>", f"coordinator-{s.node_id}", self._on_hmmm, deliver_new_only=True
        )
        self._tasks.append(asyncio.create_task(self._leader_loop(), name="assignment"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="session-sweep"))

    async def teardown(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._posts:  # escalations already decided still reach the webhook
            await asyncio.wait(self._posts, timeout=5)
        await cancel_and_wait(self._posts)
        await self.lease.stop(release=True)
        await self.view.stop()

    # -- agents ------------------------------------------------------------------------------

    async def live_agents(self) -> list[dict[str, Any]]:
        """Registry entries of agents that can be auto-assigned now (read once per round)."""
        now = time.time()
        try:
            values = await scan(self.bus.nc, BUCKET_REGISTRY, "agent.>")
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
                    or now - float(doc.get("updated_at", 0))
                    > self.settings.coordinator_agent_ttl_seconds
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
        return self.profiles(await self.live_agents())

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
        agents = self.profiles(live if live is not None else await self.live_agents())
        return [c.as_dict() for c in await self.scorer.score(needs, agents)]

    # -- the leader's loop ------------------------------------------------------------------------

    async def _leader_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.coordinator_assign_interval_seconds)
            self.m_leader.set(1 if self.lease.is_leader else 0)
            try:
                await self.view.check_fresh()
                for status, count in self.view.counts().items():
                    self.m_tasks.labels(status).set(count)
                if not self.lease.is_leader or self.lease.term is None:
                    continue
                term = self.lease.term
                # the round works from the live view (open and claimed tasks only) and one
                # registry read; each claim it makes shows in the view's load at once
                tasks = self.view.tasks()
                for released in await self.board.release_expired(tasks):
                    self.m_expired.inc()
                    await self._say(
                        MessageType.STATUS_UPDATE,
                        {
                            "agent": "coordinator",
                            "status": "task released",
                            "detail": f"{released['id']} returned to open: claim lease lapsed",
                            "task_id": released["id"],
                        },
                    )
                waiting = sorted(
                    (t for t in tasks if t["status"] == "open"), key=lambda t: -t.get("priority", 3)
                )
                # the registry is read only when there is something to assign: an idle
                # board costs no registry scan (and no short-lived consumer) per round
                live = await self.live_agents() if waiting else []
                for task in waiting:
                    await self._assign(task, term, live)
                for session in list(self.sessions.values()):
                    if session.tick(time.time()) == "escalated":
                        await self._escalate(session)
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus may be away; the next round tries again
                continue

    async def _assign(self, task: dict[str, Any], term: int, live: list[dict[str, Any]]) -> None:
        cards = [c for c in await self.candidates(task, live) if c["eligible"]]
        if not cards:
            return
        best = cards[0]
        self.lease.require_term(term)  # fencing: a demoted leader allocates nothing
        try:
            claimed = await self.board.claim(task["id"], best["agent"], term=term)
        except ConflictError:
            return
        self.m_assigned.inc()
        announced = claimed["history"][0]["at"] if claimed.get("history") else time.time()
        self.m_assign_latency.observe(max(0.0, time.time() - announced))
        await self._say(
            MessageType.WORK_ALLOCATION,
            {
                "task_id": task["id"],
                "agent": best["agent"],
                "score": best["total"],
                "term": term,
                "reason": "highest score",
                "breakdown": best["breakdown"],
            },
            to_roles=[],
        )

    async def _say(self, mtype: MessageType, payload: dict[str, Any], **fields: Any) -> None:
        """Sign into this replica's feed and publish: consumers refuse coordinator envelopes
        that are not (chorus_common.service_signing)."""
        env = Envelope(
            type=mtype,
            sender=self.signer.sender,
            sender_role="coordinator",
            payload=payload,
            **fields,
        )
        with contextlib.suppress(ChorusError):
            await self.bus.publish(self.signer.seal(env))

    # -- meta-coordination --------------------------------------------------------------------

    async def announce(self, task: TaskIn) -> dict[str, Any]:
        doc = await self.board.announce(task.model_dump())
        await self._say(
            MessageType.TASK_ANNOUNCEMENT,
            {
                "task_id": task.id,
                "repository": task.repository,
                "title": task.title,
                "description": task.description,
                "labels": task.labels,
                "required_capabilities": task.required_capabilities,
                "required_expertise": task.required_expertise,
                "priority": task.priority,
                "dependencies": task.dependencies,
            },
            project=task.project,
        )
        new = TaskView(
            f"{task.project}:{task.id}",
            task.repository,
            task.title,
            task.description,
            tuple(task.labels),
        )
        known = [
            TaskView(
                f"{t.get('project', 'default')}:{t['id']}",
                t["repository"],
                t["title"],
                t.get("description", ""),
                tuple(t.get("labels", [])),
            )
            for t in self.view.tasks()  # open and claimed: finished work needs no coordinating
            if t["id"] != task.id
        ]
        for dep in detect(new, known, self.rules):
            self.dependencies.append(dep)
            self.m_rules.labels(dep.rule).inc()
            await self.open_session(dep)
        return doc

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
        await self._say(
            MessageType.META_DISCUSSION,
            {
                "message_type": "dependency_detected",
                "content": dep.reason,
                "dependency": {
                    "rule": dep.rule,
                    "confidence": dep.confidence,
                    "reason": dep.reason,
                    "task_a": dep.task_a,
                    "task_b": dep.task_b,
                },
                "repositories": list(dep.repositories),
                "hop_count": 0,
                "max_hops": 3,
                "detected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "session_id": session_id,
            },
            thread=session_id,
        )
        await self._say(
            MessageType.DEPENDENCY_ALERT,
            {
                "rule": dep.rule,
                "confidence": dep.confidence,
                "reason": dep.reason,
                "task_a": dep.task_a,
                "task_b": dep.task_b,
                "repositories": list(dep.repositories),
                "session_id": session_id,
            },
            thread=session_id,
        )
        await self._say(
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

    async def _on_hmmm(self, env: Envelope, delivery: Delivery) -> None:
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
            self.m_sessions.labels("resolved").inc()
            await self._say(
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
            await self._escalate(session)

    async def _escalate(self, session: Session) -> None:
        self.m_sessions.labels("escalated").inc()
        self.m_escalations.inc()
        payload = {
            "thread": session.session_id,
            "reason": session.outcome_reason,
            "participants": session.participants,
            "rounds": len(session.transcript),
            "requested_human_role": "maintainer",
            "session_id": session.session_id,
        }
        await self._say(MessageType.ESCALATION_TRIGGER, payload, thread=session.session_id)
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
            self.m_webhook.labels("failed").inc()
            log.warning("escalation webhook %s failed: %s", url, exc)
        else:
            self.m_webhook.labels("delivered").inc()

    async def _sweep_loop(self) -> None:
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

    # -- NATS micro: what agents call ---------------------------------------------------------

    def micro_endpoints(self) -> dict[str, MicroHandler]:
        async def respond(request: MicroRequest, work: Any) -> None:
            try:
                doc = await work(_micro_body(request.data))
                await request.respond(json.dumps({"ok": True, "task": doc}).encode())
            except ChorusError as exc:
                if isinstance(exc, ConflictError):
                    self.m_conflicts.inc()
                await request.respond(json.dumps({"ok": False, "error": exc.to_problem()}).encode())
            except nats.errors.Error as exc:  # the KV did not answer: the agent may retry
                error = UnavailableError(f"the task board did not answer ({exc}); try again")
                await request.respond(
                    json.dumps({"ok": False, "error": error.to_problem()}).encode()
                )

        async def claim(req: MicroRequest) -> None:
            await respond(req, lambda d: self.board.claim(_field(d, "task_id"), _field(d, "agent")))

        async def progress(req: MicroRequest) -> None:
            await respond(
                req,
                lambda d: self.board.progress(
                    _field(d, "task_id"), _field(d, "agent"), _progress(d.get("progress", 0))
                ),
            )

        async def complete(req: MicroRequest) -> None:
            await respond(
                req,
                lambda d: self.board.complete(
                    _field(d, "task_id"), _field(d, "agent"), _success(d.get("success", True))
                ),
            )

        return {"claim": claim, "progress": progress, "complete": complete}

    # -- REST ---------------------------------------------------------------------------------

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        @app.post(
            "/v1/tasks",
            dependencies=[Depends(admin)],
            status_code=201,
            tags=["tasks"],
            responses=problem_responses(409, 503),
        )
        async def create_task(task: TaskIn) -> dict[str, Any]:
            """Announce a task; cross-repository dependencies open coordination sessions."""
            return await self.announce(task)

        @app.get("/v1/tasks", tags=["tasks"], responses=problem_responses(503))
        async def list_tasks(
            status: Literal["open", "claimed", "completed"] | None = None,
            after: Annotated[
                str | None, Query(description="the `next` of the previous page: ids after it")
            ] = None,
            limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        ) -> dict[str, Any]:
            """Tasks in id order, a page at a time; `next` is null on the last page.

            A board keeps every finished task, so one answer holding them all would grow
            without bound.
            """
            tasks = sorted(
                (
                    t
                    for t in await self.board.all()
                    if (status is None or t["status"] == status)
                    and (after is None or t["id"] > after)
                ),
                key=lambda t: str(t["id"]),
            )
            page = tasks[:limit]
            return {"tasks": page, "next": page[-1]["id"] if len(tasks) > limit else None}

        @app.get("/v1/tasks/{task_id}", tags=["tasks"], responses=problem_responses(404, 503))
        async def get_task(task_id: str = TaskId) -> dict[str, Any]:
            return (await self.board.get(task_id))[0]

        @app.get(
            "/v1/tasks/{task_id}/candidates", tags=["tasks"], responses=problem_responses(404, 503)
        )
        async def candidates(task_id: str = TaskId) -> dict[str, Any]:
            """Each available agent's score breakdown: why an agent gets (or does not get) a task."""
            task, _ = await self.board.get(task_id)
            return {"task": task_id, "candidates": await self.candidates(task)}

        busy = problem_responses(404, 409, 503)

        @app.post(
            "/v1/tasks/{task_id}/claim",
            dependencies=[Depends(admin)],
            tags=["tasks"],
            responses=busy,
        )
        async def claim(body: AgentAction, task_id: str = TaskId) -> dict[str, Any]:
            try:
                return await self.board.claim(task_id, body.agent)
            except ConflictError:
                self.m_conflicts.inc()
                raise

        @app.post(
            "/v1/tasks/{task_id}/progress",
            dependencies=[Depends(admin)],
            tags=["tasks"],
            responses=busy,
        )
        async def progress(body: AgentAction, task_id: str = TaskId) -> dict[str, Any]:
            return await self.board.progress(task_id, body.agent, body.progress)

        @app.post(
            "/v1/tasks/{task_id}/complete",
            dependencies=[Depends(admin)],
            tags=["tasks"],
            responses=busy,
        )
        async def complete(body: AgentAction, task_id: str = TaskId) -> dict[str, Any]:
            return await self.board.complete(task_id, body.agent, body.success)

        @app.get("/v1/agents", tags=["agents"], responses=problem_responses(503))
        async def agents() -> dict[str, Any]:
            return {
                "agents": [
                    {
                        "agent": a.agent,
                        "capabilities": sorted(a.capabilities),
                        "roles": sorted(a.roles),
                        "current_tasks": a.current_tasks,
                        "max_tasks": a.max_tasks,
                        "status": a.status,
                    }
                    for a in await self.agents()
                ]
            }

        @app.get("/v1/sessions", tags=["coordination"])
        async def sessions() -> dict[str, Any]:
            return {
                "sessions": [
                    {
                        "session_id": s.session_id,
                        "type": s.session_type,
                        "status": s.status,
                        "participants": s.participants,
                        "messages": len(s.transcript),
                        "reason": s.outcome_reason,
                    }
                    for s in self.sessions.values()
                ]
            }

        @app.get(
            "/v1/sessions/{session_id}", tags=["coordination"], responses=problem_responses(404)
        )
        async def session(session_id: str) -> dict[str, Any]:
            s = self.sessions.get(session_id)
            if s is None:
                raise NotFoundError(f"no session {session_id!r}")
            return {
                "session_id": s.session_id,
                "status": s.status,
                "reason": s.outcome_reason,
                "participants": s.participants,
                "transcript": [
                    {"agent": m.agent, "kind": m.kind, "content": m.content, "at": m.at}
                    for m in s.transcript
                ],
            }

        @app.get("/v1/dependencies", tags=["coordination"])
        async def dependencies() -> dict[str, Any]:
            return {"dependencies": [d.__dict__ for d in self.dependencies]}
