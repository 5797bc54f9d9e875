"""Prometheus metrics: one registry per service, constant labels, shared families.

Names follow ``chorus_<category>_<name>_<unit>`` (ARCHITECTURE.md §5). Every
sample carries the constant labels ``node_id``, ``version``, ``environment`` and
``cluster`` (SPEC.md §10), added once at collection time by
:class:`ConstLabelRegistry` instead of being spelled out on every family.
Service-specific families are created on ``ServiceMetrics.registry``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

__all__ = [
    "FORGED_KINDS",
    "FORGED_REASONS",
    "LATENCY_BUCKETS",
    "SIZE_BUCKETS",
    "BusMetrics",
    "ConstLabelRegistry",
    "Family",
    "HealthMetrics",
    "MetricSet",
    "ServiceMetrics",
    "SystemMetrics",
    "counter",
    "gauge",
    "histogram",
    "product",
]

#: SPEC.md §10: latency buckets 0.001–10 s, size buckets 64 B–16 MiB.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (*(float(64 * 4**i) for i in range(10)), 16 * 1024 * 1024.0)
#: what ``chorus_bus_forged_total`` counts: the message kinds that services sign, and why
#: one was refused (see chorus_common.service_signing)
FORGED_KINDS = ("envelope", "beat", "election")
FORGED_REASONS = ("unsigned", "bad_signature", "unknown_sender", "not_service", "replay")


M = TypeVar("M", bound=MetricWrapperBase)


class Family(Generic[M]):
    """One metric family declared on a :class:`MetricSet`; each instance creates its own.

    ``known`` label values are created up front, so a counter reads 0 from the start
    rather than "no data" until its first event (a dashboard's rate and an alert's
    ``increase`` need the series to exist before anything happens).
    """

    def __init__(
        self,
        kind: type[M],
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] | None = None,
        known: Iterable[Sequence[str]] = (),
    ) -> None:
        self.kind: type[M] = kind
        self.name, self.documentation = name, documentation
        self.labels = tuple(labels)
        self.buckets = tuple(buckets) if buckets is not None else None
        self.known = [tuple(values) for values in known]
        self.attribute = ""

    def __set_name__(self, owner: type[Any], attribute: str) -> None:
        self.attribute = attribute

    def create(self, registry: CollectorRegistry) -> M:
        extra: dict[str, Any] = {}
        if self.buckets is not None:
            extra["buckets"] = self.buckets
        metric = self.kind(self.name, self.documentation, self.labels, registry=registry, **extra)
        for values in self.known:
            metric.labels(*values)
        return metric

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Family[M]: ...
    @overload
    def __get__(self, instance: MetricSet, owner: type[Any]) -> M: ...
    def __get__(self, instance: MetricSet | None, owner: type[Any]) -> Family[M] | M:
        if instance is None:
            return self
        created: M = instance.__dict__[self.attribute]
        return created


def counter(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    known: Iterable[Sequence[str]] = (),
) -> Family[Counter]:
    return Family(Counter, name, documentation, labels, known=known)


def gauge(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    known: Iterable[Sequence[str]] = (),
) -> Family[Gauge]:
    return Family(Gauge, name, documentation, labels, known=known)


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    *,
    buckets: Sequence[float] = (),
    known: Iterable[Sequence[str]] = (),
) -> Family[Histogram]:
    return Family(
        Histogram, name, documentation, labels, buckets=buckets or LATENCY_BUCKETS, known=known
    )


class MetricSet:
    """A category of families, declared as class attributes and created per registry::

    class GatewayMetrics(MetricSet):
        published = counter("chorus_pubsub_published_total", "…", ["type"])

    metrics = GatewayMetrics(registry)
    metrics.published.labels("task_claim").inc()
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        for cls in reversed(type(self).__mro__):
            for attribute, family in vars(cls).items():
                if isinstance(family, Family):
                    self.__dict__[attribute] = family.create(registry)


def product(*values: Iterable[str]) -> list[tuple[str, ...]]:
    """Every combination of label values, for ``known=``."""
    return list(itertools.product(*values))


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


class BusMetrics(MetricSet):
    """The ``bus`` category: connection state and traffic through chorus_common.bus."""

    connected = gauge("chorus_bus_connected", "1 while the NATS connection is up")
    reconnects = counter("chorus_bus_reconnects_total", "NATS reconnections")
    disconnects = counter("chorus_bus_disconnects_total", "NATS disconnections")
    errors = counter("chorus_bus_errors_total", "Errors reported by the NATS client")
    published = counter(
        "chorus_bus_published_total", "Envelopes published to JetStream, by type", ["type"]
    )
    publish_failures = counter(
        "chorus_bus_publish_failures_total",
        "Publishes that did not get a JetStream acknowledgement",
        ["type"],
    )
    batches = counter(
        "chorus_bus_publish_batches_total",
        "Atomic JetStream batches of publish_many: committed, or resent message by message",
        ["outcome"],
        known=[("committed",), ("resent",)],
    )
    publish_latency = histogram(
        "chorus_bus_publish_latency_seconds", "Time from publish to JetStream acknowledgement"
    )
    message_size = histogram(
        "chorus_bus_message_size_bytes", "Encoded envelope size", buckets=SIZE_BUCKETS
    )
    consumed = counter(
        "chorus_bus_consumed_total",
        "Envelopes delivered to handlers, by consumer and result",
        ["consumer", "result"],
    )
    poison = counter(
        "chorus_bus_poison_messages_total",
        "Undecodable messages terminated instead of redelivered",
        ["consumer", "reason"],
    )
    handler_latency = histogram(
        "chorus_bus_handler_duration_seconds", "Time a handler took per envelope", ["consumer"]
    )
    rtt = gauge("chorus_bus_rtt_seconds", "Last measured NATS round-trip time")
    # every pair is exported from the start: a forgery shows as an increase, not a new series
    forged = counter(
        "chorus_bus_forged_total",
        "Service messages refused as forged (chorus_common.service_signing), by kind and reason",
        ["kind", "reason"],
        known=product(FORGED_KINDS, FORGED_REASONS),
    )


class HealthMetrics(MetricSet):
    """The ``health`` category."""

    check_up = gauge(
        "chorus_health_check_up", "1 if the last run of the check passed", ["check", "critical"]
    )
    check_duration = histogram(
        "chorus_health_check_duration_seconds", "How long each check took", ["check"]
    )
    check_failures = counter("chorus_health_check_failures_total", "Failed check runs", ["check"])
    ready = gauge("chorus_health_ready", "1 while the service is ready")
    degraded = gauge("chorus_health_degraded", "1 while a non-critical check fails")


class SystemMetrics(MetricSet):
    """The ``system`` category: identity, uptime and the HTTP edge."""

    start_time = gauge("chorus_system_start_time_seconds", "Unix time the service started")
    http_requests = counter(
        "chorus_system_http_requests_total",
        "HTTP requests by route and status",
        ["method", "route", "status"],
    )
    http_latency = histogram(
        "chorus_system_http_request_duration_seconds",
        "HTTP request latency by route",
        ["method", "route"],
    )
    errors = counter("chorus_system_errors_total", "Errors answered to clients, by code", ["code"])

    def __init__(self, registry: CollectorRegistry, service: str, version: str) -> None:
        super().__init__(registry)
        self.started_at = time.time()
        self.info = Info("chorus_system_build", "Service name and version", registry=registry)
        self.info.info({"service": service, "version": version})
        self.start_time.set(self.started_at)


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
