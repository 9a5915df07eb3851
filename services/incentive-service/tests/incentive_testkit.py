"""Helpers for incentive-service's tests: a running service with a fixed clock on the real PostgreSQL and
RabbitMQ, publishing events to it as the other services would, and reading its outbox."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from incentive_service.config import Settings
from incentive_service.entrypoints.http import create_app
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import ServiceUnderTest, service_test_settings

NOW = datetime(2027, 2, 15, 9, 0, tzinfo=UTC)
ORG = "org-a"


def build_app(database_url: str, amqp_url: str, namespace: str, clock: ManualClock, **overrides: Any):
    overrides.setdefault("recalculation_interval_s", 0)  # tests recompute by hand unless they say otherwise
    overrides.setdefault("db_pool_size", 3)  # the PostgreSQL server is shared with the other services' tests
    settings = service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url, namespace=namespace,
                                     **overrides)
    return create_app(settings, clock=clock)


class Incentives(ServiceUnderTest):
    """One running incentive-service (salesflow_shared.testing.ServiceUnderTest)."""

    async def payee_if_match(self, participant_id: str) -> dict[str, str]:
        """If-Match for a PUT of this payee, as a manager reads it first ("0" for a participant not known yet)."""
        read = await self.client.get(f"/v1/payees/{participant_id}", headers=self.headers())
        return {"If-Match": read.headers["ETag"] if read.status_code == 200 else '"0"'}


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
