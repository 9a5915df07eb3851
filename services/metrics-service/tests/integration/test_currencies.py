"""One currency model: the org's reporting currency, dated rates set by admins, each amount converted at the rate
in force on its date, every money figure with its currency, what cannot be converted named and never summed.

Org-x reports in EUR. Rates (CSV upload): 1 USD = 0.90 EUR from Apr 1, 0.80 EUR from Apr 10; no GBP rate.
Q2 2026 wins, every number by hand (the clock says 2026-04-15):
  M1 alice  4,000.25 EUR  Apr 5                                         → 4,000.25 EUR
  M2 alice  1,000.00 USD  Apr 6  (0.90)                                 →   900.00 EUR
  M3 bob    1,000.00 USD  Apr 12 (0.80)                                 →   800.00 EUR
  M4 alice    500.00 GBP  Apr 7  (no rate)                              → not converted, named
  M5 carol  won Apr 9 without any value                                 →     0.00 (ranks last)
  M6 alice  open, 1,000 USD in s1 (p 0.1), expected close May 1         → today's rate 0.80: 800.00, weighted 80.00
Quotas: alice Q2 5,000 USD; bob April (a month quota) 700 EUR.
"""
from __future__ import annotations

import json
from datetime import date

import sqlalchemy as sa
from metrics_testkit import NOW, ORG, History, T, all_reports, delivery_order, feed, get, lead, metrics_settings, pick

from metrics_service.entrypoints.http import create_app
from metrics_service.service_layer.projector import rebuild_read_models
from metrics_service.service_layer.quota_milestones import announce_reached_quotas
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import auth_headers, running_app

ADMIN = auth_headers(ORG, "admin", "root")
Q2 = {"from": "2026-04-01T00:00:00Z", "to": "2026-07-01T00:00:00Z"}
RATES_CSV = "base_currency,quote_currency,rate,valid_from\nUSD,EUR,0.90,2026-04-01\nUSD,EUR,0.80,2026-04-10\n"
CHECKED = [("production", Q2), ("forecast", {"period": "quarter"}), ("quota-attainment", {}),
           ("leaderboard", {"period": "quarter", "metric": "revenue"}),
           ("leaderboard", {"period": "quarter", "metric": "quota_attainment"}), ("deal-size", Q2)]


def multi_currency_history() -> History:
    h = History()
    lead(h, "M1", "alice", "p1", "north", T(4, 1), product_line="saas", source="web", value="4000.25", currency="EUR")
    h.won("M1", T(4, 5), "p1", "4000.25", currency="EUR")
    lead(h, "M2", "alice", "p1", "north", T(4, 1), product_line="saas", source="web", value="1000")
    h.won("M2", T(4, 6), "p1", "1000")
    lead(h, "M3", "bob", "p1", "south", T(4, 2), product_line="saas", source="web", value="1000")
    h.won("M3", T(4, 12), "p1", "1000")
    lead(h, "M4", "alice", "p1", "north", T(4, 2), product_line="saas", source="web", value="500", currency="GBP")
    h.won("M4", T(4, 7), "p1", "500", currency="GBP")
    lead(h, "M5", "carol", "p2", "north", T(4, 3), product_line="saas", source="web", value=None)
    h.won("M5", T(4, 9), "p2", None)
    lead(h, "M6", "alice", "p1", "north", T(4, 3), product_line="saas", source="web", value="1000",
         expected_close=date(2026, 5, 1))
    h.stage("M6", T(4, 3), "s1", "entry")
    return h


async def published(app, event_type: str) -> list[dict]:
    async with app.state.context.database.session() as session:
        rows = (await session.execute(sa.select(outbox_table.c.payload).where(
            outbox_table.c.event_type == event_type).order_by(outbox_table.c.id))).scalars().all()
    return [json.loads(r)["data"] for r in rows]


async def test_every_money_figure_is_converted_at_its_dates_rate_and_carries_its_currency(database_url):
    settings = metrics_settings(database_url).model_copy(update={"quota_milestone_interval_s": 0})
    app = create_app(settings, clock=lambda: NOW)
    async with running_app(app) as client:
        await feed(app, delivery_order(multi_currency_history().events, seed=3))
        default = await client.get("/v1/reporting-currency", headers=ADMIN)
        assert default.json() == {"currency": "USD"} and default.headers["ETag"] == '"0"'  # never set: version 0
        unconditional = await client.put("/v1/reporting-currency", json={"currency": "eur"}, headers=ADMIN)
        assert unconditional.status_code == 428
        put = await client.put("/v1/reporting-currency", json={"currency": "eur"},
                               headers={**ADMIN, "If-Match": default.headers["ETag"]})
        assert put.status_code == 200 and put.json()["currency"] == "EUR", put.text
        assert put.headers["ETag"] == '"1"'
        stale = await client.put("/v1/reporting-currency", json={"currency": "GBP"},
                                 headers={**ADMIN, "If-Match": default.headers["ETag"]})
        assert stale.status_code == 412  # another admin's change is not overwritten unseen
        assert await published(app, "ReportingCurrencySet") == [{"currency": "EUR"}]
        # rates: a bad file is refused whole, naming the row and field; then the good one, once
        bad_rows = "USD,XYZ,1.2,2026-04-01\nUSD,EUR,x,2026-05-01\n"
        bad = await client.post("/v1/exchange-rates/csv", content=RATES_CSV + bad_rows,
                                headers={**ADMIN, "Content-Type": "text/csv"})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert {e["field"] for e in bad.json()["errors"]} == {"rows[3].quote_currency", "rows[4].rate"}
        for _ in range(2):  # the second upload changes nothing and publishes nothing
            up = await client.post("/v1/exchange-rates/csv", content=RATES_CSV,
                                   headers={**ADMIN, "Content-Type": "text/csv"})
            assert up.status_code == 200, up.text
        assert up.json()["changed"] == 0
        assert [(e["base_currency"], e["quote_currency"], e["rate"], e["valid_from"])
                for e in await published(app, "ExchangeRateSet")] == [
            ("USD", "EUR", "0.90", "2026-04-01"), ("USD", "EUR", "0.80", "2026-04-10")]
        refused = await client.post("/v1/exchange-rates", json={"rates": [
            {"base_currency": "XYZ", "quote_currency": "EUR", "rate": "1", "valid_from": "2026-04-01"}]},
                                    headers=ADMIN)
        assert refused.status_code == 422 and "base_currency" in refused.text
        for scope, scope_id, period, start, amount, currency in (
                ("rep", "alice", "quarter", "2026-04-01", "5000", "USD"),
                ("rep", "bob", "month", "2026-04-01", "700", "EUR")):
            created = await client.post("/v1/quotas", headers=ADMIN, json={
                "scope": scope, "scope_id": scope_id, "period": period, "period_start": start, "amount": amount,
                "currency": currency})
            assert created.status_code == 201, created.text
        assert (await client.post("/v1/quotas", headers=ADMIN, json={
            "scope": "rep", "scope_id": "carol", "period": "quarter", "period_start": "2026-04-01", "amount": "1",
            "currency": "ABC"})).status_code == 422
        assert [(e["scope_id"], e["amount"], e["currency"], e["period_end"], e["version"])
                for e in await published(app, "QuotaSet")] == [("alice", "5000.00", "USD", "2026-07-01", 1),
                                                               ("bob", "700.00", "EUR", "2026-05-01", 1)]
        await check(client)
        # QuotaReached agrees with the report, each in the quota's currency
        assert await announce_reached_quotas(app.state.context, NOW, 7) == 2
        assert sorted((e["scope_id"], e["attained"], e["currency"]) for e in await published(app, "QuotaReached")) == [
            ("alice", "5444.72", "USD"), ("bob", "800.00", "EUR")]
        # a forecast is frozen in the reporting currency; a period that has ended is refused
        frozen = await client.post("/v1/forecasts/snapshots", json={"period": "quarter"}, headers=ADMIN)
        org = next(s for s in frozen.json()["items"] if s["scope"] == "org")
        assert (org["currency"], org["won_so_far"], org["weighted_by_stage"]) == ("EUR", "5700.25", "5780.25")
        late = await client.post("/v1/forecasts/snapshots", json={"period": "month", "date": "2026-03-10"},
                                 headers=ADMIN)
        assert late.status_code == 422 and "date" in late.text

        incremental = await all_reports(client, CHECKED)
        await rebuild_read_models(app.state.context.database, ORG)
        assert await all_reports(client, CHECKED) == incremental


async def check(client) -> None:
    # Production Q2: 5 wins; 4,000.25 + 900.00 + 800.00 = 5,700.25 EUR; 500 GBP named, not added.
    [row] = (await get(client, "production", **Q2))["rows"]
    assert (row["deals_won"], row["revenue"], row["currency"]) == (5, "5700.25", "EUR")
    assert row["revenue_by_currency"] == [{"currency": "EUR", "amount": "4000.25"},
                                          {"currency": "GBP", "amount": "500.00"},
                                          {"currency": "USD", "amount": "2000.00"}]
    assert row["revenue_unconverted"] == [{"currency": "GBP", "amount": "500.00"}]
    # Forecast Q2: won 5,700.25; open M6 1,000 USD at today's 0.80 = 800.00, weighted 100 USD = 80.00;
    # no win or loss before Apr 1 → historical win rate 0 (not null).
    [row] = (await get(client, "forecast", period="quarter"))["rows"]
    assert pick([row], "currency", "won_so_far", "open_pipeline", "weighted_by_stage", "historical_win_rate_pct",
                "weighted_by_history", "best_case") == [
        ("EUR", "5700.25", "800.00", "5780.25", 0.0, "5700.25", "6500.25")]
    assert row["unconverted"] == [{"currency": "GBP", "amount": "500.00"}]
    # Quota attainment with no period: each quota's own period containing today. bob's April quota 700 EUR:
    # M3 800 EUR → 114.29 %. alice's Q2 quota in USD: M2 1,000 + M1 4,000.25 / 0.90 (the USD→EUR rate of Apr 5,
    # inverted) = 5,444.72 → 108.89 %; her GBP win is named.
    rows = (await get(client, "quota-attainment"))["rows"]
    assert pick(rows, "scope_id", "period", "currency", "actual", "attainment_pct") == [
        ("bob", "month", "EUR", "800.00", 114.29), ("alice", "quarter", "USD", "5444.72", 108.89)]
    assert rows[1]["actual_unconverted"] == [{"currency": "GBP", "amount": "500.00"}]
    # Leaderboard Q2 by revenue in EUR: alice 4,900.25, bob 800.00, carol's valueless win 0.00 last.
    rows = (await get(client, "leaderboard", period="quarter", metric="revenue"))["rows"]
    assert pick(rows, "rank", "rep_id", "revenue", "currency") == [
        (1, "alice", "4900.25", "EUR"), (2, "bob", "800.00", "EUR"), (3, "carol", "0.00", "EUR")]
    assert rows[0]["revenue_unconverted"] == [{"currency": "GBP", "amount": "500.00"}]
    rows = (await get(client, "leaderboard", period="quarter", metric="quota_attainment"))["rows"]
    assert pick(rows, "rank", "rep_id", "quota_attainment", "currency") == [(1, "alice", 108.89, "USD")]
