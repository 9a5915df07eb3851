"""OpenTelemetry traces: a span per HTTP request, per outbox publish and per consumed message.

The W3C trace context flows with the work, so one web-form submission is one trace across the services:

    HTTP `traceparent` header → server span → `traceparent_var` → outbox row header
    → relay's producer span → AMQP `traceparent` header → consumer span → `traceparent_var`
    → the outbox rows its handler writes → the next producer span → ...

Configured by settings (`SALESFLOW_TRACING_EXPORTER` = none | console | otlp, `SALESFLOW_TRACING_ENDPOINT`
for OTLP over HTTP, `SALESFLOW_TRACING_SAMPLE_RATIO` for new traces). With `none`, spans are still made (not
recorded) so the context keeps propagating to services that do export. Each service gets its own tracer
provider (its own `service.name`), which keeps the embedded mode's five apps in one process apart.
Tests call `memory_exporter()` and read the finished spans.
"""
from __future__ import annotations

import atexit
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import traceparent_var

_propagator = TraceContextTextMapPropagator()
_ids = RandomIdGenerator()
_providers: dict[str, TracerProvider] = {}
_tracers: dict[str, trace.Tracer] = {}
_processors: list[SpanProcessor] = []
_exporters_configured: set[tuple[str, str]] = set()
_sample_ratio = 1.0
_memory: InMemorySpanExporter | None = None
# Probes and scrapes would bury the traces that matter.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def configure_tracing(exporter: str = "none", endpoint: str = "", sample_ratio: float = 1.0) -> None:
    """Install the exporter once per process (the embedded mode calls this for each of its five apps)."""
    global _sample_ratio
    _sample_ratio = min(max(sample_ratio, 0.0), 1.0)
    if exporter == "none" or (exporter, endpoint) in _exporters_configured:
        return
    if exporter == "console":
        _add_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _add_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()))
    else:
        raise ValueError(f"unknown tracing exporter {exporter!r}: none, console or otlp")
    _exporters_configured.add((exporter, endpoint))


def memory_exporter() -> InMemorySpanExporter:
    """An exporter that keeps finished spans in memory (tests); the same one on every call."""
    global _memory
    if _memory is None:
        _memory = InMemorySpanExporter()
        _add_processor(SimpleSpanProcessor(_memory))
    return _memory


def _add_processor(processor: SpanProcessor) -> None:
    _processors.append(processor)
    for provider in _providers.values():
        provider.add_span_processor(processor)


@atexit.register
def _flush_at_exit() -> None:
    for processor in _processors:
        processor.shutdown()


def tracer(service: str) -> trace.Tracer:
    # One tracer per service, kept: get_tracer builds a new one at each call, and a consumer asks once per event.
    found = _tracers.get(service)
    if found is None:
        provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                  sampler=ParentBased(TraceIdRatioBased(_sample_ratio)), shutdown_on_exit=False)
        for processor in _processors:
            provider.add_span_processor(processor)
        _providers[service] = provider
        found = _tracers[service] = provider.get_tracer("salesflow_shared")
    return found


def parent_context(carrier: Mapping[str, Any]) -> Context:
    """The context of a W3C `traceparent` (and `tracestate`) in headers; an empty one starts a new trace."""
    text = {k.lower(): (v.decode("latin-1") if isinstance(v, bytes) else str(v))
            for k, v in carrier.items() if k.lower() in ("traceparent", "tracestate") and v}
    return _propagator.extract(text)


def traceparent_of(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


class TracingMiddleware:
    """A SERVER span per HTTP request, child of the caller's `traceparent`; events it publishes follow it."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v for k, v in scope.get("headers") or []}
        method = scope.get("method", "GET")
        if not _processors:  # nothing records spans: the context alone, as for deliveries (`unrecorded_span`)
            unrecorded = unrecorded_span(self.service, method, parent_context(headers))
            token = traceparent_var.set(traceparent_of(unrecorded))
            try:
                with trace.use_span(unrecorded, end_on_exit=False):
                    await self.app(scope, receive, send)
            finally:
                traceparent_var.reset(token)
            return
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer(self.service).start_as_current_span(
                method, context=parent_context(headers), kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope.get("path", "")}) as span:
            token = traceparent_var.set(traceparent_of(span))
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                traceparent_var.reset(token)
                template = getattr(scope.get("route"), "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def unrecorded_span(service: str, name: str, parent: Context) -> Span:
    """The span the SDK would make if its sampler dropped it, for when nothing in this process records spans
    (no exporter: `_processors` empty): a new span id in the parent's trace (or a new trace), with the sampled
    flag the service's sampler gives it, so the context travels on to services that do record. The SDK would
    otherwise build a recording span (attributes, timestamps, a lock) that no processor ever reads: on every
    delivery and every publish."""
    parent_span = trace.get_current_span(parent).get_span_context()
    trace_id = parent_span.trace_id if parent_span.is_valid else _ids.generate_trace_id()
    tracer(service)  # its provider, with the sampler it was made with
    decision = _providers[service].sampler.should_sample(parent, trace_id, name)
    sampled = decision.decision is Decision.RECORD_AND_SAMPLE
    return trace.NonRecordingSpan(trace.SpanContext(
        trace_id, _ids.generate_span_id(), is_remote=False, trace_state=decision.trace_state,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)))


async def traced_publish(service: str, message: Any, publish: Callable[[Any], Awaitable[None]]) -> None:
    """Publish one outbox message in a PRODUCER span, child of the span that wrote the event; the message's
    `traceparent` header then names this span, so the consumers' spans are its children."""
    if not _processors:
        traceparent = traceparent_of(unrecorded_span(service, "publish", parent_context(message.headers)))
        if traceparent:
            message.headers["traceparent"] = traceparent
        await publish(message)
        return
    with tracer(service).start_as_current_span(
            f"{message.event_type} publish", context=parent_context(message.headers), kind=SpanKind.PRODUCER,
            record_exception=False, set_status_on_exception=False,
            attributes={"messaging.system": "rabbitmq", "messaging.operation.type": "publish",
                        "messaging.destination.name": message.event_type,
                        "messaging.message.id": message.event_id}) as span:
        traceparent = traceparent_of(span)
        if traceparent:
            message.headers["traceparent"] = traceparent
        try:
            await publish(message)
        except Exception as exc:
            if type(exc).__name__ == "Unroutable":  # no queue bound: normal, not a failure
                span.set_attribute("messaging.unroutable", True)
            else:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            raise


@contextmanager
def consumer_span(service: str, *, event_type: str, event_id: str, org_id: str,
                  traceparent: str | None) -> Iterator[Span]:
    """A CONSUMER span for one delivered event, child of the producer span named by its `traceparent`."""
    if not _processors:
        parent = parent_context({"traceparent": traceparent or ""})
        with trace.use_span(unrecorded_span(service, "process", parent), end_on_exit=False) as unrecorded:
            yield unrecorded
        return
    with tracer(service).start_as_current_span(
            f"{event_type} process", context=parent_context({"traceparent": traceparent or ""}),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "rabbitmq", "messaging.operation.type": "process",
                        "messaging.destination.name": event_type, "messaging.message.id": event_id,
                        "salesflow.org_id": org_id}) as span:
        yield span


def mark_consumed(service: str, *, event_type: str, event_id: str, org_id: str, traceparent: str | None) -> None:
    """The CONSUMER span of an event whose handler takes the whole batch later (handle_many): started and ended
    at once, never made current (nothing runs inside it), so the event still shows in the trace it came with
    at a fraction of `consumer_span`'s cost. Nothing at all when nothing records spans (it has no children)."""
    if not _processors:
        return
    tracer(service).start_span(
        f"{event_type} process", context=parent_context({"traceparent": traceparent or ""}), kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "rabbitmq", "messaging.operation.type": "process",
                    "messaging.destination.name": event_type, "messaging.message.id": event_id,
                    "salesflow.org_id": org_id}).end()

