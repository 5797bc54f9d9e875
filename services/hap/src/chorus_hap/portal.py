"""What a person does on the mesh, shared by the web UI and the terminal UI.

Each person is an agent with an Ed25519 key and a signed, hash-chained feed kept
in the data folder; messages are previewed with SHHH redaction before they are
signed and published; decisions and votes are envelopes in that feed, tallied
from the stream so every reader sees the same result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from nats.aio.msg import Msg

from chorus_common.bus import EVENTS_STREAM, Bus
from chorus_common.envelopes import Envelope, MessageGroup, MessageType, payload_model
from chorus_common.errors import (
    ChorusError,
    NotFoundError,
    PayloadError,
    RequestInvalidError,
    UnavailableError,
)
from chorus_common.feeds import FeedState, FeedWriter
from chorus_common.registry import AgentDirectory
from chorus_common.sealed import RoleKeyPair
from chorus_common.service_signing import ServiceVerifier
from chorus_common.shhh import Finding, Redactor
from chorus_common.signing import AgentKey
from chorus_common.subjects import routes, subject_matches, validate_filter
from chorus_common.ucxl_client import UcxlClient, open_record
from chorus_hap.decisions import KIND_OF, Decision, DecisionBook, thread_of
from chorus_hap.documents import ADMIN_LEASE_KEY, election_leases, registry_agents

__all__ = ["WIZARD_TYPES", "FeedItem", "Person", "Portal", "Preview", "summarize"]

log = logging.getLogger("chorus.hap")

#: the HMMM types a person composes in the wizard
WIZARD_TYPES = [t.value for t in MessageType if t.group is MessageGroup.HMMM]


@dataclass
class Person:
    agent: str
    key: AgentKey
    writer: FeedWriter
    state_file: Path

    def seal(self, env: Envelope) -> Envelope:
        sealed = self.writer.seal(env)
        state = self.writer.state
        self.state_file.write_text(json.dumps({"seq": state.seq, "head": state.head}))
        return sealed


@dataclass
class Preview:
    envelope: Envelope
    findings: list[Finding]
    subjects: list[str]


@dataclass
class FeedItem:
    subject: str
    at: float
    sender: str
    type: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "at": self.at,
            "sender": self.sender,
            "type": self.type,
            "text": self.text,
        }


def summarize(env: Envelope) -> str:
    payload = env.payload.model_dump(exclude_none=True)
    for key in ("content", "summary", "problem", "question", "title", "status", "reason", "answer"):
        if payload.get(key):
            return str(payload[key])[:200]
    return json.dumps(payload)[:200]


class Portal:
    def __init__(
        self, bus: Bus, data_dir: Path, quorum: int, role: str, dht_url: str | None
    ) -> None:
        self.bus = bus
        self.leases = election_leases(bus)
        self.registry = registry_agents(bus)
        self.admin_token: str | None = None
        self.data_dir = data_dir
        self.role = role
        self.dht_url = dht_url
        self.book = DecisionBook(quorum)
        self.redactor = Redactor()
        self.recent: deque[FeedItem] = deque(maxlen=200)
        self.listeners: set[Callable[[FeedItem], None]] = set()
        self.people: dict[str, Person] = {}
        self.directory: AgentDirectory | None = None
        self.verifier: ServiceVerifier | None = None
        self._subs: list[Any] = []
        self._http = httpx.AsyncClient(timeout=5)
        self._changed = asyncio.Event()
        self.on_sent: Callable[[str], None] = lambda mtype: None

    async def start(self) -> None:
        self.directory = await AgentDirectory.open(self.bus)
        self.verifier = await ServiceVerifier.open(self.bus)
        self._subs.append(await self.bus.tap("chorus.>", self._on_live))
        # the decision tally: every meta_discussion from the start, then live ones
        self._subs.append(
            await self.bus.replay(
                "chorus.hmmm.*.meta_discussion", self._on_decision_msg, stream=EVENTS_STREAM
            )
        )

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self._http.aclose()

    # -- people ------------------------------------------------------------------

    async def person(self, agent: str) -> Person:
        if agent in self.people:
            return self.people[agent]
        folder = self.data_dir / "people"
        folder.mkdir(parents=True, exist_ok=True)
        key = AgentKey.load_or_create(folder / f"{agent}.key")
        state_file = folder / f"{agent}.feed.json"
        state = FeedState()
        if state_file.exists():
            doc = json.loads(state_file.read_text())
            state = FeedState(seq=int(doc["seq"]), head=doc["head"])
        person = Person(agent, key, FeedWriter(agent, key, state), state_file)
        assert self.directory is not None
        await self.directory.register_key(agent, key.public_key)
        self.people[agent] = person
        return person

    # -- the live feed -------------------------------------------------------------

    async def _on_live(self, msg: Msg) -> None:
        if msg.subject.startswith("chorus.svc.") or ":" in (msg.headers or {}).get(
            "Nats-Msg-Id", ""
        ):
            return  # service RPC and role/project copies are not news
        try:
            env = Envelope.decode(msg.data)
        except Exception:
            return
        # a person must never be shown a service's word that the service did not sign
        assert self.verifier is not None
        if not (await self.verifier.check_envelope(env)).ok:
            return
        item = FeedItem(msg.subject, time.time(), env.sender, env.type.value, summarize(env))
        self.recent.append(item)
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):
                listener(item)

    def recent_items(self, subject_filter: str = "chorus.>") -> list[FeedItem]:
        validate_filter(subject_filter)
        return [i for i in self.recent if subject_matches(subject_filter, i.subject)]

    async def _on_decision_msg(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            self.book.apply(Envelope.decode(msg.data))
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until the tally read from the stream satisfies ``condition``."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotFoundError(f"{what} did not appear on the bus within {timeout:.0f}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))

    # -- composing and sending --------------------------------------------------------

    async def compose(
        self,
        agent: str,
        message_type: str,
        text: str,
        *,
        thread: str | None = None,
        task: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Preview:
        """Build, validate and redact an envelope without sending it (the wizard's preview)."""
        if not text.strip():
            raise RequestInvalidError("the message is empty: write something to send")
        try:
            mtype = MessageType(message_type)
        except ValueError:
            raise RequestInvalidError(f"unknown message type {message_type!r}") from None
        payload = self._payload_for(agent, mtype, text, thread, task, extra or {})
        try:
            env = Envelope(
                type=mtype,
                sender=agent,
                sender_role=self.role,
                thread=thread or None,
                task=task or None,
                payload=payload,
            )
        except PayloadError as exc:
            raise RequestInvalidError(exc.detail) from None
        except ValueError as exc:
            raise RequestInvalidError(
                f"thread and task ids use letters, digits, '_' or '-': {exc}"
            ) from None
        clean, findings = self.redactor.redact_envelope(env)
        return Preview(clean, findings, routes(clean))

    def _payload_for(
        self,
        agent: str,
        mtype: MessageType,
        text: str,
        thread: str | None,
        task: str | None,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        payloads: dict[MessageType, dict[str, Any]] = {
            MessageType.META_DISCUSSION: {"content": text},
            MessageType.TASK_HELP_REQUEST: {
                "task_id": task or "none",
                "agent": agent,
                "problem": text,
            },
            MessageType.TASK_HELP_RESPONSE: {
                "task_id": task or "none",
                "request_id": thread or "none",
                "helper": agent,
                "answer": text,
            },
            MessageType.COORDINATION_REQUEST: {
                "session_id": thread or "s",
                "participants": [agent],
                "reason": text,
            },
            MessageType.COORDINATION_COMPLETE: {"session_id": thread or "s", "summary": text},
            MessageType.DEPENDENCY_ALERT: {
                "rule": "human",
                "confidence": 1.0,
                "reason": text,
                "task_a": task or "?",
                "task_b": "?",
            },
            MessageType.ESCALATION_TRIGGER: {"thread": thread or task or "general", "reason": text},
            MessageType.STATUS_UPDATE: {"agent": agent, "status": text[:200]},
            MessageType.ROLE_ANNOUNCEMENT: {"agent": agent, "role": text},
        }
        base = payloads.get(mtype, {})
        if not base and mtype not in (MessageType.META_DISCUSSION,):
            model = payload_model(mtype)
            raise RequestInvalidError(
                f"{mtype.value} cannot be composed here; send it through the gateway "
                f"({model.__name__} has fields {sorted(model.model_fields)})"
            )
        return {**base, **extra}

    async def send(self, agent: str, preview: Preview) -> dict[str, Any]:
        """Sign the previewed envelope into the person's feed and publish it."""
        person = await self.person(agent)
        sealed = person.seal(preview.envelope)
        acks = await self.bus.publish(sealed)
        self.on_sent(sealed.type.value)
        return {
            "id": sealed.id,
            "seq": acks[0].seq,
            "feed_seq": sealed.feed_seq,
            "subjects": routes(sealed),
        }

    # -- decisions -------------------------------------------------------------------

    async def open_decision(self, agent: str, title: str) -> str:
        decision_id = secrets.token_hex(4)
        preview = await self.compose(
            agent,
            "meta_discussion",
            title,
            thread=thread_of(decision_id),
            extra={"message_type": "decision_open", "kind": "proposal"},
        )
        await self.send(agent, preview)
        return decision_id

    async def vote(
        self, agent: str, decision_id: str, choice: str, comment: str = ""
    ) -> dict[str, Any]:
        decision = self.book.check_vote(decision_id, agent, choice)
        preview = await self.compose(
            agent,
            "meta_discussion",
            comment or choice,
            thread=thread_of(decision_id),
            extra={"message_type": "decision_vote", "kind": KIND_OF[choice]},
        )
        result = await self.send(agent, preview)
        result["decision"] = decision.decision_id
        await self.wait_for(lambda: agent in decision.votes, 5, "the vote")
        if decision.closed and self.dht_url and self.admin_token:
            # the vote that closed it publishes the outcome through the DHT's DecisionPublisher
            decision.address = await self._publish_decision(agent, decision)
        return result

    async def _publish_decision(self, agent: str, decision: Decision) -> str | None:
        """Seal the outcome here, to the role's registered key, and store it through the
        DHT's DecisionPublisher: the DHT node never sees the tally or the votes."""
        assert self.dht_url is not None
        dht = UcxlClient(self.dht_url, self.admin_token, http=self._http)
        try:
            result = await dht.publish_decision(
                decision=f"{decision.title}: {decision.outcome}",
                rationale=json.dumps(
                    {
                        "tally": decision.tally(),
                        "votes": [v.__dict__ for v in decision.votes.values()],
                    }
                ),
                author=agent,
                role=self.role,
                project="hap",
                task=decision.decision_id,
                roles=[self.role],
            )
        except ChorusError as exc:
            # the tally stands on the bus; the record can be published again
            log.warning("decision %s was not stored in the DHT: %s", decision.decision_id, exc)
            return None
        address: str = result["address"]
        return address

    async def wait_decision(self, decision_id: str, timeout: float = 5.0) -> None:
        await self.wait_for(
            lambda: decision_id in self.book.decisions, timeout, f"decision {decision_id}"
        )

    # -- the rest of the mesh ----------------------------------------------------------

    async def peers(self) -> list[dict[str, Any]]:
        try:
            entries = await self.registry.scan()
        except Exception as exc:
            raise UnavailableError(f"the agent registry could not be read: {exc!s}") from None
        out = [entry.shown() for entry in entries.values()]
        return sorted(out, key=lambda d: str(d.get("agent")))

    async def announce(self, agent: str, role: str, capabilities: list[str]) -> None:
        person = await self.person(agent)
        assert self.directory is not None
        await self.directory.update(
            agent, roles=[role], capabilities=capabilities, kind="human", availability="ready"
        )
        for mtype, payload in (
            (MessageType.ROLE_ANNOUNCEMENT, {"agent": agent, "role": role}),
            (
                MessageType.CAPABILITY_BROADCAST,
                {"agent": agent, "capabilities": capabilities, "roles": [role]},
            ),
        ):
            env = person.seal(Envelope(type=mtype, sender=agent, sender_role=role, payload=payload))
            await self.bus.publish(env)

    async def admin(self) -> dict[str, Any]:
        lease = await self.leases.get(ADMIN_LEASE_KEY)
        if lease is None:  # never elected (or the key was deleted)
            return {"admin": None, "term": None}
        return {"admin": lease.value.holder, "term": lease.value.term}

    def role_key(self) -> RoleKeyPair:
        """The person's role key (X25519), kept in the data folder; values sealed to the role open with it."""
        path = self.data_dir / f"role-{self.role}.key"
        if path.exists():
            return RoleKeyPair.from_private(path.read_text().strip())
        key = RoleKeyPair.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key.private_text + "\n")
        path.chmod(0o600)
        return key

    async def ucxl(
        self, path: str, params: dict[str, str] | None = None, decrypt: bool = False
    ) -> Any:
        """A DHT answer for the UCXL browser; with ``decrypt``, the record opened with the role key.

        The key never goes to the DHT: HAP fetches the sealed record and opens it here
        (``chorus_common.ucxl_client.open_record``), bound to the address it asked for.
        """
        if not self.dht_url:
            raise UnavailableError(
                "no DHT is configured for the UCXL browser (set CHORUS_HAP_DHT_URL)"
            )
        # DHT reads need the read scope; HAP reads with the token it holds. The role key
        # stays here: the DHT serves the sealed record and HAP opens it itself.
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        try:
            resp = await self._http.get(
                f"{self.dht_url.rstrip('/')}{path}", params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise UnavailableError(f"the DHT at {self.dht_url} does not answer: {exc}") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            if resp.status_code in (403, 404):
                raise NotFoundError(f"the DHT answered {resp.status_code}: {detail}")
            raise UnavailableError(f"the DHT answered {resp.status_code}: {detail}")
        doc = resp.json()
        if decrypt:
            address = unquote(path.removeprefix("/v1/ucxl/"))
            record = {k: v for k, v in doc.items() if k != "sealed"}
            record["value"] = open_record(doc, address, self.role, self.role_key())
            return record
        return doc
