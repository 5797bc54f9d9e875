"""What users do while things break: publish envelopes, claim and finish tasks, store decisions.

Every loop records only what the system acknowledged (a JetStream ack, a
201/200 answer, a claim granted); errors while a node is down are expected
and counted, never retried into success. The invariants then compare those
acknowledgements with what the system holds once it has healed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import nats

from chorus_cli.testing.chaos.invariants import AdminAnswer
from chorus_common.agent import Agent
from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import ChorusError
from chorus_common.feeds import FeedWriter
from chorus_common.sealed import RoleKeyPair, seal
from chorus_common.signing import AgentKey
from chorus_common.ucxl import UcxlAddress
from chorus_common.ucxl_client import open_record

__all__ = ["Observed", "Pace", "Targets", "Workload"]

ENVELOPE_TYPE = MessageType.CONTEXT_USAGE
ENVELOPE_SUBJECT = "chorus.context.context_usage"
ROLE = "chaos"


class Targets(Protocol):
    """Where the workload sends its traffic: a chaos constellation, or `chorus up`'s."""

    @property
    def nats_url(self) -> str: ...

    @property
    def admin_token(self) -> str: ...

    @property
    def replicas(self) -> int:
        """JetStream replicas of the streams and buckets (3 on a cluster)."""
        ...

    def instances(self, service: str) -> list[tuple[str, str]]:
        """(name, URL) of the running instances of one service."""
        ...


@dataclass(frozen=True)
class Pace:
    """Seconds between the actions of each loop; the defaults are the chaos test's brisk pace."""

    publish: float = 0.02
    gateway: float = 0.05
    task: float = 0.2
    claim: float = 0.05
    dht: float = 0.1
    admin_watch: float = 0.1


@dataclass
class Observed:
    """What the workload was told, to hold the system to afterwards."""

    acked: list[str] = field(default_factory=list)
    attempted: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    completions: list[tuple[str, str]] = field(default_factory=list)
    dht_written: dict[str, Any] = field(default_factory=dict)
    admin_answers: list[AdminAnswer] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: answers that are bugs whatever the faults: a 5xx other than 503 "unavailable"
    server_errors: list[str] = field(default_factory=list)

    def note_status(self, what: str, resp: httpx.Response) -> None:
        self.errors[f"{what} {resp.status_code}"] += 1
        if resp.status_code >= 500 and resp.status_code != 503:
            self.server_errors.append(f"{what}: {resp.status_code} {resp.text[:300]}")

    def unlicensed(self, what: str, resp: httpx.Response) -> bool:
        """A 403 ``license_unavailable``: a replica without a seat refusing work, as it must
        (fail closed) while licensing is down past its leases; counted, not a bug."""
        if resp.status_code != 403:
            return False
        with contextlib.suppress(ValueError):
            doc = resp.json()
            if "license_unavailable" in (doc.get("reason"), doc.get("code")):
                self.errors[f"{what} license_unavailable"] += 1
                return True
        return False

    def summary(self) -> str:
        return (
            f"{len(self.acked)} envelopes acked of {len(self.attempted)}, "
            f"{len(self.tasks)} tasks, {len(self.completions)} completions, "
            f"{len(self.dht_written)} DHT records, {len(self.admin_answers)} admin answers, "
            f"errors {dict(self.errors)}"
        )


class Workload:
    def __init__(self, targets: Targets, rng: random.Random, pace: Pace | None = None) -> None:
        self.c, self.rng, self.pace = targets, rng, pace or Pace()
        self.seen = Observed()
        self.role = RoleKeyPair.generate()
        self.writer_key = AgentKey.generate()
        self.writer = FeedWriter("chaos-gateway", self.writer_key)
        self._stop = asyncio.Event()
        self._http = httpx.AsyncClient(
            timeout=3.0, headers={"Authorization": f"Bearer {targets.admin_token}"}
        )
        self._bus: Bus | None = None

    def _settings(self) -> ChorusSettings:
        return ChorusSettings(nats_url=self.c.nats_url, js_replicas=self.c.replicas)

    async def _any(self, service: str, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request to a random running instance of ``service``."""
        urls = [url for _, url in self.c.instances(service)]
        if not urls:
            raise ChorusError(f"no {service} running")
        return await self._http.request(method, self.rng.choice(urls) + path, **kw)

    async def run(self, seconds: float) -> None:
        bus = Bus(self._settings(), "chaos-workload")
        await bus.connect(timeout=30)
        self._bus = bus
        resp = await self._any(
            "dht", "POST", f"/v1/roles/{ROLE}/keys", json={"public_key": self.role.public_text}
        )
        resp.raise_for_status()
        resp = await self._any(
            "pubsub-gateway",
            "POST",
            f"/v1/agents/{self.writer.agent_id}/keys",
            json={"public_key": self.writer_key.public_key},
        )
        resp.raise_for_status()
        agents = [Agent(bus, f"chaos-agent-{i}", capabilities=["python"]) for i in range(4)]
        for agent in agents:
            await agent.start()
        loops = [
            self._publish(bus),
            self._gateway(),
            self._tasks(),
            *(self._claim(agent) for agent in agents),
            self._dht(),
            self._watch_admin(),
        ]

        async def stop_after() -> None:
            await asyncio.sleep(seconds)
            self._stop.set()

        async with asyncio.TaskGroup() as group:  # one loop failing stops them all
            for loop in [*loops, stop_after()]:
                group.create_task(loop)
        for agent in agents:
            with contextlib.suppress(Exception):
                await agent.stop()

    async def close(self) -> None:
        await self._http.aclose()
        if self._bus is not None:
            await self._bus.close()

    async def _every(self, interval: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=interval)
        return not self._stop.is_set()

    def _envelope(self, sender: str) -> Envelope:
        return Envelope(type=ENVELOPE_TYPE, sender=sender, payload=SAMPLE_PAYLOADS[ENVELOPE_TYPE])

    async def _publish(self, bus: Bus) -> None:
        while await self._every(self.pace.publish):
            env = self._envelope("chaos-bus")
            self.seen.attempted.append(env.id)
            try:
                await bus.publish(env, timeout=2.0)
            except Exception as exc:
                self.seen.errors[f"bus publish: {type(exc).__name__}"] += 1
                continue
            self.seen.acked.append(env.id)

    async def _gateway(self) -> None:
        """A signed feed through the gateway; an unanswered envelope is re-sent as it was, as a
        client must, since the next one in the feed would otherwise be a gap."""
        pending: Envelope | None = None
        while await self._every(self.pace.gateway):
            if pending is None:
                pending = self.writer.seal(self._envelope(self.writer.agent_id))
                self.seen.attempted.append(pending.id)
            try:
                resp = await self._any(
                    "pubsub-gateway", "POST", "/v1/envelopes", json=pending.model_dump(mode="json")
                )
            except (httpx.HTTPError, ChorusError) as exc:
                self.seen.errors[f"gateway: {type(exc).__name__}"] += 1
                continue
            if resp.status_code == 201:
                self.seen.acked.append(pending.id)
                pending = None
            elif self.seen.unlicensed("gateway", resp):
                continue  # fail-closed while its seat is gone; the same envelope goes again
            elif resp.status_code < 500:  # a refusal of a valid envelope is a bug, not chaos
                raise AssertionError(f"gateway refused a valid envelope: {resp.text}")
            else:
                self.seen.note_status("gateway", resp)

    async def _tasks(self) -> None:
        n = 0
        while await self._every(self.pace.task):
            task_id = f"chaos-{n}"
            try:
                resp = await self._any(
                    "coordinator",
                    "POST",
                    "/v1/tasks",
                    json={
                        "id": task_id,
                        "repository": "chaos",
                        "title": f"task {n}",
                        "required_capabilities": ["python"],
                    },
                )
            except (httpx.HTTPError, ChorusError) as exc:
                self.seen.errors[f"task create: {type(exc).__name__}"] += 1
                continue
            if resp.status_code in (201, 409):  # 409: an earlier try landed before it failed
                self.seen.tasks.append(task_id)
                n += 1
            else:
                self.seen.note_status("task create", resp)

    async def _claim(self, agent: Agent) -> None:
        while await self._every(self.pace.claim):
            if not self.seen.tasks:
                continue
            task_id = self.rng.choice(self.seen.tasks[-20:])
            try:
                await agent.claim(task_id)
                await agent.complete(task_id)
            except ChorusError as exc:
                self.seen.errors[f"claim: {exc.code}"] += 1
                continue
            self.seen.completions.append((task_id, agent.agent_id))

    def _sealed(self, address: str, value: Any) -> dict[str, Any]:
        """Sealed here, as UcxlClient does: a DHT node never sees the plaintext."""
        canonical = str(UcxlAddress.parse(address)).encode()
        recipients = {ROLE: self.role.public_text}
        return seal(json.dumps(value).encode(), recipients, aad=canonical).model_dump()

    async def _dht(self) -> None:
        n = 0
        while await self._every(self.pace.dht):
            address = f"ucxl://chaos:{ROLE}@chorus:chaos/*^/records/r{n}.json"
            value = {"n": n, "at": time.time()}
            n += 1
            try:
                resp = await self._any(
                    "dht",
                    "PUT",
                    f"/v1/ucxl/{quote(address, safe='')}",
                    json={"sealed": self._sealed(address, value), "roles": [ROLE]},
                )
            except (httpx.HTTPError, ChorusError) as exc:
                self.seen.errors[f"dht put: {type(exc).__name__}"] += 1
                continue
            if resp.status_code == 200:
                self.seen.dht_written[address] = value
            else:
                self.seen.note_status("dht put", resp)

    async def _watch_admin(self) -> None:
        async def ask(node: str, url: str) -> None:
            asked = time.monotonic()
            try:
                view = (await self._http.get(url + "/v1/admin", timeout=0.5)).json()
            except (httpx.HTTPError, ValueError):
                return
            if view.get("is_self") and view.get("term") is not None:
                self.seen.admin_answers.append(
                    AdminAnswer(node, int(view["term"]), asked, time.monotonic())
                )

        while await self._every(self.pace.admin_watch):
            await asyncio.gather(*(ask(n, u) for n, u in self.c.instances("election")))

    # -- reading back ------------------------------------------------------------------

    async def stored_envelope_ids(self) -> list[str]:
        """Every envelope id in the stream on the workload's subject, one per stored copy."""
        nc = await nats.connect(servers=self.c.nats_url.split(","))
        try:
            js = nc.jetstream()
            info = await js.stream_info("CHORUS_EVENTS", subjects_filter=ENVELOPE_SUBJECT)
            want = (info.state.subjects or {}).get(ENVELOPE_SUBJECT, 0)
            sub = await js.subscribe(ENVELOPE_SUBJECT, ordered_consumer=True)
            ids: list[str] = []
            deadline = time.monotonic() + 60
            while len(ids) < want and time.monotonic() < deadline:
                with contextlib.suppress(nats.errors.TimeoutError):
                    msg = await sub.next_msg(timeout=1)
                    ids.append(Envelope.model_validate_json(msg.data).id)
            await sub.unsubscribe()
            return ids
        finally:
            await nc.close()

    async def tasks_on_board(self) -> list[dict[str, Any]]:
        out = []
        for task_id in self.seen.tasks:
            resp = await self._any("coordinator", "GET", f"/v1/tasks/{task_id}")
            resp.raise_for_status()
            out.append(resp.json())
        return out

    async def read_records(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for address in self.seen.dht_written:
            for _ in range(3):  # any node answers; try another if one is still catching up
                resp = await self._any("dht", "GET", f"/v1/ucxl/{quote(address, safe='')}")
                if resp.status_code != 200:
                    continue
                try:  # opened here: the role key never goes to a DHT node
                    out[address] = open_record(resp.json(), address, ROLE, self.role)
                    break
                except ChorusError:
                    continue  # a copy that does not open: ask another node
        return out
