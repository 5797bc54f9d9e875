"""Per-agent feeds: single-writer, hash-chained, Ed25519-signed sequences (the Hypercore idea).

Each envelope an agent sends carries ``feed_seq`` (1, 2, 3, …), ``prev`` (the
digest of the agent's previous envelope) and ``sig`` (the agent's signature
over the envelope's own digest). A receiver holding the agent's registered
key can therefore tell apart:

* a **bad signature** - the envelope was changed, or signed by another key;
* a **gap** - a ``feed_seq`` was skipped, or ``prev`` does not link to the
  entry accepted before it;
* a **fork** - two different envelopes claim the same ``feed_seq``;
* a **replay** - the very same envelope arrives again.

SHHH redaction rewrites payloads *after* signing, so a redacted envelope's
digest is its original's (``Envelope.redaction.original_digest``) and its
signature still verifies. That also means a redacted envelope's content is not
covered by the signature: only a trusted redactor (the gateway) may produce
one, so :class:`FeedVerifier` - which guards ingress - refuses them unless
told otherwise, while :func:`verify_feed` - which audits stored feeds - accepts
them.
"""

from __future__ import annotations

import re
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

__all__ = [
    "FeedIssue",
    "FeedReport",
    "FeedState",
    "FeedVerifier",
    "FeedWriter",
    "IssueKind",
    "signature_valid",
    "verify_feed",
]

_DIGEST = re.compile(r"[0-9a-f]{64}")
_AGENT = re.compile(r"[A-Za-z0-9_\-]{1,64}")

#: digests remembered per sender for fork and replay detection
DEFAULT_MEMORY = 10_000


@dataclass(frozen=True)
class FeedState:
    """Where a feed stands: the last ``feed_seq`` and its digest (``None`` before the first)."""

    seq: int = 0
    head: str | None = None

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise ValueError(f"feed seq must be >= 0, got {self.seq}")
        if (self.seq == 0) != (self.head is None):
            raise ValueError("a feed has a head digest exactly when seq > 0")
        if self.head is not None and not _DIGEST.fullmatch(self.head):
            raise ValueError(f"feed head must be 64 lowercase hex digits, got {self.head!r}")


class FeedWriter:
    """Seals an agent's outgoing envelopes into its feed.

    ``FeedWriter(agent, key)`` starts a new feed; ``FeedWriter(agent, key, seq, head)``
    or ``FeedWriter(agent, key, FeedState(...))`` continues one whose position was
    persisted (see :attr:`state`). The writer is the feed's single writer: two
    writers continuing from one state produce a fork.
    """

    def __init__(
        self,
        agent_id: str,
        key: AgentKey,
        seq: int | FeedState = 0,
        head: str | None = None,
        *,
        state: FeedState | None = None,
    ) -> None:
        if not _AGENT.fullmatch(agent_id):
            raise ValueError(f"agent id {agent_id!r} must match [A-Za-z0-9_-]{{1,64}}")
        self.agent_id = agent_id
        self.key = key
        if state is None:
            state = seq if isinstance(seq, FeedState) else FeedState(seq=seq, head=head)
        self._state = state

    @property
    def state(self) -> FeedState:
        """The position to persist after each :meth:`seal` (and to restore with the setter)."""
        return self._state

    @state.setter
    def state(self, value: FeedState) -> None:
        self._state = value

    def seal(self, env: Envelope) -> Envelope:
        """A copy of ``env`` signed as the next entry of this feed; advances the feed.

        Any previous ``sig`` or ``redaction`` is dropped: the seal covers exactly
        what is being sent.
        """
        seq = self._state.seq + 1
        sealed = env.model_copy(
            update={
                "sender": self.agent_id,
                "feed_seq": seq,
                "prev": self._state.head,
                "sig": None,
                "redaction": None,
            }
        )
        digest = sealed.digest()
        sealed = sealed.model_copy(update={"sig": self.key.sign(bytes.fromhex(digest))})
        self._state = FeedState(seq=seq, head=digest)
        return sealed


def signature_valid(env: Envelope, public_key: str, digest: str | None = None) -> bool:
    """Whether ``env.sig`` is ``public_key``'s signature over the envelope's digest.

    ``digest`` may be passed when the caller already computed it (it is not
    cheap). Never raises: a malformed digest, key or signature is ``False``.
    """
    if env.sig is None:
        return False
    digest = digest if digest is not None else env.digest()
    if not _DIGEST.fullmatch(digest):
        return False  # e.g. a hand-made redaction record with a bogus original digest
    return verify_signature(public_key, bytes.fromhex(digest), env.sig)


@dataclass
class _SenderState:
    seq: int
    head: str
    #: feed_seq -> digest of the entry accepted there, oldest first, bounded
    digests: OrderedDict[int, str] = field(default_factory=OrderedDict)


class FeedVerifier:
    """Checks each arriving envelope against its sender's key and feed so far.

    ``key_lookup(sender)`` returns the registered public key or ``None``.
    State advances only for an envelope that passed every check, so a refused
    envelope never poisons the feed. ``memory`` bounds the digests kept per
    sender for fork and replay detection.

    ``accept_redacted`` is off by default because this class guards ingress:
    a redacted envelope's payload is not covered by its signature, so only
    envelopes coming from a trusted redactor (e.g. read back from the stream)
    should be accepted with it on.
    """

    def __init__(
        self,
        key_lookup: Callable[[str], str | None],
        memory: int = DEFAULT_MEMORY,
        *,
        accept_redacted: bool = False,
    ) -> None:
        if memory < 1:
            raise ValueError("memory must be at least 1")
        self.key_lookup = key_lookup
        self.memory = memory
        self.accept_redacted = accept_redacted
        self.senders: dict[str, _SenderState] = {}

    def trust_from(self, sender: str, seq: int, head: str) -> None:
        """Start verifying a feed mid-way (e.g. after a restart) from a known position.

        The next envelope accepted from ``sender`` must be ``seq + 1`` with ``prev == head``.
        """
        position = FeedState(seq=seq, head=head)  # validates
        assert position.head is not None
        self.senders[sender] = _SenderState(
            seq=position.seq, head=position.head, digests=OrderedDict({seq: position.head})
        )

    def is_resend(self, env: Envelope) -> bool:
        """The very envelope already accepted at its feed_seq: a client re-sending a publish whose
        answer it never got. Answering it again is safe; treating it as an attack is not."""
        known = self.senders.get(env.sender)
        return (
            known is not None
            and env.feed_seq is not None
            and known.digests.get(env.feed_seq) == env.digest()
        )

    def state(self, sender: str) -> FeedState | None:
        """The last accepted position of ``sender``'s feed, ``None`` if nothing was accepted."""
        known = self.senders.get(sender)
        return None if known is None else FeedState(seq=known.seq, head=known.head)

    def forget(self, sender: str) -> None:
        self.senders.pop(sender, None)

    def check(self, env: Envelope, *, signed_digest: str | None = None) -> None:
        """Raise the specific :class:`FeedError`, or accept ``env`` and advance its sender's feed.

        ``signed_digest`` is ``env``'s digest when the caller has already verified
        ``env.sig`` over it with the key ``key_lookup`` returns (the gateway verifies a
        batch's signatures on worker threads); the signature is then not checked again.
        """
        sender = env.sender
        key = self.key_lookup(sender)
        if key is None:
            raise UnknownKeyError(
                f"no signing key registered for sender {sender!r}; "
                f"register one with POST /v1/agents/{sender}/keys",
                sender=sender,
            )
        seq = env.feed_seq
        if seq is None or env.sig is None:
            raise BadSignatureError(
                f"envelope {env.id} from {sender!r} is not signed into a feed "
                f"(feed_seq and sig are required)",
                sender=sender,
            )
        if env.redaction is not None and not self.accept_redacted:
            raise BadSignatureError(
                f"envelope {env.id} from {sender!r} at feed_seq {seq} carries a redaction "
                f"record; its payload is not covered by the signature, so only a trusted "
                f"redactor may add one - send the original envelope",
                sender=sender,
                feed_seq=seq,
            )
        digest = signed_digest if signed_digest is not None else env.digest()
        if signed_digest is None and not signature_valid(env, key, digest):
            raise BadSignatureError(
                f"signature of {sender!r} at feed_seq {seq} does not verify "
                f"with the registered key",
                sender=sender,
                feed_seq=seq,
            )
        state = self.senders.get(sender)
        if state is None:
            if seq != 1:
                raise FeedGapError(
                    f"feed of {sender!r} starts at feed_seq {seq}; expected 1 "
                    f"(or a verifier told to trust the feed from a later position)",
                    sender=sender,
                    expected=1,
                    got=seq,
                )
            if env.prev is not None:
                raise FeedGapError(
                    f"feed of {sender!r}: feed_seq 1 must not have a prev, "
                    f"but it links to {env.prev[:12]}…",
                    sender=sender,
                    expected=1,
                    got=seq,
                    reason="broken_link",
                )
        else:
            known = state.digests.get(seq)
            if known is not None:
                if known == digest:
                    raise FeedReplayError(
                        f"envelope at feed_seq {seq} of {sender!r} was already accepted",
                        sender=sender,
                        feed_seq=seq,
                    )
                raise FeedForkError(
                    f"feed of {sender!r} forks at feed_seq {seq}: a different envelope "
                    f"was accepted there",
                    sender=sender,
                    feed_seq=seq,
                )
            if seq <= state.seq:
                raise FeedReplayError(
                    f"feed_seq {seq} of {sender!r} is behind its head {state.seq} and older "
                    f"than the {self.memory} entries remembered",
                    sender=sender,
                    feed_seq=seq,
                )
            if seq != state.seq + 1:
                raise FeedGapError(
                    f"gap in feed of {sender!r}: expected feed_seq {state.seq + 1}, got {seq}",
                    sender=sender,
                    expected=state.seq + 1,
                    got=seq,
                )
            if env.prev != state.head:
                raise FeedGapError(
                    f"feed of {sender!r} does not link at feed_seq {seq}: prev is "
                    f"{(env.prev or 'none')[:12]}…, but the entry accepted at {state.seq} is "
                    f"{state.head[:12]}… (an entry is missing or was rewritten)",
                    sender=sender,
                    expected=state.seq + 1,
                    got=seq,
                    reason="broken_link",
                )
        # every check passed: only now does the sender's feed advance
        if state is None:
            state = _SenderState(seq=seq, head=digest)
            self.senders[sender] = state
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
    """The result of :func:`verify_feed`: ``ok`` only when ``issues`` is empty."""

    ok: bool
    length: int
    head: str | None
    issues: list[FeedIssue]

    def kinds(self) -> list[IssueKind]:
        return [i.kind for i in self.issues]


def verify_feed(
    envelopes: Iterable[Envelope], public_key: str, *, accept_redacted: bool = True
) -> FeedReport:
    """Walk a whole feed and report every problem, not just the first.

    Envelopes are taken in ``feed_seq`` order (stable, so arrival order only
    decides which of two envelopes at one seq counts as the original). An
    envelope that does not verify is reported and skipped, so what follows it
    is judged against the last entry that did. ``head`` is the digest of that
    last good entry. Redacted envelopes are accepted by default because stored
    feeds were redacted by the gateway itself.
    """
    issues: list[FeedIssue] = []
    by_seq: dict[int, str] = {}
    expected = 1
    head: str | None = None
    ordered = sorted(envelopes, key=lambda e: e.feed_seq or 0)
    for env in ordered:
        seq = env.feed_seq
        if seq is None or env.sig is None:
            issues.append(FeedIssue("bad_signature", seq, f"envelope {env.id} is not signed"))
            continue
        if env.redaction is not None and not accept_redacted:
            issues.append(
                FeedIssue("bad_signature", seq, f"envelope {env.id} is redacted after signing")
            )
            continue
        digest = env.digest()
        if not signature_valid(env, public_key, digest):
            issues.append(FeedIssue("bad_signature", seq, f"signature of {env.id} does not verify"))
            continue
        known = by_seq.get(seq)
        if known is not None:
            if known == digest:
                issues.append(FeedIssue("replay", seq, f"feed_seq {seq} again ({env.id})"))
            else:
                issues.append(
                    FeedIssue(
                        "fork", seq, f"second, different envelope at feed_seq {seq} ({env.id})"
                    )
                )
            continue
        # sorted, and every accepted seq is in by_seq: here seq >= expected
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            issues.append(FeedIssue("gap", seq, f"feed_seq {missing} missing before {env.id}"))
        elif env.prev != head:
            issues.append(
                FeedIssue(
                    "broken_link",
                    seq,
                    f"prev of feed_seq {seq} does not link to "
                    + (
                        "nothing (it is the first entry)" if head is None else f"feed_seq {seq - 1}"
                    ),
                )
            )
        by_seq[seq] = digest
        head = digest
        expected = seq + 1
    return FeedReport(ok=not issues, length=len(ordered), head=head, issues=issues)
