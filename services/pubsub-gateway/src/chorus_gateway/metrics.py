"""The gateway's metric families: categories ``pubsub`` and ``shhh``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chorus_common.metrics import LATENCY_BUCKETS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "chorus_pubsub_published_total",
            "Envelopes accepted and acknowledged by JetStream",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "chorus_pubsub_rejected_total",
            "Envelopes refused, by reason (error code)",
            ["reason"],
            registry=registry,
        )
        self.publish_latency = Histogram(
            "chorus_pubsub_publish_latency_seconds",
            "Request to JetStream acknowledgement, per publish request",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "chorus_pubsub_batch_size",
            "Envelopes per batch request",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
            registry=registry,
        )
        self.rate_limited = Counter(
            "chorus_pubsub_rate_limited_total",
            "Requests refused with 429, by sender",
            ["sender"],
            registry=registry,
        )
        self.subscribers = Gauge(
            "chorus_pubsub_active_subscribers",
            "Open SSE and WebSocket subscriptions",
            ["transport"],
            registry=registry,
        )
        self.delivered = Counter(
            "chorus_pubsub_delivered_total",
            "Messages sent to subscribers",
            ["transport"],
            registry=registry,
        )
        self.slow_consumers = Counter(
            "chorus_pubsub_slow_consumers_total",
            "SSE and WebSocket subscribers dropped because their bounded queue overflowed",
            ["transport"],
            registry=registry,
        )
        self.reads = Counter(
            "chorus_pubsub_messages_read_total",
            "Messages returned by GET /v1/messages",
            registry=registry,
        )
        self.redactions = Counter(
            "chorus_shhh_redactions_total",
            "Secrets redacted, by pattern and severity",
            ["pattern", "severity"],
            registry=registry,
        )
        self.redacted_envelopes = Counter(
            "chorus_shhh_redacted_envelopes_total",
            "Envelopes that needed redaction",
            registry=registry,
        )
        for transport in ("sse", "ws"):
            self.subscribers.labels(transport)
            self.delivered.labels(transport)
            self.slow_consumers.labels(transport)
