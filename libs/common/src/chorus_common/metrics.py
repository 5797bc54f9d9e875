"""Prometheus metrics: one registry per service, constant labels, shared families.

Names follow ``chorus_<category>_<name>_<unit>`` (ARCHITECTURE.md §5). Every
sample carries the constant labels ``node_id``, ``version``, ``environment`` and
``cluster`` (SPEC.md §10), added once at collection time by
:class:`ConstLabelRegistry` instead of being spelled out on every family.
Service-specific families are created on ``ServiceMetrics.registry``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

#: SPEC.md §10: latency buckets 0.001–10 s, size buckets 64 B–16 MiB.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (*(float(64 * 4**i) for i in range(10)), 16 * 1024 * 1024.0)
#: what ``chorus_bus_forged_total`` counts: the message kinds that services sign, and why
#: one was refused (see chorus_common.service_signing)
FORGED_KINDS = ("envelope", "beat", "election")
FORGED_REASONS = ("unsigned", "bad_signature", "unknown_sender", "not_service", "replay")


class ConstLabelRegistry(CollectorRegistry):
    """A registry that stamps constant labels on every sample it exposes."""

    def __init__(self, const_labels: Mapping[str, str]) -> None:
        super().__init__(auto_describe=True)
        self._const = dict(const_labels)

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():
            stamped = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            stamped.samples = [
                Sample(s.name, {**self._const, **s.labels}, s.value, s.timestamp, s.exemplar)
                for s in metric.samples
            ]
            yield stamped


class BusMetrics:
    """The ``bus`` category: connection state and traffic through chorus_common.bus."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "chorus_bus_connected", "1 while the NATS connection is up", registry=registry
        )
        self.reconnects = Counter(
            "chorus_bus_reconnects_total", "NATS reconnections", registry=registry
        )
        self.disconnects = Counter(
            "chorus_bus_disconnects_total", "NATS disconnections", registry=registry
        )
        self.errors = Counter(
            "chorus_bus_errors_total", "Errors reported by the NATS client", registry=registry
        )
        self.published = Counter(
            "chorus_bus_published_total",
            "Envelopes published to JetStream, by type",
            ["type"],
            registry=registry,
        )
        self.publish_failures = Counter(
            "chorus_bus_publish_failures_total",
            "Publishes that did not get a JetStream acknowledgement",
            ["type"],
            registry=registry,
        )
        self.batches = Counter(
            "chorus_bus_publish_batches_total",
            "Atomic JetStream batches of publish_many: committed, or resent message by message",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("committed", "resent"):
            self.batches.labels(outcome)
        self.publish_latency = Histogram(
            "chorus_bus_publish_latency_seconds",
            "Time from publish to JetStream acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.message_size = Histogram(
            "chorus_bus_message_size_bytes",
            "Encoded envelope size",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.consumed = Counter(
            "chorus_bus_consumed_total",
            "Envelopes delivered to handlers, by consumer and result",
            ["consumer", "result"],
            registry=registry,
        )
        self.poison = Counter(
            "chorus_bus_poison_messages_total",
            "Undecodable messages terminated instead of redelivered",
            ["consumer", "reason"],
            registry=registry,
        )
        self.handler_latency = Histogram(
            "chorus_bus_handler_duration_seconds",
            "Time a handler took per envelope",
            ["consumer"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rtt = Gauge(
            "chorus_bus_rtt_seconds", "Last measured NATS round-trip time", registry=registry
        )
        self.forged = Counter(
            "chorus_bus_forged_total",
            "Service messages refused as forged (chorus_common.service_signing), by kind and reason",
            ["kind", "reason"],
            registry=registry,
        )
        # every pair is exported from the start: a forgery shows as an increase, not a new series
        for kind in FORGED_KINDS:
            for reason in FORGED_REASONS:
                self.forged.labels(kind, reason)


class HealthMetrics:
    """The ``health`` category."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.check_up = Gauge(
            "chorus_health_check_up",
            "1 if the last run of the check passed",
            ["check", "critical"],
            registry=registry,
        )
        self.check_duration = Histogram(
            "chorus_health_check_duration_seconds",
            "How long each check took",
            ["check"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.check_failures = Counter(
            "chorus_health_check_failures_total",
            "Failed check runs",
            ["check"],
            registry=registry,
        )
        self.ready = Gauge("chorus_health_ready", "1 while the service is ready", registry=registry)
        self.degraded = Gauge(
            "chorus_health_degraded",
            "1 while a non-critical check fails",
            registry=registry,
        )


class SystemMetrics:
    """The ``system`` category: identity, uptime and the HTTP edge."""

    def __init__(self, registry: CollectorRegistry, service: str, version: str) -> None:
        self.started_at = time.time()
        self.info = Info("chorus_system_build", "Service name and version", registry=registry)
        self.info.info({"service": service, "version": version})
        self.start_time = Gauge(
            "chorus_system_start_time_seconds",
            "Unix time the service started",
            registry=registry,
        )
        self.start_time.set(self.started_at)
        self.http_requests = Counter(
            "chorus_system_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "chorus_system_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "chorus_system_errors_total",
            "Errors answered to clients, by code",
            ["code"],
            registry=registry,
        )


class ServiceMetrics:
    """Everything a service exports; domain modules add their families to ``registry``."""

    def __init__(
        self,
        service: str,
        version: str,
        node_id: str,
        environment: str,
        cluster: str,
    ) -> None:
        self.registry = ConstLabelRegistry(
            {"node_id": node_id, "version": version, "environment": environment, "cluster": cluster}
        )
        ProcessCollector(registry=self.registry)
        self.system = SystemMetrics(self.registry, service, version)
        self.bus = BusMetrics(self.registry)
        self.health = HealthMetrics(self.registry)
