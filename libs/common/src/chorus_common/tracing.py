"""W3C trace context across REST → NATS → service hops (OpenTelemetry)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

_configured = False


def configure_tracing(service_name: str, exporter: str = "none") -> None:
    """Install a tracer provider once per process; spans are exported only if asked."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":  # pragma: no cover - needs the optional exporter package
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str = "chorus") -> trace.Tracer:
    return trace.get_tracer(name)


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write ``traceparent`` (and ``tracestate``) for the current span into headers."""
    propagate.inject(headers, context=context)


def extract(headers: Mapping[str, str] | None) -> Context:
    return propagate.extract(headers or {})
