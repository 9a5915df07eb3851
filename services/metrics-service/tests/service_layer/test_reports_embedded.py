"""Reports through the service layer alone: a handful of events handed to metrics-service's handlers (they append
to its event log), the projector applied to the read models, then the funnel, win rate, deal size and revenue
computed on the embedded SQLite database (no PostgreSQL, no RabbitMQ, no HTTP). Every figure is counted by hand.

Org "org-m", pipeline P1 (s1 Qualify → s2 Discover → s3 Propose), reps alice and bob of team T1, January 2026:

  L1 alice  1000 USD  s1 Jan 5, s2 Jan 7, s3 Jan 10   won Jan 15 at 1200 USD
  L2 bob    2000 EUR  s1 Jan 6, s2 Jan 8              won Jan 20 at 2000 EUR (1 EUR = 1.10 USD from Jan 1)
  L3 alice   500 USD  s1 Jan 7, s2 Jan 9              lost Jan 12
  L4 bob     800 USD  s1 Jan 8                        open
  L5 alice  3000 USD  s1 Jan 9, s2 Jan 11, s3 Jan 14  won Jan 25 at 3000 USD
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import pytest_asyncio
from metrics_testkit import STAGES, History, T, lead

from metrics_service.adapters.reports import Filters
from metrics_service.bootstrap import build_definition
from metrics_service.config import Settings
from metrics_service.service_layer import currencies
from metrics_service.service_layer.projector import project_all
from metrics_service.service_layer.reports import funnel, outcomes
from metrics_service.service_layer.reports.revenue import production
from salesflow_shared.clock import ManualClock
from salesflow_shared.currency import Rate
from salesflow_shared.testing import EmbeddedService, embedded_service, embedded_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORG = "org-m"
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def january_history() -> History:
    h = History(ORG)
    for lead_id, rep, value, currency, created in (("L1", "alice", "1000", "USD", T(1, 5)),
                                                    ("L2", "bob", "2000", "EUR", T(1, 6)),
                                                    ("L3", "alice", "500", "USD", T(1, 7)),
                                                    ("L4", "bob", "800", "USD", T(1, 8)),
                                                    ("L5", "alice", "3000", "USD", T(1, 9))):
        lead(h, lead_id, rep, "p1", "EMEA", created, product_line="saas", source="web", value=value,
             currency=currency)
        h.stage(lead_id, created, "s1", "entry")
    h.stage("L1", T(1, 7), "s2", "goal_met")
    h.stage("L1", T(1, 10), "s3", "goal_met")
    h.stage("L2", T(1, 8), "s2", "goal_met")
    h.stage("L3", T(1, 9), "s2", "manual")
    h.stage("L5", T(1, 11), "s2", "goal_met")
    h.stage("L5", T(1, 14), "s3", "goal_met")
    h.won("L1", T(1, 15), "p1", "1200")
    h.lost("L3", T(1, 12), "p1")
    h.won("L2", T(1, 20), "p1", "2000", currency="EUR")
    h.won("L5", T(1, 25), "p1", "3000")
    return h


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def metrics(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedService]:
    settings = embedded_settings(Settings, tmp_path_factory.mktemp("embedded") / "metrics-service.db")
    clock = ManualClock(NOW)
    async with embedded_service(build_definition(settings, clock), clock) as service:
        history = january_history()
        for envelope in history.events:
            await service.dispatch(envelope)
        await service.dispatch(history.events[0])  # a redelivery: logged once, counted once
        async with service.uow() as uow:
            await currencies.set_rates(uow, ORG, [Rate("EUR", "USD", date(2026, 1, 1), Decimal("1.10"))])
            await uow.commit()
        await project_all(service.context.database)
        yield service


def january(**filters: object) -> Filters:
    return Filters(org_id=ORG, from_ts=T(1, 1).timestamp(), to_ts=T(2, 1).timestamp(), now=NOW,
                           **filters)  # type: ignore[arg-type]


async def test_the_funnel_counts_each_stage_reached_and_its_conversion_from_the_one_before(metrics):
    async with metrics.session() as session:
        rows = await funnel.funnel(session, january())
    # Reached: s1 by all five, s2 by L1 L2 L3 L5 (4 of 5 = 80 %), s3 by L1 L5 (2 of 4 = 50 %; 2 of 5 = 40 %).
    assert [(r["stage_id"], r["stage_name"], r["reached"], r["conversion_pct"], r["conversion_from_first_pct"])
            for r in rows] == [("s1", STAGES["s1"][1], 5, None, 100.0), ("s2", STAGES["s2"][1], 4, 80.0, 80.0),
                               ("s3", STAGES["s3"][1], 2, 50.0, 40.0)]


async def test_the_win_rate_is_won_over_decided_for_the_org_and_per_rep(metrics):
    async with metrics.session() as session:
        org = await outcomes.win_rate(session, january())
        per_rep = await outcomes.win_rate(session, january(group_by="rep"))
    # Decided: L1 L2 L5 won, L3 lost (L4 is open): 3 / 4 = 75 %. Alice 2 won, 1 lost; Bob 1 won.
    assert [(r["won"], r["lost"], r["win_rate_pct"]) for r in org] == [(3, 1, 75.0)]
    assert sorted((r["group"], r["won"], r["lost"], r["win_rate_pct"]) for r in per_rep) == [
        ("alice", 2, 1, 66.67), ("bob", 1, 0, 100.0)]


async def test_deal_size_is_per_currency_and_revenue_converts_at_the_rate_of_the_day(metrics):
    async with metrics.session() as session:
        sizes = await outcomes.deal_size(session, january())
        revenue, _ = await production(session, january())
    # USD wins 1200 and 3000: total 4200, mean = median 2100. EUR: the one 2000 win.
    assert sorted((r["currency"], r["deals"], r["total"], r["mean"], r["median"]) for r in sizes) == [
        ("EUR", 1, "2000.00", "2000.00", "2000.00"), ("USD", 2, "4200.00", "2100.00", "2100.00")]
    # Revenue in the reporting currency (USD): 4200 + 2000 × 1.10 = 6400 from 3 wins of the 5 leads created.
    [row] = revenue
    assert (row["leads_generated"], row["deals_won"], row["revenue"], row["currency"]) == (5, 3, "6400.00", "USD")
    assert row["revenue_by_currency"] == [{"currency": "EUR", "amount": "2000.00"},
                                          {"currency": "USD", "amount": "4200.00"}]
    assert row["revenue_unconverted"] == []
