"""One API call is one trace across the service processes: each exports its spans over OTLP/HTTP (the
production exporter) to a local collector, and the spans of the caller's trace form one tree that reaches
every service (HTTP → outbox publish → AMQP → consume → publish → ...)."""
from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from replicas_support import configure_round_robin
from system_harness import RunningSystem

from salesflow_shared.runner import SERVICES
from salesflow_shared.testing import auth_headers, eventually

CALLER_TRACE_ID = uuid.uuid4().hex
CALLER_SPAN_ID = uuid.uuid4().hex[:16]


class OtlpCollector:
    """Receives OTLP/HTTP protobuf trace exports on 127.0.0.1 and keeps every span with its service name."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            collector.spans.append({
                                "service": attributes.get("service.name"), "name": span.name,
                                "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex()})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [s for s in list(self.spans) if s["trace_id"] == trace_id]


@pytest.fixture(scope="module")
def traced_system(tmp_path_factory, postgres_server_url, amqp_url) -> Iterator[tuple[RunningSystem, OtlpCollector]]:
    collector = OtlpCollector()
    tracing = {"SALESFLOW_TRACING_EXPORTER": "otlp", "SALESFLOW_TRACING_ENDPOINT": collector.endpoint,
               "OTEL_BSP_SCHEDULE_DELAY": "100", "SALESFLOW_DB_POOL_SIZE": "3"}
    system = RunningSystem(tmp_path_factory.mktemp("traced"), extra_env={s.name: tracing for s in SERVICES})
    try:
        system.start_all()
        yield system, collector
    finally:
        system.stop_all()
        collector.server.shutdown()


async def test_one_request_is_one_trace_across_all_five_services(traced_system):
    system, collector = traced_system
    org = f"org-trace-{uuid.uuid4().hex[:6]}"
    configure_round_robin(system.url("assignment-service"), ["ann", "bob"], org)
    async with httpx.AsyncClient(base_url=system.url("lead-service"), timeout=10) as client:
        response = await client.post("/v1/leads", json={"contact": {"email": "ada@example.com"}, "country": "DE"},
                                     headers={**auth_headers(org, "admin", "admin-1"),
                                              "traceparent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"})
    assert response.status_code == 201, response.text

    def services_in_trace() -> set[str]:
        return {s["service"] for s in collector.trace(CALLER_TRACE_ID)}

    async def every_service_took_part():
        assert services_in_trace() == {s.name for s in SERVICES}
        names = {(s["service"], s["name"]) for s in collector.trace(CALLER_TRACE_ID)}
        # lead-service consumed the LeadAssigned that its own request caused, in the same trace
        assert ("lead-service", "LeadAssigned process") in names
    await eventually(every_service_took_part, timeout=60)

    async def one_tree():
        # Each process exports in its own batches: a child can reach the collector before its parent.
        spans = collector.trace(CALLER_TRACE_ID)
        span_ids = {s["span_id"] for s in spans}
        assert len(span_ids) == len(spans)
        roots = [s for s in spans if s["parent_span_id"] == CALLER_SPAN_ID]
        assert [(r["service"], r["name"]) for r in roots] == [("lead-service", "POST /v1/leads")]
        orphans = [s for s in spans if s["parent_span_id"] not in span_ids | {CALLER_SPAN_ID}]
        assert orphans == [], "spans whose parent is not in the trace"
        return spans
    spans = await eventually(one_tree, timeout=30)
    by_id = {s["span_id"]: s for s in spans}
    for span in spans:  # a consumer's parent is the publish of that very event
        if span["name"].endswith(" process"):
            assert by_id[span["parent_span_id"]]["name"] == span["name"].replace(" process", " publish")
