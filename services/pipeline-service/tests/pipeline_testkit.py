"""Helpers for pipeline-service's integration tests: a running service with a fixed clock on the real
PostgreSQL and RabbitMQ, publishing events to it as the other services would, reading its outbox."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pipeline_service.config import Settings
from pipeline_service.entrypoints.http import create_app
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    ActivityLoggedV1,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadRoutedV1,
    LeadSnapshot,
    LeadUpdatedV1,
)
from salesflow_shared.testing import ServiceUnderTest, service_test_settings

MONDAY_9AM = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ORG = "org-a"


def build_app(database_url: str, amqp_url: str, namespace: str, clock: ManualClock, **overrides: Any):
    overrides.setdefault("run_workers", False)  # tests run the sweeps themselves unless they say otherwise
    overrides.setdefault("db_pool_size", 3)  # the PostgreSQL server is shared with the other services' tests
    settings = service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url, namespace=namespace,
                                     **overrides)
    return create_app(settings, clock=clock)


class Pipe(ServiceUnderTest):
    """One running pipeline-service (salesflow_shared.testing.ServiceUnderTest) with its API helpers."""

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
