"""One request that fans out through events is one trace: HTTP → outbox publish → consume → publish → consume."""
from __future__ import annotations

from pathlib import Path

import pytest
from backbone_support import metadata, start_context
from fastapi import APIRouter
from opentelemetry.trace import SpanKind

from salesflow_shared.app import ServiceDefinition, UowDep, create_service_app
from salesflow_shared.bus import InMemoryBus
from salesflow_shared.events import Envelope, EventData, LeadDisqualifiedV1, LeadErasedV1
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, running_app, service_test_settings
from salesflow_shared.tracing import memory_exporter
from salesflow_shared.uow import UnitOfWork

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture(params=["rabbitmq", "memory"])
async def two_services(request, make_database_url, amqp_url, bus_namespace):
    """front: an HTTP route publishing LeadErased, and a LeadDisqualified handler; back: turns each LeadErased
    into a LeadDisqualified. On RabbitMQ each has its own connection; otherwise they share an in-process bus."""
    shared_bus = InMemoryBus() if request.param == "memory" else None
    if shared_bus is not None:
        await shared_bus.start()
    disqualified: list[str] = []

    def settings(name: str, url: str) -> ServiceSettings:
        return service_test_settings(ServiceSettings, database_url=url, namespace=bus_namespace,
                                     amqp_url=amqp_url if request.param == "rabbitmq" else "",
                                     service_name=name, migrate_on_start=False)

    router = APIRouter()

    @router.post("/v1/erasures/{lead_id}", status_code=202)
    async def erase(lead_id: str, uow: UowDep) -> dict[str, str]:
        uow.publish(LeadErasedV1(lead_id=lead_id), org_id="org-a", subject_id=lead_id)
        await uow.commit()
        return {"lead_id": lead_id}

    async def on_disqualified(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        disqualified.append(data.lead_id)

    async def on_erased(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        uow.publish(LeadDisqualifiedV1(lead_id=data.lead_id, reason="erased"), org_id=envelope.org_id,
                    subject_id=data.lead_id)

    front_app = create_service_app(ServiceDefinition(
        name="front-service", settings=settings("front-service", await make_database_url("front")),
        routers=[router], migrations_path=Path("unused"), event_handlers={"LeadDisqualified": [on_disqualified]}),
        bus=shared_bus)
    async with front_app.state.context.database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    back = await start_context(ServiceDefinition(
        name="back-service", settings=settings("back-service", await make_database_url("back")), routers=[],
        migrations_path=Path("unused"), event_handlers={"LeadErased": [on_erased]}), bus=shared_bus)
    try:
        async with running_app(front_app) as client:
            yield client, disqualified
    finally:
        await back.stop()
        if shared_bus is not None:
            await shared_bus.close()


async def test_request_and_the_events_it_causes_form_one_trace(two_services):
    client, disqualified = two_services
    exporter = memory_exporter()
    exporter.clear()

    response = await client.post("/v1/erasures/lead-7",
                                 headers={"traceparent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"})
    assert response.status_code == 202

    async def chain_finished():
        assert disqualified == ["lead-7"]
        names = [s.name for s in exporter.get_finished_spans()]
        assert "LeadDisqualified process" in names
    await eventually(chain_finished, timeout=10)

    spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == CALLER_TRACE_ID]
    by_name = {s.name: s for s in spans}
    chain = [("POST /v1/erasures/{lead_id}", SpanKind.SERVER, "front-service"),
             ("LeadErased publish", SpanKind.PRODUCER, "front-service"),
             ("LeadErased process", SpanKind.CONSUMER, "back-service"),
             ("LeadDisqualified publish", SpanKind.PRODUCER, "back-service"),
             ("LeadDisqualified process", SpanKind.CONSUMER, "front-service")]
    assert sorted(by_name) == sorted(name for name, _, _ in chain)
    parent_span_id = int(CALLER_SPAN_ID, 16)
    for name, kind, service in chain:
        span = by_name[name]
        assert span.kind == kind, name
        assert span.resource.attributes["service.name"] == service, name
        assert span.parent is not None and span.parent.span_id == parent_span_id, f"{name} has the wrong parent"
        parent_span_id = span.context.span_id
    assert by_name["POST /v1/erasures/{lead_id}"].attributes["http.response.status_code"] == 202
    assert by_name["LeadErased process"].attributes["messaging.message.id"] == \
        by_name["LeadErased publish"].attributes["messaging.message.id"]


async def test_health_probes_make_no_spans(two_services):
    client, _ = two_services
    exporter = memory_exporter()
    exporter.clear()
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/v1/nowhere")).status_code == 404
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["GET"]  # the unmatched request is traced (no route template), the probe is not


async def test_consumer_reports_event_delivery_lag(two_services):
    client, disqualified = two_services
    await client.post("/v1/erasures/lead-8")

    async def handled():
        assert disqualified == ["lead-8"]
    await eventually(handled, timeout=10)
    text = (await client.get("/metrics")).text
    count = [line for line in text.splitlines()
             if line.startswith('salesflow_event_delivery_lag_seconds_count{event_type="LeadDisqualified"}')]
    assert count and float(count[0].split()[-1]) == 1.0
    within_a_minute = [line for line in text.splitlines() if line.startswith(
        'salesflow_event_delivery_lag_seconds_bucket{event_type="LeadDisqualified",le="60.0"}')]
    assert within_a_minute and float(within_a_minute[0].split()[-1]) == 1.0



async def test_events_of_a_batch_handler_each_show_in_their_own_trace(database_url):
    """A handler that takes the whole batch (handle_many) runs once, yet each event gets a CONSUMER span in the
    trace it came with, child of the span that published it."""
    received: list[list[str]] = []

    async def on_erased(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AssertionError("a batch goes to handle_many")

    async def on_many(items: list[tuple[EventData, Envelope]], uow: UnitOfWork) -> None:
        received.append([data.lead_id for data, _ in items])

    on_erased.handle_many = on_many  # type: ignore[attr-defined]
    settings = service_test_settings(ServiceSettings, database_url=database_url, service_name="batch-service",
                                     migrate_on_start=False)
    context = await start_context(ServiceDefinition(
        name="batch-service", settings=settings, routers=[], migrations_path=Path("unused"),
        event_handlers={"LeadErased": [on_erased]}, consume_in_batches=True))
    exporter = memory_exporter()
    exporter.clear()
    try:
        from salesflow_shared.events import make_event

        events = [make_event(LeadErasedV1(lead_id=f"lead-{i}"), org_id="org-a", subject_id=f"lead-{i}")
                  for i in range(3)]
        traces = [f"{i + 1:032x}" for i in range(3)]
        await context.dispatcher.handle_batch([(e.to_json(), {"traceparent": f"00-{trace}-{CALLER_SPAN_ID}-01"})
                                               for e, trace in zip(events, traces, strict=True)])
    finally:
        await context.stop()
    assert received == [["lead-0", "lead-1", "lead-2"]]
    spans = [s for s in exporter.get_finished_spans() if s.resource.attributes["service.name"] == "batch-service"]
    assert [(s.name, s.kind, f"{s.context.trace_id:032x}", s.parent.span_id) for s in spans] == [
        ("LeadErased process", SpanKind.CONSUMER, trace, int(CALLER_SPAN_ID, 16)) for trace in traces]
    assert [s.attributes["messaging.message.id"] for s in spans] == [str(e.id) for e in events]


async def test_with_nothing_recording_spans_the_trace_context_still_travels(monkeypatch):
    """No exporter in the process: no span is recorded, but each delivery and publish still makes a span id of
    its own in the caller's trace, sampled as the caller decided, so services that do record see one trace."""
    from opentelemetry import trace

    from salesflow_shared import tracing
    from salesflow_shared.bus import OutgoingMessage

    monkeypatch.setattr(tracing, "_processors", [])
    published: list[str] = []

    async def publish(sent: OutgoingMessage) -> None:
        published.append(sent.headers["traceparent"])

    for flags in ("01", "00"):
        caller = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-{flags}"
        with tracing.consumer_span("quiet-service", event_type="LeadErased", event_id="e1", org_id="org-a",
                                   traceparent=caller) as span:
            assert not span.is_recording()
            assert trace.get_current_span() is span  # what runs inside is its child
            consumed = tracing.traceparent_of(span)
        assert consumed is not None
        assert consumed.startswith(f"00-{CALLER_TRACE_ID}-") and consumed.endswith(f"-{flags}")
        assert consumed.split("-")[2] != CALLER_SPAN_ID
        message = OutgoingMessage(event_id="e2", event_type="LeadDisqualified", body=b"{}",
                                  headers={"traceparent": consumed})
        await tracing.traced_publish("quiet-service", message, publish)
        assert published[-1].startswith(f"00-{CALLER_TRACE_ID}-") and published[-1].endswith(f"-{flags}")
        assert published[-1].split("-")[2] not in (CALLER_SPAN_ID, consumed.split("-")[2])
    with tracing.consumer_span("quiet-service", event_type="LeadErased", event_id="e3", org_id="org-a",
                               traceparent=None) as span:  # no caller: a new trace, sampled (ratio 1)
        started = tracing.traceparent_of(span)
    assert started is not None and CALLER_TRACE_ID not in started and started.endswith("-01")


async def test_with_nothing_recording_spans_a_request_still_carries_the_callers_trace(
        monkeypatch, make_database_url, bus_namespace):
    """No exporter in the process: a request records no span, but what it runs (and the events it publishes)
    is in a span of its own in the caller's trace, sampled as the caller decided."""
    from typing import Any

    from opentelemetry import trace

    from salesflow_shared import tracing
    from salesflow_shared.logging import traceparent_var

    monkeypatch.setattr(tracing, "_processors", [])
    router = APIRouter()

    @router.get("/v1/trace-context")
    async def trace_context() -> dict[str, Any]:
        span = trace.get_current_span()
        return {"traceparent": traceparent_var.get(), "current": tracing.traceparent_of(span),
                "recording": span.is_recording()}

    app = create_service_app(ServiceDefinition(
        name="quiet-service", routers=[router], migrations_path=Path("unused"),
        settings=service_test_settings(ServiceSettings, database_url=await make_database_url("quiet"),
                                       namespace=bus_namespace, amqp_url="", service_name="quiet-service",
                                       migrate_on_start=False)))
    async with running_app(app) as client:
        for flags in ("01", "00"):
            answer = (await client.get("/v1/trace-context", headers={
                "traceparent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-{flags}"})).json()
            assert answer["recording"] is False
            assert answer["traceparent"] == answer["current"]  # the outbox rows name the span what runs is in
            version, trace_id, span_id, sampled = answer["traceparent"].split("-")
            assert (version, trace_id, sampled) == ("00", CALLER_TRACE_ID, flags) and span_id != CALLER_SPAN_ID
        started = (await client.get("/v1/trace-context")).json()["traceparent"]  # no caller: a new trace, sampled
        assert CALLER_TRACE_ID not in started and started.endswith("-01")
