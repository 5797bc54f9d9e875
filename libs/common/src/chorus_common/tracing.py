"""W3C trace context across REST → NATS → service hops (OpenTelemetry)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

__all__ = ["configure_tracing", "continue_trace", "extract", "inject", "tracer"]

_configured = False
_recording = False  # spans of consumed messages are recorded only when they are exported


def configure_tracing(service_name: str, exporter: str = "none") -> None:
    """Install a tracer provider once per process; spans are exported only if asked.

    Without an exporter, a trace this process starts is not sampled: its spans still
    carry ids, so ``traceparent`` flows on to the next hop, but nothing records them
    (recording the spans of every request and publish, for nobody, cost a tenth of a
    REST request). A trace sampled upstream, by a service that exports, stays sampled.
    """
    global _configured, _recording
    if _configured:
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(ALWAYS_OFF if exporter == "none" else ALWAYS_ON),
    )
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":  # pragma: no cover - needs the optional exporter package
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured, _recording = True, exporter != "none"


@functools.cache
def tracer(name: str = "chorus") -> trace.Tracer:
    """One tracer per name (looking it up cost a fifth of consuming an envelope).

    A tracer taken before :func:`configure_tracing` is OpenTelemetry's proxy, which
    follows the provider installed later, so caching it is safe.
    """
    return trace.get_tracer(name)


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write ``traceparent`` (and ``tracestate``) for the current span into headers."""
    propagate.inject(headers, context=context)


_EMPTY = Context()


def extract(headers: Mapping[str, str] | None) -> Context:
    """The caller's trace context; a message without ``traceparent`` starts a new trace."""
    if not headers or "traceparent" not in headers:
        return _EMPTY
    return propagate.extract(headers)


@contextlib.contextmanager
def continue_trace(name: str, headers: Mapping[str, str] | None) -> Iterator[None]:
    """Run the body inside the sender's trace, so what it publishes stays in that trace.

    With an exporter, the body gets a span of its own. Without one, nobody would see
    that span: the sender's context is made current instead, which keeps the trace id
    flowing to the next hop for a fraction of the cost (a span per consumed envelope
    was a sixth of consuming it).
    """
    ctx = extract(headers)
    if _recording:
        with tracer().start_as_current_span(name, context=ctx):
            yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
