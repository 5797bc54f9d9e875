"""Per-agent feeds: single-writer, hash-chained, Ed25519-signed sequences (the Hypercore idea).

The signature covers the envelope's digest, and ``prev`` is the digest of the
sender's previous envelope; so a receiver can tell a bad signature, a gap (a
missing ``feed_seq`` or a ``prev`` that does not link), a fork (two different
envelopes at one ``feed_seq``) and a replay (the same envelope again) apart.
A redacted envelope's digest is its original's, so redaction never breaks a feed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from chorus_common.envelopes import Envelope
from chorus_common.errors import (
    BadSignatureError,
    FeedForkError,
    FeedGapError,
    FeedReplayError,
    UnknownKeyError,
)
from chorus_common.signing import AgentKey, verify_signature


@dataclass
class FeedState:
    seq: int = 0
    head: str | None = None


class FeedWriter:
    """Seals an agent's outgoing envelopes into its feed."""

    def __init__(self, agent_id: str, key: AgentKey, state: FeedState | None = None) -> None:
        self.agent_id = agent_id
        self.key = key
        self.state = state or FeedState()

    def seal(self, env: Envelope) -> Envelope:
        sealed = env.model_copy(
            update={
                "sender": self.agent_id,
                "feed_seq": self.state.seq + 1,
                "prev": self.state.head,
                "sig": None,
                "redaction": None,
            }
        )
        digest = sealed.digest()
        sealed = sealed.model_copy(update={"sig": self.key.sign(bytes.fromhex(digest))})
        self.state = FeedState(seq=self.state.seq + 1, head=digest)
        return sealed


def signature_valid(env: Envelope, public_key: str, digest: str | None = None) -> bool:
    """``digest`` may be passed when the caller already computed it (it is not cheap)."""
    return env.sig is not None and verify_signature(
        public_key, bytes.fromhex(digest or env.digest()), env.sig
    )


@dataclass
class _SenderState:
    seq: int
    head: str
    digests: OrderedDict[int, str] = field(default_factory=OrderedDict)


class FeedVerifier:
    """Checks each arriving envelope against its sender's key and feed so far."""

    def __init__(self, key_lookup: Callable[[str], str | None], memory: int = 10_000) -> None:
        self.key_lookup = key_lookup
        self.memory = memory
        self.senders: dict[str, _SenderState] = {}

    def trust_from(self, sender: str, seq: int, head: str) -> None:
        """Start verifying a feed mid-way (e.g. after a restart) from a known position."""
        self.senders[sender] = _SenderState(seq=seq, head=head, digests=OrderedDict({seq: head}))

    def check(self, env: Envelope) -> None:
        """Raise the specific FeedError, or accept and advance the sender's feed."""
        key = self.key_lookup(env.sender)
        if key is None:
            raise UnknownKeyError(
                f"no signing key registered for sender {env.sender!r}; "
                f"register one with POST /v1/agents/{env.sender}/keys",
                sender=env.sender,
            )
        if env.feed_seq is None or env.sig is None:
            raise BadSignatureError(
                f"envelope {env.id} from {env.sender!r} is not signed into a feed "
                f"(feed_seq and sig are required)",
                sender=env.sender,
            )
        digest = env.digest()
        if not signature_valid(env, key, digest):
            raise BadSignatureError(
                f"signature of {env.sender!r} at feed_seq {env.feed_seq} does not verify "
                f"with the registered key",
                sender=env.sender,
                feed_seq=env.feed_seq,
            )
        state = self.senders.get(env.sender)
        seq = env.feed_seq
        if state is None:
            if seq != 1 or env.prev is not None:
                raise FeedGapError(
                    f"feed of {env.sender!r} starts at feed_seq {seq}; expected 1",
                    sender=env.sender,
                    expected=1,
                    got=seq,
                )
        else:
            known = state.digests.get(seq)
            if known is not None:
                if known == digest:
                    raise FeedReplayError(
                        f"envelope at feed_seq {seq} of {env.sender!r} was already accepted",
                        sender=env.sender,
                        feed_seq=seq,
                    )
                raise FeedForkError(
                    f"feed of {env.sender!r} forks at feed_seq {seq}: a different envelope "
                    f"was accepted there",
                    sender=env.sender,
                    feed_seq=seq,
                )
            if seq <= state.seq:
                raise FeedReplayError(
                    f"feed_seq {seq} of {env.sender!r} is behind its head {state.seq}",
                    sender=env.sender,
                    feed_seq=seq,
                )
            if seq != state.seq + 1:
                raise FeedGapError(
                    f"gap in feed of {env.sender!r}: expected feed_seq {state.seq + 1}, got {seq}",
                    sender=env.sender,
                    expected=state.seq + 1,
                    got=seq,
                )
            if env.prev != state.head:
                raise FeedForkError(
                    f"feed of {env.sender!r} forks at feed_seq {seq}: prev does not link to "
                    f"the accepted envelope {state.seq}",
                    sender=env.sender,
                    feed_seq=seq,
                )
        if state is None:
            state = _SenderState(seq=0, head="")
            self.senders[env.sender] = state
        state.seq, state.head = seq, digest
        state.digests[seq] = digest
        while len(state.digests) > self.memory:
            state.digests.popitem(last=False)


IssueKind = Literal["bad_signature", "gap", "fork", "replay", "broken_link"]


@dataclass(frozen=True)
class FeedIssue:
    kind: IssueKind
    seq: int | None
    detail: str


@dataclass
class FeedReport:
    ok: bool
    length: int
    head: str | None
    issues: list[FeedIssue]

    def kinds(self) -> list[IssueKind]:
        return [i.kind for i in self.issues]


def verify_feed(envelopes: Iterable[Envelope], public_key: str) -> FeedReport:
    """Walk a whole feed in arrival order and report every problem, not just the first."""
    issues: list[FeedIssue] = []
    by_seq: dict[int, str] = {}
    expected = 1
    head: str | None = None
    length = 0
    for env in envelopes:
        length += 1
        seq = env.feed_seq
        digest = env.digest()
        if seq is None or not signature_valid(env, public_key, digest):
            issues.append(FeedIssue("bad_signature", seq, f"envelope {env.id} does not verify"))
            continue
        if seq in by_seq:
            kind: IssueKind = "replay" if by_seq[seq] == digest else "fork"
            issues.append(FeedIssue(kind, seq, f"second envelope at feed_seq {seq} ({env.id})"))
            continue
        if seq > expected:
            issues.append(
                FeedIssue("gap", seq, f"feed_seq {expected}..{seq - 1} missing before {env.id}")
            )
        elif seq < expected:
            issues.append(FeedIssue("replay", seq, f"feed_seq {seq} arrived after {expected - 1}"))
            continue
        if seq == expected and env.prev != head:
            issues.append(
                FeedIssue("broken_link", seq, f"prev of feed_seq {seq} does not link to {seq - 1}")
            )
        by_seq[seq] = digest
        head = digest
        expected = seq + 1
    return FeedReport(ok=not issues, length=length, head=head, issues=issues)
