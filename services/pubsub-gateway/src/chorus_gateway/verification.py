"""Auditing an agent's stored feed in bounded pages, extending a cached verified prefix.

Envelopes are stored under subjects that do not name their sender, so finding
one agent's entries means reading the stream. Walking all of it on every
``GET /v1/feeds/{agent}/verify`` took 6 s per call at 10,000 stored messages.
Instead :class:`FeedAudit` (pure) judges one stored entry at a time with the
rules of :func:`chorus_common.feeds.verify_feed`, and :class:`FeedAuditor`
keeps each agent's audit between calls: a call reads only the stream messages
stored since the audit's cursor, at most ``CHORUS_GATEWAY_VERIFY_SCAN_MAX`` of
them, and says where to continue when it stopped early. A repeated call with
nothing new costs one stream-info request.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from chorus_common.bus import EVENTS_STREAM, Bus
from chorus_common.envelopes import Envelope
from chorus_common.errors import EnvelopeError, RequestInvalidError
from chorus_common.feeds import FeedIssue, signature_valid
from chorus_common.registry import AgentDirectory

#: digests an audit remembers for fork and replay detection (per cached agent)
AUDIT_MEMORY = 1024
#: issues an audit keeps to report; ``issue_count`` counts all of them
KEPT_ISSUES = 1000
#: agents whose audit the gateway keeps between calls
CACHED_AGENTS = 1024
_CURSOR = re.compile(r"^(\d{1,20})\.(\d{1,20})\.(\d{1,20})\.([0-9a-f]{64}|-)\.(\d{1,20})$")


@dataclass
class FeedAudit:
    """``verify_feed`` one stored entry at a time, in stream order, resumable from a cursor.

    ``cursor`` is the last stream sequence looked at; everything up to it has
    been judged. :meth:`token` writes the position (cursor, entries, next
    expected ``feed_seq``, head, issues so far) as the opaque ``next`` a client
    passes back as ``after``; :meth:`resume` continues from one, without the
    digests of older entries (so a fork of one of those is reported as a replay).
    """

    public_key: str
    cursor: int = 0
    length: int = 0
    expected: int = 1
    head: str | None = None
    issue_count: int = 0
    issues: list[FeedIssue] = field(default_factory=list)
    digests: OrderedDict[int, str] = field(default_factory=OrderedDict)

    @property
    def ok(self) -> bool:
        return self.issue_count == 0

    def token(self) -> str:
        return f"{self.cursor}.{self.length}.{self.expected}.{self.head or '-'}.{self.issue_count}"

    @classmethod
    def resume(cls, public_key: str, token: str) -> FeedAudit:
        match = _CURSOR.match(token)
        if match is None:
            raise RequestInvalidError(
                f"after={token!r} is not a cursor this route returned; pass the 'next' of a "
                f"previous answer, or leave it out to start at the beginning"
            )
        cursor, length, expected, head, issues = match.groups()
        if (int(expected) == 1) != (head == "-"):
            raise RequestInvalidError(f"after={token!r}: head and feed position disagree")
        return cls(
            public_key,
            cursor=int(cursor),
            length=int(length),
            expected=int(expected),
            head=None if head == "-" else head,
            issue_count=int(issues),
        )

    def _issue(self, issue: FeedIssue) -> None:
        self.issue_count += 1
        if len(self.issues) < KEPT_ISSUES:
            self.issues.append(issue)

    def add(self, env: Envelope) -> None:
        """Judge the next stored entry of the feed (stored redactions are the gateway's own)."""
        self.length += 1
        seq = env.feed_seq
        if seq is None or env.sig is None:
            self._issue(FeedIssue("bad_signature", seq, f"envelope {env.id} is not signed"))
            return
        digest = env.digest()
        if not signature_valid(env, self.public_key, digest):
            self._issue(FeedIssue("bad_signature", seq, f"signature of {env.id} does not verify"))
            return
        known = self.digests.get(seq)
        if known is not None:
            if known == digest:
                self._issue(FeedIssue("replay", seq, f"feed_seq {seq} again ({env.id})"))
            else:
                self._issue(
                    FeedIssue(
                        "fork", seq, f"second, different envelope at feed_seq {seq} ({env.id})"
                    )
                )
            return
        if seq < self.expected:
            self._issue(
                FeedIssue(
                    "replay",
                    seq,
                    f"feed_seq {seq} stored after feed_seq {self.expected - 1} ({env.id})",
                )
            )
            return
        if seq > self.expected:
            missing = (
                f"{self.expected}" if seq == self.expected + 1 else f"{self.expected}..{seq - 1}"
            )
            self._issue(FeedIssue("gap", seq, f"feed_seq {missing} missing before {env.id}"))
        elif env.prev != self.head:
            link = "nothing (it is the first entry)" if self.head is None else f"feed_seq {seq - 1}"
            self._issue(
                FeedIssue("broken_link", seq, f"prev of feed_seq {seq} does not link to {link}")
            )
        self.digests[seq] = digest
        while len(self.digests) > AUDIT_MEMORY:
            self.digests.popitem(last=False)
        self.head = digest
        self.expected = seq + 1


class FeedAuditor:
    """The gateway's audits of stored feeds: one cached :class:`FeedAudit` per agent."""

    def __init__(self, bus: Bus, directory: AgentDirectory, scan_max: int) -> None:
        self.bus = bus
        self.directory = directory
        self.scan_max = scan_max
        self._audits: OrderedDict[str, FeedAudit] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def verify(self, agent: str, after: str | None, limit: int) -> dict[str, Any]:
        """Extend the agent's audit by at most ``limit`` entries (and ``scan_max`` stream messages)."""
        key = await self.directory.require_public_key(agent)
        lock = self._locks.setdefault(agent, asyncio.Lock())
        async with lock:
            cached = self._audits.get(agent)
            if cached is not None and cached.public_key != key:
                cached = None  # the key was replaced: what it verified says nothing now
            if after is None:
                audit = cached if cached is not None else FeedAudit(key)
            elif cached is not None and cached.token() == after:
                audit = cached
            else:
                # another replica's page, or one this gateway no longer remembers
                audit = FeedAudit.resume(key, after)
            scanned, complete = await self._extend(audit, agent, limit)
            if after is None or audit is cached:
                self._audits[agent] = audit
                self._audits.move_to_end(agent)
                while len(self._audits) > CACHED_AGENTS:
                    evicted, _ = self._audits.popitem(last=False)
                    self._locks.pop(evicted, None)
        return {
            "agent": agent,
            "ok": audit.ok,
            "length": audit.length,
            "head": audit.head,
            "issue_count": audit.issue_count,
            "issues": [
                {"kind": i.kind, "feed_seq": i.seq, "detail": i.detail} for i in audit.issues
            ],
            "scanned": scanned,
            "complete": complete,
            "next": audit.token(),
        }

    async def _extend(self, audit: FeedAudit, agent: str, limit: int) -> tuple[int, bool]:
        """Read stream messages after the audit's cursor; (messages read, reached the end)."""
        last = await self.bus.stream_last_seq(EVENTS_STREAM)
        if last <= audit.cursor:
            return 0, True
        end = min(last, audit.cursor + self.scan_max)
        needle = agent.encode()
        scanned = entries = 0
        sub = await self.bus.replay("chorus.>", stream=EVENTS_STREAM, start_seq=audit.cursor + 1)
        try:
            while audit.cursor < end and entries < limit:
                msg = await sub.next_msg(timeout=5)
                seq = msg.metadata.sequence.stream
                audit.cursor = seq
                scanned += 1
                # role and project copies are counted at the primary subject; the agent id
                # must appear in the bytes before the envelope is worth decoding
                if ":" in (msg.headers or {}).get("Nats-Msg-Id", "") or needle not in msg.data:
                    continue
                try:
                    env = Envelope.decode(msg.data)
                except EnvelopeError:
                    continue
                if env.sender == agent:
                    audit.add(env)
                    entries += 1
        finally:
            await sub.unsubscribe()
        return scanned, audit.cursor >= last
