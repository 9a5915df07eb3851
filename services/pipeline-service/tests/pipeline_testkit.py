"""Helpers for pipeline-service's integration tests: a running service with a fixed clock on the real
PostgreSQL and RabbitMQ, publishing events to it as the other services would, reading its outbox."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from pipeline_service.config import Settings
from pipeline_service.entrypoints.http import create_app
from salesflow_shared.app import ServiceContext
from salesflow_shared.bus import RabbitBus
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    ActivityLoggedV1,
    Envelope,
    EventData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadRoutedV1,
    LeadSnapshot,
    LeadUpdatedV1,
    make_event,
)
from salesflow_shared.testing import auth_headers, outbox_payloads, publish_envelope, service_test_settings

MONDAY_9AM = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ORG = "org-a"


def build_app(database_url: str, amqp_url: str, namespace: str, clock: ManualClock, **overrides: Any):
    overrides.setdefault("run_workers", False)  # tests run the sweeps themselves unless they say otherwise
    overrides.setdefault("db_pool_size", 3)  # the PostgreSQL server is shared with the other services' tests
    settings = service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url, namespace=namespace,
                                     **overrides)
    return create_app(settings, clock=clock)


@dataclass
class Pipe:
    """One running pipeline-service: its HTTP client, context and clock, plus an event feeder."""

    client: httpx.AsyncClient
    context: ServiceContext
    clock: ManualClock
    feeder: RabbitBus
    versions: dict[tuple[str, str], int] = field(default_factory=dict)

    def headers(self, role: str = "admin", sub: str = "admin-1", org: str = ORG, **extra: str) -> dict[str, str]:
        return auth_headers(org, role, sub, **extra)  # type: ignore[arg-type]

    # ---------------------------------------------------------- events in
    def envelope(self, data: EventData, subject_id: str, *, org: str = ORG, version: int | None = None) -> Envelope:
        key = (data.event_type if data.event_type not in ("LeadCreated", "LeadUpdated") else "lead", subject_id)
        if version is None:
            version = self.versions.get(key, 0) + 1
        self.versions[key] = max(self.versions.get(key, 0), version)
        return make_event(data, org_id=org, subject_id=subject_id, subject_version=version)

    async def send(self, envelope: Envelope) -> Envelope:
        """Through RabbitMQ, as the other services' relays do."""
        return await publish_envelope(self.feeder, envelope)

    async def dispatch(self, envelope: Envelope) -> Envelope:
        """Straight to the handlers (deterministic order), with the inbox and a real transaction."""
        await self.context.dispatcher.dispatch(envelope)
        return envelope

    # ---------------------------------------------------------- events out
    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return await outbox_payloads(self.context.database, event_type)

    # ---------------------------------------------------------- API
    async def instantiate(self, key: str = "inbound-web-form", org: str = ORG) -> dict[str, Any]:
        resp = await self.client.post(f"/v1/pipelines/templates/{key}/instantiate", headers=self.headers(org=org))
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def create_pipeline(self, body: dict[str, Any], org: str = ORG) -> dict[str, Any]:
        resp = await self.client.post("/v1/pipelines", json=body, headers=self.headers(org=org))
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def position(self, lead_id: str, org: str = ORG) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/positions/{lead_id}", headers=self.headers(org=org))
        assert resp.status_code == 200, resp.text
        return resp.json()


def snapshot(lead_id: str, **fields: Any) -> LeadSnapshot:
    return LeadSnapshot(lead_id=lead_id, **fields)


def lead_created(lead_id: str, **fields: Any) -> LeadCreatedV1:
    return LeadCreatedV1(lead=snapshot(lead_id, **fields))


def lead_updated(lead_id: str, changed: list[str], **fields: Any) -> LeadUpdatedV1:
    return LeadUpdatedV1(lead=snapshot(lead_id, **fields), changed=changed, cause="edit")


def routed(lead_id: str, pipeline_id: str) -> LeadRoutedV1:
    return LeadRoutedV1(lead_id=lead_id, pipeline_id=pipeline_id, reason="test routing")


def assigned(lead_id: str, owner_id: str, tz: str | None = "Europe/Paris") -> LeadAssignedV1:
    return LeadAssignedV1(lead_id=lead_id, owner_id=owner_id, owner_name=owner_id.title(), owner_timezone=tz,
                          reason="test assignment")


def activity(lead_id: str, kind: str, occurred_at: datetime, activity_id: str | None = None) -> ActivityLoggedV1:
    return ActivityLoggedV1(activity_id=activity_id or str(uuid.uuid4()), lead_id=lead_id, kind=kind,  # type: ignore[arg-type]
                            occurred_at=occurred_at, rep_id="rep-1")


def new_lead() -> str:
    return f"lead-{uuid.uuid4().hex[:8]}"
