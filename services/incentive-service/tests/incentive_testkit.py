"""Helpers for incentive-service's tests: a running service with a fixed clock on the real PostgreSQL and
RabbitMQ, publishing events to it as the other services would, and reading its outbox."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from incentive_service.config import Settings
from incentive_service.entrypoints.http import create_app
from salesflow_shared.app import ServiceContext
from salesflow_shared.bus import RabbitBus
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import Envelope, EventData, make_event
from salesflow_shared.testing import auth_headers, outbox_payloads, publish_envelope, service_test_settings

NOW = datetime(2027, 2, 15, 9, 0, tzinfo=UTC)
ORG = "org-a"


def build_app(database_url: str, amqp_url: str, namespace: str, clock: ManualClock, **overrides: Any):
    overrides.setdefault("recalculation_interval_s", 0)  # tests recompute by hand unless they say otherwise
    overrides.setdefault("db_pool_size", 3)  # the PostgreSQL server is shared with the other services' tests
    settings = service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url, namespace=namespace,
                                     **overrides)
    return create_app(settings, clock=clock)


@dataclass
class Incentives:
    """One running incentive-service: its HTTP client, context and clock, plus an event feeder."""

    client: httpx.AsyncClient
    context: ServiceContext
    clock: ManualClock
    feeder: RabbitBus
    versions: dict[tuple[str, str], int] = field(default_factory=dict)

    def headers(self, role: str = "admin", sub: str = "admin-1", org: str = ORG, **extra: str) -> dict[str, str]:
        return auth_headers(org, role, sub, **extra)  # type: ignore[arg-type]

    def envelope(self, data: EventData, subject_id: str, *, org: str = ORG, version: int | None = None) -> Envelope:
        key = (data.event_type, subject_id)
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

    async def payee_if_match(self, participant_id: str) -> dict[str, str]:
        """If-Match for a PUT of this payee, as a manager reads it first ("0" for a participant not known yet)."""
        read = await self.client.get(f"/v1/payees/{participant_id}", headers=self.headers())
        return {"If-Match": read.headers["ETag"] if read.status_code == 200 else '"0"'}

    async def rows(self, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
        async with self.context.database.session() as session:
            return [dict(r) for r in (await session.execute(sa.select(table).where(*where))).mappings().all()]

    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return await outbox_payloads(self.context.database, event_type)


def new_lead() -> str:
    return f"lead-{uuid.uuid4().hex[:8]}"


async def win_deal(incentives: Incentives, lead_id: str, owner: str, value: str, won_at: datetime, *,
                   currency: str = "EUR", team_id: str | None = None, product_line: str | None = None,
                   company: str | None = None) -> None:
    """A deal through the normal events: created, assigned, won (straight to the handlers)."""
    from decimal import Decimal

    from salesflow_shared.events import CompanyData, LeadAssignedV1, LeadCreatedV1, LeadSnapshot, LeadWonV1

    await incentives.dispatch(incentives.envelope(LeadCreatedV1(lead=LeadSnapshot(
        lead_id=lead_id, product_line=product_line, value=Decimal(value), currency=currency,
        company=CompanyData(name=company or f"Company of {lead_id}"))), lead_id))
    await incentives.dispatch(incentives.envelope(LeadAssignedV1(lead_id=lead_id, owner_id=owner, team_id=team_id,
                                                                 reason="test"), lead_id))
    await incentives.dispatch(incentives.envelope(LeadWonV1(lead_id=lead_id, pipeline_id="p1", value=Decimal(value),
                                                            currency=currency, owner_id=owner, won_at=won_at),
                                                  lead_id))


async def recalculate(incentives: Incentives) -> None:
    """Run the recalculation worker's ticks until the queue is empty."""
    from incentive_service.service_layer.statements import recalculate_queued

    while await recalculate_queued(incentives.context, incentives.clock.now()):
        pass
