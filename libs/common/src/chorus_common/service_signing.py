"""Signed service messages: what a service says on the bus can be told from what anyone says.

Any NATS client allowed to publish envelopes (the ``agent`` user, or anyone on a
bus without users) could otherwise send an ``escalation_trigger``, a
``work_allocation`` or a beat frame in a service's name. Services therefore sign
with the agents' own machinery (:class:`~chorus_common.signing.AgentKey`,
:class:`~chorus_common.feeds.FeedWriter`, :func:`~chorus_common.feeds.signature_valid`),
and consumers believe a service message only when it verifies. The decisions:

* **One identity per replica.** A feed has a single writer and replicas publish
  at once (the chart runs 2 coordinators, 2 backbeat, 3 election), so each
  replica is its own sender: ``svc-<service>-<node id>`` (:func:`service_sender`;
  ``.`` in a node id becomes ``_``, an id too long for the 64-character envelope
  ``sender`` is cut and given a hash suffix). A consumer that needs "a
  coordinator" accepts any registered coordinator replica.
* **The key lives in the data dir.** ``<data dir>/service-keys/<sender>.key``
  (mode 0600, made once) with the feed position beside it in ``<sender>.feed.json``,
  written before each envelope leaves. The two go together: if either is missing
  (a pod restarted with an empty data dir) the replica makes a new key and starts a
  new feed, and replaces its registry entry itself at start.
* **Services are registered apart from agents.** The registry document is
  ``service.<service>.<sender>`` in ``chorus-registry`` (``kind: service``,
  ``service``, ``sender``, ``node_id``, ``public_key``). NATS permissions
  (:mod:`chorus_common.nats_auth`) let each service user write only
  ``service.<its name>.>``, while the gateway, HAP and agents write ``agent.>``:
  so an agent cannot register itself as a service, nor one service as another.
  What makes a sender a coordinator is *where* its key is stored, not what the
  document says (both must agree).
* **Reserved names.** A sender that starts with ``svc-`` or is a service's bare
  name (``coordinator``, the unsigned sender of old) claims to be a service; a
  claim that does not verify is a forgery. Envelope types only a service sends
  (:data:`SERVICE_TYPES`: task announcements and allocations) are forged from any
  other sender.
* **Envelopes** are sealed into the replica's feed (``feed_seq``, ``prev``,
  ``sig``); a service envelope with a redaction record is refused (its content
  would not be covered by the signature, and services' envelopes are never
  redacted).
* **Other messages** (beat frames, bar reports, election events) keep their bodies
  and carry a detached signature in headers: ``Chorus-Sender``, ``Chorus-Seq`` and
  ``Chorus-Sig``, an Ed25519 signature over ``chorus-signed-v1``, the subject, the
  seq and the exact body bytes (:func:`detached_bytes`), so a signed heartbeat
  cannot be replayed as a winner. The seq is the signer's clock in microseconds,
  forced to increase, so nothing has to be persisted for it.
* **Replays.** A consumer remembers, per sender and key, the sequence numbers it
  took within a window (10,000 feed entries; 10 s of detached seqs): the same one
  again is a duplicate and ignored (a JetStream copy, or a replay), one older than
  the window is a replay and counted.
* **Cost.** Keys are cached for 5 s (like :class:`~chorus_common.registry.AgentDirectory`);
  a signature that fails against a cached key re-reads the registry once (at most
  every 0.5 s per sender) so a replica's new key is believed at once; registry reads
  for unknown senders are rate-limited so a flood of made-up senders cannot turn
  into a flood of KV reads. An Ed25519 verify is ~50 µs: election heartbeats every
  0.3 s per replica are nothing to it.

Every refusal is counted once in ``chorus_bus_forged_total{kind, reason}``
(:class:`~chorus_common.metrics.BusMetrics`) and in :attr:`ServiceVerifier.forged`.
Without NATS users (``chorus up``'s embedded server, tests) anyone may write the
registry, so there signatures prove only that a message comes from whoever
registered the sender.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import nats.errors
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from prometheus_client import Counter

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.errors import ConfigError, UnavailableError
from chorus_common.feeds import FeedState, FeedWriter, signature_valid
from chorus_common.signing import AgentKey, b64decode, verify_signature
from chorus_common.topology import BUCKET_REGISTRY

log = logging.getLogger("chorus.service_signing")

#: registry documents of service replicas: ``service.<service>.<sender>``
SERVICE_KEY_PREFIX = "service"
#: the service roles of the protocol (the keys of ``chorus_cli.nats_users.SERVICE_USERS``; a test keeps
#: them equal); longest first, so ``svc-pubsub-gateway-…`` is never read as another
SERVICE_NAMES: tuple[str, ...] = tuple(
    sorted(
        ("licensing", "election", "pubsub-gateway", "dht", "coordinator", "backbeat", "hap"),
        key=len,
        reverse=True,
    )
)
SENDER_PREFIX = "svc-"
#: envelope types only a service sends, and which one
SERVICE_TYPES: dict[MessageType, str] = {
    MessageType.TASK_ANNOUNCEMENT: "coordinator",
    MessageType.WORK_ALLOCATION: "coordinator",
}
HEADER_SENDER = "Chorus-Sender"
HEADER_SEQ = "Chorus-Seq"
HEADER_SIG = "Chorus-Sig"
_DETACHED_CONTEXT = b"chorus-signed-v1\n"
#: feed entries remembered per sender for duplicate and replay detection
#: how long a replica keeps trying to register its key before its set-up fails
REGISTER_TIMEOUT = 120.0
FEED_WINDOW = 10_000
#: detached seqs are microseconds: remembered for 10 s of the signer's clock
DETACHED_WINDOW = 10_000_000
#: a cached key that failed a signature is re-read at most this often per sender
REFRESH_SECONDS = 0.5
#: registry reads per second for senders not in the cache (a flood of made-up senders)
LOOKUPS_PER_SECOND = 50.0
_MAX_SENDER = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


class ForgedKind(StrEnum):
    """What was forged (the ``kind`` label of ``chorus_bus_forged_total``)."""

    ENVELOPE = "envelope"
    BEAT = "beat"
    ELECTION = "election"


class ForgedReason(StrEnum):
    """Why it was refused (the ``reason`` label)."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_SENDER = "unknown_sender"
    NOT_SERVICE = "not_service"
    REPLAY = "replay"


def service_sender(service: str, node_id: str) -> str:
    """The envelope ``sender`` of one replica: ``svc-<service>-<node id>``, a valid Token."""
    if service not in SERVICE_NAMES:
        raise ValueError(f"unknown service {service!r}; one of {sorted(SERVICE_NAMES)}")
    sender = f"{SENDER_PREFIX}{service}-{_UNSAFE.sub('_', node_id)}"
    if len(sender) > _MAX_SENDER:
        suffix = hashlib.sha256(node_id.encode()).hexdigest()[:8]
        sender = f"{sender[: _MAX_SENDER - 9]}-{suffix}"
    return sender


def claimed_service(sender: str) -> str | None:
    """The service ``sender`` claims to be (``svc-<service>-…`` or a bare service name).

    ``svc-`` with no known service after it still claims to be *a* service: the
    answer is then ``""``, which no registered service matches.
    """
    if sender in SERVICE_NAMES:
        return sender
    if not sender.startswith(SENDER_PREFIX):
        return None
    rest = sender[len(SENDER_PREFIX) :]
    for name in SERVICE_NAMES:
        if rest.startswith(f"{name}-") and len(rest) > len(name) + 1:
            return name
    return ""


def registry_key(service: str, sender: str) -> str:
    """The ``chorus-registry`` key of a replica's document (only ``service``'s NATS user writes it)."""
    return f"{SERVICE_KEY_PREFIX}.{service}.{sender}"


def detached_bytes(subject: str, seq: int, body: bytes) -> bytes:
    """What a detached signature covers: a context, the subject, the seq and the body."""
    return b"%s%s\n%d\n%s" % (_DETACHED_CONTEXT, subject.encode(), seq, body)


@dataclass(frozen=True)
class ServiceIdentity:
    """A registered service replica: who it is and the key it signs with."""

    service: str
    node_id: str
    sender: str
    public_key: str

    def document(self) -> dict[str, Any]:
        return {
            "kind": "service",
            "service": self.service,
            "node_id": self.node_id,
            "sender": self.sender,
            "public_key": self.public_key,
            "updated_at": time.time(),
        }


class ServiceSigner:
    """One replica's signing key and feed: seals its envelopes, signs its other messages.

    Built by :meth:`open`, which loads or makes the key and registers it. It is the
    feed's single writer; :meth:`seal` persists the feed position before the envelope
    leaves, so a restart with the same data dir continues the feed.
    """

    def __init__(
        self, identity: ServiceIdentity, key: AgentKey, state: FeedState, state_file: Path | None
    ) -> None:
        self.identity = identity
        self.key = key
        self.writer = FeedWriter(identity.sender, key, state)
        self.state_file = state_file
        self._seq = 0

    @property
    def sender(self) -> str:
        return self.identity.sender

    @classmethod
    def load(cls, service: str, node_id: str, data_dir: Path | None) -> ServiceSigner:
        """The replica's key and feed from ``data_dir`` (made there the first time).

        ``data_dir=None`` keeps both in memory only: a new key per start.
        """
        sender = service_sender(service, node_id)
        state = FeedState()
        state_file: Path | None = None
        key: AgentKey | None = None
        if data_dir is not None:
            folder = Path(data_dir) / "service-keys"
            key_file, state_file = folder / f"{sender}.key", folder / f"{sender}.feed.json"
            if key_file.exists() and state_file.exists():
                try:
                    key = AgentKey.load(key_file)
                    doc = json.loads(state_file.read_text())
                    state = FeedState(seq=int(doc["seq"]), head=doc["head"])
                except (ConfigError, ValueError, KeyError, TypeError):
                    log.warning("service key or feed of %s unreadable; making a new key", sender)
                    key, state = None, FeedState()
            if key is None:  # a new key starts a new feed
                key = AgentKey.generate()
                key.save(key_file)
                _write_state(state_file, state)
        if key is None:
            key = AgentKey.generate()
        return cls(
            ServiceIdentity(service, node_id, sender, key.public_key), key, state, state_file
        )

    @classmethod
    async def open(
        cls, bus: Any, service: str, node_id: str, data_dir: Path | None
    ) -> ServiceSigner:
        """:meth:`load`, then put this replica's document in the registry (replacing an old
        key); ``bus`` is a connected :class:`~chorus_common.bus.Bus` (or the registry KV)."""
        kv = await bus.jetstream.key_value(BUCKET_REGISTRY) if hasattr(bus, "jetstream") else bus
        signer = cls.load(service, node_id, data_dir)
        await signer.register(kv)
        return signer

    async def register(self, kv: KeyValue, timeout: float = REGISTER_TIMEOUT) -> None:
        """Put this replica's document, waiting out a JetStream that is briefly away.

        A replica starts (or restarts) while a NATS node of a cluster is down or its KV
        stream is electing a leader: the put then fails with no responders for a moment.
        Failing set-up over it would leave the service not ready for good.
        """
        ident = self.identity
        body = json.dumps(ident.document()).encode()
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                await kv.put(registry_key(ident.service, ident.sender), body)
                return
            except (TimeoutError, nats.errors.Error) as exc:
                if time.monotonic() + delay > deadline:
                    raise UnavailableError(
                        f"could not register the signing key of {ident.sender}: {exc!r}"
                    ) from None
                log.warning("registry not writable yet (%r); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def seal(self, env: Envelope) -> Envelope:
        """``env`` signed as the next entry of this replica's feed (sender set to the replica)."""
        sealed = self.writer.seal(env)
        if self.state_file is not None:
            _write_state(self.state_file, self.writer.state)
        return sealed

    def sign_headers(self, subject: str, body: bytes) -> dict[str, str]:
        """Detached signature headers for publishing ``body`` on ``subject``."""
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        signature = self.key.sign(detached_bytes(subject, self._seq, body))
        return {HEADER_SENDER: self.sender, HEADER_SEQ: str(self._seq), HEADER_SIG: signature}


def _write_state(path: Path, state: FeedState) -> None:
    """Replace the feed position file in one rename (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"seq": state.seq, "head": state.head}))
    tmp.replace(path)


class ReplayWindow:
    """Per sender and key: the sequence numbers taken recently (pure, no I/O).

    :meth:`take` answers ``"new"`` (remember it), ``"duplicate"`` (seen within the
    window) or ``"replay"`` (older than the window: it cannot be told from one seen).
    """

    def __init__(self, window: int, memory: int = 4096) -> None:
        self.window = window
        self.memory = memory
        self._seen: dict[tuple[str, str], tuple[int, set[int]]] = {}

    def take(self, sender: str, key: str, seq: int) -> str:
        high, seen = self._seen.get((sender, key), (seq, set()))
        if seq in seen:
            return "duplicate"
        if seq <= high - self.window:
            return "replay"
        high = max(high, seq)
        seen.add(seq)
        if len(seen) > self.memory:
            floor = high - self.window
            seen = {s for s in seen if s > floor}
            if len(seen) > self.memory:  # more than memory within the window: keep the newest
                seen = set(sorted(seen)[-self.memory // 2 :])
        self._seen[(sender, key)] = (high, seen)
        return "new"


@dataclass(frozen=True)
class Verdict:
    """What a consumer may do with an envelope.

    ``ok`` and ``identity``: a verified service replica sent it. ``ok`` without
    ``identity``: no service claim (an agent's envelope, not this module's to judge).
    Not ``ok``: do not act on it; ``reason`` is set for a forgery (counted) and
    ``None`` for a duplicate of one already taken.
    """

    ok: bool
    identity: ServiceIdentity | None = None
    reason: ForgedReason | None = None


class ServiceVerifier:
    """Checks service messages against the registry; counts and refuses forgeries."""

    def __init__(
        self,
        kv: KeyValue,
        counter: Counter | None = None,
        *,
        cache_seconds: float = 5.0,
    ) -> None:
        self.kv = kv
        self.counter = counter
        self.cache_seconds = cache_seconds
        #: refusals by (kind, reason), also when no metrics registry is attached
        self.forged: Tally[tuple[str, str]] = Tally()
        self._cache: dict[str, tuple[float, ServiceIdentity | None]] = {}
        self._feeds = ReplayWindow(FEED_WINDOW)
        self._detached = ReplayWindow(DETACHED_WINDOW)
        self._budget = LOOKUPS_PER_SECOND
        self._budget_at = time.monotonic()
        self._reading: dict[str, asyncio.Task[ServiceIdentity | None]] = {}

    @classmethod
    async def open(
        cls, bus: Any, cache_seconds: float = 5.0, *, counted: bool = True
    ) -> ServiceVerifier:
        """For a connected :class:`~chorus_common.bus.Bus`; counts forgeries into its
        metrics if it has them, unless ``counted`` is false (a second verifier of the
        same messages in one process, so a forgery is counted once)."""
        metrics = getattr(bus, "metrics", None) if counted else None
        kv = await bus.jetstream.key_value(BUCKET_REGISTRY)
        return cls(kv, metrics.forged if metrics is not None else None, cache_seconds=cache_seconds)

    # -- the registry -------------------------------------------------------------------

    async def identity(self, service: str, sender: str) -> ServiceIdentity | None:
        """The registered replica ``sender`` of ``service`` (cached), ``None`` if there is none.

        A cached answer past its time is still given, and read again in the background:
        an election heartbeat must never wait for a registry read of a sender it knows.
        """
        cached = self._cache.get(sender)
        if cached is None:
            return await self._read(service, sender)
        if time.monotonic() - cached[0] >= self.cache_seconds and sender not in self._reading:
            task = asyncio.get_running_loop().create_task(self._read(service, sender))
            self._reading[sender] = task
            task.add_done_callback(lambda _t: self._reading.pop(sender, None))
        found = cached[1]
        return found if found is not None and found.service == service else None

    async def _refresh(self, service: str, sender: str) -> ServiceIdentity | None:
        """Read again when the cached answer is older than :data:`REFRESH_SECONDS`."""
        cached = self._cache.get(sender)
        if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
            return None
        return await self._read(service, sender)

    async def _read(self, service: str, sender: str) -> ServiceIdentity | None:
        if sender not in self._cache and not self._spend():
            return None  # too many unknown senders this second: refuse without a read
        found: ServiceIdentity | None = None
        try:
            entry = await self.kv.get(registry_key(service, sender))
            found = _identity(service, sender, entry.value)
        except KeyNotFoundError:
            pass
        except Exception as exc:  # the bus is away: keep what we knew rather than forget it
            log.debug("registry read of %s failed: %s", sender, exc)
            cached = self._cache.get(sender)
            return cached[1] if cached is not None else None
        self._cache[sender] = (time.monotonic(), found)
        if len(self._cache) > 10_000:  # made-up senders must not grow it without bound
            self._cache.pop(next(iter(self._cache)))
        return found

    def _spend(self) -> bool:
        now = time.monotonic()
        self._budget = min(
            LOOKUPS_PER_SECOND, self._budget + (now - self._budget_at) * LOOKUPS_PER_SECOND
        )
        self._budget_at = now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    def count(self, kind: ForgedKind, reason: ForgedReason, what: str) -> None:
        """Count one refused message (also for a consumer's own checks on a verified one)."""
        self.forged[(kind.value, reason.value)] += 1
        if self.counter is not None:
            self.counter.labels(kind.value, reason.value).inc()
        log.warning("refused forged %s (%s): %s", kind.value, reason.value, what)

    # -- envelopes ------------------------------------------------------------------------

    async def check_envelope(
        self, env: Envelope, *, service: str | None = None, dedupe: bool = True
    ) -> Verdict:
        """Whether ``env`` may be acted on as what it claims.

        ``service``: the consumer wants it from that service only (e.g. an allocation
        from a coordinator). ``dedupe=False`` for a JetStream consumer that may be
        handed the same envelope again after a failed handler.
        """
        claimed = claimed_service(env.sender)
        wanted = service or SERVICE_TYPES.get(env.type)
        if claimed is None and wanted is None:
            return Verdict(ok=True)
        what = f"{env.type.value} {env.id} from {env.sender!r}"
        if wanted is not None and claimed != wanted:
            return self._refuse(ForgedKind.ENVELOPE, ForgedReason.NOT_SERVICE, what)
        assert claimed is not None
        if env.sig is None or env.feed_seq is None:
            return self._refuse(ForgedKind.ENVELOPE, ForgedReason.UNSIGNED, what)
        if env.redaction is not None:  # its payload would not be covered by the signature
            return self._refuse(ForgedKind.ENVELOPE, ForgedReason.BAD_SIGNATURE, what)
        ident = await self.identity(claimed, env.sender) if claimed else None
        digest = env.digest()
        if ident is None or not signature_valid(env, ident.public_key, digest):
            fresh = await self._refresh(claimed, env.sender) if claimed else None
            if fresh is None or not signature_valid(env, fresh.public_key, digest):
                reason = (
                    ForgedReason.BAD_SIGNATURE if ident or fresh else ForgedReason.UNKNOWN_SENDER
                )
                return self._refuse(ForgedKind.ENVELOPE, reason, what)
            ident = fresh
        if dedupe:
            taken = self._feeds.take(env.sender, ident.public_key, env.feed_seq)
            if taken == "duplicate":
                return Verdict(ok=False, identity=ident)
            if taken == "replay":
                return self._refuse(ForgedKind.ENVELOPE, ForgedReason.REPLAY, what)
        return Verdict(ok=True, identity=ident)

    # -- detached signatures (beat frames, election events) ---------------------------------

    async def check_detached(
        self,
        kind: ForgedKind,
        service: str,
        subject: str,
        body: bytes,
        headers: Mapping[str, str] | None,
    ) -> ServiceIdentity | None:
        """The replica of ``service`` that signed ``body`` on ``subject``, or ``None``.

        ``None`` is a forgery (counted) or a duplicate within the window (not counted):
        either way the message is not acted on.
        """
        headers = headers or {}
        sender, seq_text, sig = (headers.get(h) for h in (HEADER_SENDER, HEADER_SEQ, HEADER_SIG))
        what = f"{subject} from {sender!r}"
        if not sender or not seq_text or not sig:
            self._refuse(kind, ForgedReason.UNSIGNED, what)
            return None
        if claimed_service(sender) != service:
            self._refuse(kind, ForgedReason.NOT_SERVICE, what)
            return None
        try:
            seq = int(seq_text)
            if not 0 < seq < 2**63:
                raise ValueError
        except ValueError:
            self._refuse(kind, ForgedReason.BAD_SIGNATURE, what)
            return None
        signed = detached_bytes(subject, seq, body)
        ident = await self.identity(service, sender)
        if ident is None or not verify_signature(ident.public_key, signed, sig):
            fresh = await self._refresh(service, sender)
            if fresh is None or not verify_signature(fresh.public_key, signed, sig):
                reason = (
                    ForgedReason.BAD_SIGNATURE if ident or fresh else ForgedReason.UNKNOWN_SENDER
                )
                self._refuse(kind, reason, what)
                return None
            ident = fresh
        taken = self._detached.take(sender, ident.public_key, seq)
        if taken == "duplicate":
            return None
        if taken == "replay":
            self._refuse(kind, ForgedReason.REPLAY, what)
            return None
        return ident

    def _refuse(self, kind: ForgedKind, reason: ForgedReason, what: str) -> Verdict:
        self.count(kind, reason, what)
        return Verdict(ok=False, reason=reason)


def _identity(service: str, sender: str, value: bytes | None) -> ServiceIdentity | None:
    """A registry document, if it is well formed and agrees with the key it is stored under."""
    try:
        doc = json.loads(value or b"")
        if (
            not isinstance(doc, dict)
            or doc.get("kind") != "service"
            or doc.get("service") != service
            or doc.get("sender") != sender
        ):
            return None
        public_key, node_id = doc.get("public_key"), doc.get("node_id")
        if not isinstance(public_key, str) or len(b64decode(public_key)) != 32:
            return None
        if not isinstance(node_id, str) or service_sender(service, node_id) != sender:
            return None
    except (ValueError, TypeError, RecursionError):
        return None
    return ServiceIdentity(service, node_id, sender, public_key)


__all__ = [
    "HEADER_SENDER",
    "HEADER_SEQ",
    "HEADER_SIG",
    "REFRESH_SECONDS",
    "SERVICE_KEY_PREFIX",
    "SERVICE_NAMES",
    "SERVICE_TYPES",
    "ForgedKind",
    "ForgedReason",
    "ReplayWindow",
    "ServiceIdentity",
    "ServiceSigner",
    "ServiceVerifier",
    "Verdict",
    "claimed_service",
    "detached_bytes",
    "registry_key",
    "service_sender",
]
