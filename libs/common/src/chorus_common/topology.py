"""The streams and KV buckets of ARCHITECTURE.md §2, declared in this one place.

Every service calls :func:`declare_topology` at start; it is idempotent (create,
or update to the declared shape), so the first service up creates the bus layout
and the others confirm it.  Replicas follow ``CHORUS_JS_REPLICAS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from chorus_common.subjects import STREAM_EVENTS_SUBJECTS

__all__ = [
    "AUDIT_SUBJECT_PREFIX",
    "BUCKET_ELECTION",
    "BUCKET_FEEDS",
    "BUCKET_HAP_SESSIONS",
    "BUCKET_LEASES",
    "BUCKET_REGISTRY",
    "BUCKET_TASKS",
    "BucketSpec",
    "StreamSpec",
    "declare_topology",
]

HOUR = 3600.0
#: audit events (enrolment, key rotation, revocation) are published under this prefix
AUDIT_SUBJECT_PREFIX = "chorus.audit"
DAY = 24 * HOUR


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    max_age: float
    description: str
    duplicate_window: float = 120.0
    max_bytes: int = -1


@dataclass(frozen=True)
class BucketSpec:
    name: str
    description: str
    history: int = 1
    ttl: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        name="CHORUS_EVENTS",
        subjects=list(STREAM_EVENTS_SUBJECTS),
        max_age=7 * DAY,
        description="Coordination, HMMM, role, project and context envelopes",
    ),
    StreamSpec(
        name="CHORUS_ELECTION",
        subjects=["chorus.election.winner", "chorus.election.started", "chorus.election.stepdown"],
        max_age=30 * DAY,
        description="Election outcomes and terms (heartbeats are not kept)",
    ),
    StreamSpec(
        name="CHORUS_AUDIT",
        subjects=[f"{AUDIT_SUBJECT_PREFIX}.>"],
        max_age=365 * DAY,
        description="Who enrolled, registered, rotated or revoked what, and when",
    ),
    StreamSpec(
        name="CHORUS_BACKBEAT",
        subjects=["chorus.backbeat.>"],
        max_age=1 * HOUR,
        description="Beat frames and status claims (short retention)",
        duplicate_window=30.0,
    ),
)

BUCKET_ELECTION = "chorus-election"
BUCKET_LEASES = "chorus-leases"
BUCKET_TASKS = "chorus-tasks"
BUCKET_REGISTRY = "chorus-registry"
BUCKET_FEEDS = "chorus-feeds"
BUCKET_HAP_SESSIONS = "chorus-hap-sessions"

BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec(BUCKET_ELECTION, "Admin lease and fencing term", history=5),
    BucketSpec(BUCKET_LEASES, "License seat leases", history=1),
    BucketSpec(BUCKET_TASKS, "Task board", history=10),
    BucketSpec(BUCKET_REGISTRY, "Agents, capabilities and public keys", history=1),
    # one key per (agent, feed_seq), created only once: the store refuses a second entry at
    # a seq whatever the number of gateways; kept a day longer than CHORUS_EVENTS keeps the
    # entries, so no stored copy outlives its record; a batch's records go in one atomic batch
    BucketSpec(
        BUCKET_FEEDS,
        "Feed entries: digest and original ack per agent and seq",
        ttl=8 * DAY,
        extra={"allow_atomic": True},
    ),
    # records expire by per-message TTL; the bucket's TTL bounds them and their delete markers
    BucketSpec(BUCKET_HAP_SESSIONS, "HAP web sessions", history=1, ttl=7 * DAY),
)


def _stream_config(spec: StreamSpec, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=spec.subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age,
        max_bytes=spec.max_bytes,
        duplicate_window=spec.duplicate_window,
        num_replicas=replicas,
        allow_atomic=True,  # Bus.publish_many commits many envelopes with one fsync and ack
    )


async def declare_topology(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update every stream and bucket to its declared shape."""
    for spec in STREAMS:
        config = _stream_config(spec, replicas)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:
                # another service created it between our look and our add
                await js.update_stream(config)
        else:
            await js.update_stream(config)
    for bucket in BUCKETS:
        try:
            await js.key_value(bucket.name)
        except NotFoundError:  # BucketNotFoundError is one
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket.name,
                    description=bucket.description,
                    history=bucket.history,
                    ttl=bucket.ttl,
                    replicas=replicas,
                    storage=StorageType.FILE,
                )
            )
        if bucket.extra:  # stream settings a KeyValueConfig cannot carry
            info = await js.stream_info(f"KV_{bucket.name}")
            if any(getattr(info.config, k) != v for k, v in bucket.extra.items()):
                for k, v in bucket.extra.items():
                    setattr(info.config, k, v)
                await js.update_stream(info.config)
