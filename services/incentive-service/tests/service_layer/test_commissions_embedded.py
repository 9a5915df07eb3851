"""Commissions through the service layer alone: the embedded SQLite database and the in-process bus (no
PostgreSQL, no RabbitMQ, no HTTP), deal events handed to the handlers and the recalculation worker's ticks run
by the test, so the crediting and clawback rules run in a few seconds. Amounts computed by hand.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from incentive_service.adapters.repository import sources as repo
from incentive_service.bootstrap import build_definition
from incentive_service.config import Settings
from incentive_service.service_layer.plans import create_plan
from incentive_service.service_layer.statements import recalculate_queued
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    EventData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadReopenedV1,
    LeadSnapshot,
    LeadWonV1,
    make_event,
)
from salesflow_shared.testing import EmbeddedService, embedded_service, embedded_settings

ORG = "org-a"
Q1 = date(2027, 1, 1)
PLAN = {"name": "AE 2027", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
        "coverage": {"participants": ["ann", "bob"]}, "base_rate": "0.10", "clawback": {"days": 30}}


@pytest.fixture
async def embedded(tmp_path) -> AsyncIterator[EmbeddedService]:
    settings = embedded_settings(Settings, tmp_path / "incentive-service.db", recalculation_interval_s=0,
                                 program_finish_interval_s=0)
    clock = ManualClock(datetime(2027, 2, 15, 9, 0, tzinfo=UTC))
    async with embedded_service(build_definition(settings, clock), clock) as service:
        async with service.uow() as uow:
            await create_plan(uow, ORG, PLAN, "mia", clock.now())
            await uow.commit()
        yield service


async def tell(svc: EmbeddedService, data: EventData, lead_id: str, version: int) -> Any:
    return await svc.dispatch(make_event(data, org_id=ORG, subject_id=lead_id, subject_version=version))


async def won_by(svc: EmbeddedService, lead_id: str, closer: str, value: str, won_at: datetime) -> Any:
    """A deal through the normal events: created, assigned to the closer, won by the closer."""
    await tell(svc, LeadCreatedV1(lead=LeadSnapshot(lead_id=lead_id, value=Decimal(value), currency="EUR")),
               lead_id, 1)
    await tell(svc, LeadAssignedV1(lead_id=lead_id, owner_id=closer, reason="round robin"), lead_id, 2)
    return await tell(svc, LeadWonV1(lead_id=lead_id, pipeline_id="p1", value=Decimal(value), currency="EUR",
                                     owner_id=closer, won_at=won_at), lead_id, 1)


async def statement(svc: EmbeddedService, participant: str) -> tuple[Any, list[tuple[str, str, Decimal]]]:
    """The participant's Q1 statement after the recalculation worker caught up, with its lines
    (kind, lead, amount)."""
    while await recalculate_queued(svc.context, svc.clock.now()):
        pass
    async with svc.session() as session:
        row = await repo.latest_statement(session, ORG, participant, Q1)
        lines = await repo.statement_lines_of(session, ORG, row.statement_id) if row is not None else []
    return row, [(line.kind, line.lead_id, Decimal(line.amount)) for line in lines]


async def test_a_won_deal_pays_its_closer_the_plan_rate_once(embedded):
    svc = embedded
    won = await won_by(svc, "lead-1", "ann", "40000", datetime(2027, 1, 10, 15, tzinfo=UTC))
    await svc.dispatch(won)  # redelivered
    # The customer is handed to an account manager after the win: the closer keeps the credit.
    await tell(svc, LeadAssignedV1(lead_id="lead-1", owner_id="bob", previous_owner_id="ann", reason="hand-over",
                                   trigger="lead_won"), "lead-1", 3)

    ann, lines = await statement(svc, "ann")
    assert lines == [("commission", "lead-1", Decimal("4000.00"))]  # 10 % of 40,000
    assert Decimal(ann.total) == Decimal("4000.00") and ann.plan_currency == "EUR"
    bob, bob_lines = await statement(svc, "bob")
    assert (Decimal(bob.total), bob_lines) == (Decimal("0.00"), [])  # nothing credited to the account manager


async def test_a_deal_reopened_within_the_clawback_window_pays_nothing_and_one_reopened_after_it_stays_paid(
        embedded):
    svc = embedded
    await won_by(svc, "lead-kept", "ann", "5000", datetime(2027, 1, 5, 12, tzinfo=UTC))
    await won_by(svc, "lead-clawed", "ann", "10000", datetime(2027, 1, 12, 12, tzinfo=UTC))
    _, before = await statement(svc, "ann")
    assert before == [("commission", "lead-kept", Decimal("500.00")),
                      ("commission", "lead-clawed", Decimal("1000.00"))]

    # lead-clawed reopened 20 days after its win (within 30): clawed back; lead-kept 40 days after: stays paid.
    await tell(svc, LeadReopenedV1(lead_id="lead-clawed", pipeline_id="p1",
                                   reopened_at=datetime(2027, 2, 1, 12, tzinfo=UTC)), "lead-clawed", 2)
    await tell(svc, LeadReopenedV1(lead_id="lead-kept", pipeline_id="p1",
                                   reopened_at=datetime(2027, 2, 14, 12, tzinfo=UTC)), "lead-kept", 2)

    ann, after = await statement(svc, "ann")
    assert sorted(after) == [("clawback", "lead-clawed", Decimal("0.00")),
                             ("commission", "lead-kept", Decimal("500.00"))]
    assert Decimal(ann.total) == Decimal("500.00")
    assert (ann.version, ann.revision) == (1, 2)  # nobody reviewed it yet: recomputed in place, not versioned
