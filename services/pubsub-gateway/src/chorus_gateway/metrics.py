"""The gateway's metric families: categories ``pubsub`` and ``shhh``."""

from __future__ import annotations

from chorus_common.metrics import MetricSet, counter, gauge, histogram

__all__ = ["TRANSPORTS", "GatewayMetrics"]

#: the subscription transports, exported from the start on every per-transport family
TRANSPORTS = [("sse",), ("ws",)]


class GatewayMetrics(MetricSet):
    published = counter(
        "chorus_pubsub_published_total",
        "Envelopes accepted and acknowledged by JetStream",
        ["type"],
    )
    rejected = counter(
        "chorus_pubsub_rejected_total", "Envelopes refused, by reason (error code)", ["reason"]
    )
    publish_latency = histogram(
        "chorus_pubsub_publish_latency_seconds",
        "Request to JetStream acknowledgement, per publish request",
    )
    batch_size = histogram(
        "chorus_pubsub_batch_size",
        "Envelopes per batch request",
        buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
    )
    rate_limited = counter(
        "chorus_pubsub_rate_limited_total", "Requests refused with 429, by sender", ["sender"]
    )
    subscribers = gauge(
        "chorus_pubsub_active_subscribers",
        "Open SSE and WebSocket subscriptions",
        ["transport"],
        known=TRANSPORTS,
    )
    delivered = counter(
        "chorus_pubsub_delivered_total",
        "Messages sent to subscribers",
        ["transport"],
        known=TRANSPORTS,
    )
    slow_consumers = counter(
        "chorus_pubsub_slow_consumers_total",
        "SSE and WebSocket subscribers dropped because their bounded queue overflowed",
        ["transport"],
        known=TRANSPORTS,
    )
    reads = counter("chorus_pubsub_messages_read_total", "Messages returned by GET /v1/messages")
    redactions = counter(
        "chorus_shhh_redactions_total",
        "Secrets redacted, by pattern and severity",
        ["pattern", "severity"],
    )
    redacted_envelopes = counter(
        "chorus_shhh_redacted_envelopes_total", "Envelopes that needed redaction"
    )
