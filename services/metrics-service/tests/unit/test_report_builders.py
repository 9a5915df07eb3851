"""The reports' SQL builders (adapters/reports/): for given filters, the conditions each dialect's statement applies
and the parameters it binds; then a few builders run against an in-memory SQLite database holding a handful of
leads whose figures are computed by hand below. No server."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from metrics_service.adapters.orm import m_leads, m_rep_daily, m_reps, m_stages, m_timeline
from metrics_service.adapters.reports import (
    DEFINITIONS,
    activities,
    adoption,
    coaching,
    durations,
    fetch,
    forecast,
    funnel,
    names_of_reps,
    outcomes,
    revenue,
    stalled,
)
from metrics_service.adapters.reports.sql import Filters, Sql, duration_months, stats_sql, stays_from
from metrics_service.domain.periods import DAY_S, month_number

APR = datetime(2026, 4, 1, tzinfo=UTC).timestamp()
JUL = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
MID_APR = datetime(2026, 4, 15, 12, tzinfo=UTC).timestamp()
QUARTER = Filters(org_id="org-x", from_ts=APR, to_ts=JUL)
REP = Filters(org_id="org-x", from_ts=APR, to_ts=JUL, pipeline_id="p1", rep_id="alice")


# ------------------------------------------------------------------ filters
def test_lead_conditions_bind_the_org_the_period_the_pipeline_and_the_rep_credited_by_the_basis():
    where = REP.credited("credit").lead_where("closed_ts")
    assert "l.org_id = :org" in where.text
    assert "l.closed_ts >= :from_ts" in where.text and "l.closed_ts < :to_ts" in where.text
    assert "l.closed_ts IS NOT NULL" in where.text
    assert "l.pipeline_id = :pipeline" in where.text
    assert "l.credit_owner_id = :me" in where.text  # a rep sees what is credited to them at the close
    assert where.params == {"org": "org-x", "from_ts": APR, "to_ts": JUL, "pipeline": "p1", "me": "alice"}
    assert "l.first_owner_id = :me" in REP.credited("first").lead_where("created_ts").text
    assert "l.owner_id = :me" in REP.lead_where(None).text


def test_filters_are_not_changed_by_building_and_bind_only_what_they_name():
    org_wide = Filters(org_id="org-x")
    where = org_wide.lead_where("closed_ts")
    assert where.params == {"org": "org-x"} and ":from_ts" not in where.text and ":me" not in where.text
    REP.credited("first").lead_where("created_ts")
    assert REP.basis == "current"  # crediting gives new filters
    assert org_wide.lead_where(None).text == "l.org_id = :org"


def test_stays_are_filtered_on_the_timeline_and_join_the_leads_only_for_groups_it_does_not_carry():
    group, source = stays_from(REP, "cohort_ts")
    assert group == "''"
    assert "JOIN m_leads" not in source.text
    assert "t.cohort_ts >= :from_ts" in source.text and "t.lead_pipeline_id = :pipeline" in source.text
    assert "t.owner_id = :me" in source.text
    assert source.params == {"org": "org-x", "from_ts": APR, "to_ts": JUL, "pipeline": "p1", "me": "alice"}
    group, source = stays_from(Filters(org_id="org-x", group_by="source"), None)
    assert group == "COALESCE(l.source, '')" and "JOIN m_leads l" in source.text
    _, theirs = stays_from(REP, "at_ts", own_only=False)
    assert ":me" not in theirs.text and "me" not in theirs.params


def test_statistics_are_ordered_set_aggregates_on_postgresql_and_window_functions_on_sqlite():
    postgres = stats_sql("SELECT g, x FROM t", ["g", "position"], "postgresql")
    assert "percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median" in postgres
    assert 'g COLLATE "C" AS g' in postgres and 'position COLLATE' not in postgres
    sqlite = stats_sql("SELECT g, x FROM t", ["g"], "sqlite")
    assert "ROW_NUMBER() OVER (PARTITION BY g ORDER BY x)" in sqlite and "percentile" not in sqlite


def test_the_rollups_serve_only_whole_months_on_postgresql():
    assert duration_months("postgresql", QUARTER) == (month_number(APR), month_number(JUL))
    assert duration_months("sqlite", QUARTER) is None
    assert duration_months("postgresql", Filters(org_id="org-x", from_ts=MID_APR, to_ts=JUL)) is None


# ------------------------------------------------------------------ one family at a time
def test_win_rate_counts_closes_credited_at_the_close():
    query = outcomes.win_rate(Filters(org_id="org-x", from_ts=APR, group_by="rep"))
    assert "COALESCE(l.credit_owner_id, '') AS g" in query.text
    assert "l.outcome IN ('won', 'lost')" in query.text and "l.closed_ts >= :from_ts" in query.text
    assert query.params == {"org": "org-x", "from_ts": APR}


def test_deal_size_keeps_exact_decimals_with_the_window_form_on_every_dialect():
    query = outcomes.deal_size(QUARTER)
    assert "ROW_NUMBER()" in query.text and "percentile_cont" not in query.text
    assert query.text.endswith(" ORDER BY 1, 2")


def test_the_funnel_counts_cohorts_from_the_reach_rollup_for_whole_months_else_from_the_leads():
    months = (month_number(APR), month_number(JUL))
    by_month = funnel.reached(QUARTER, months)
    assert "FROM m_reach_months m" in by_month.text and "m.month >= :first_month" in by_month.text
    assert by_month.params == {"org": "org-x", "first_month": months[0], "end_month": months[1]}
    by_lead = funnel.reached(REP, None)
    assert "l.pipeline_entered_ts >= :from_ts" in by_lead.text and "l.first_owner_id = :me" in by_lead.text
    assert "m_reach_months" not in by_lead.text
    per_stage = funnel.stage_times(QUARTER, "postgresql")
    assert "CROSS JOIN LATERAL" in per_stage.text and "t.cohort_ts >= :from_ts" in per_stage.text
    assert "CROSS JOIN LATERAL" not in funnel.stage_times(QUARTER, "sqlite").text


def test_the_day_of_a_win_is_floored_on_postgresql_and_truncated_on_sqlite():
    postgres = revenue.won_by_currency_and_day(QUARTER, "postgresql", "EUR")
    assert f"CAST(FLOOR(l.closed_ts / {DAY_S}) AS INTEGER)" in postgres.text
    assert postgres.params["target"] == "EUR"
    assert "FLOOR" not in revenue.won_by_currency_and_day(QUARTER, "sqlite", "EUR").text


def test_the_history_of_a_forecast_comes_from_the_months_before_the_period_or_from_the_leads():
    by_month = forecast.history(QUARTER, APR, JUL, by_month=True)
    assert "m.month < :first_month" in by_month.text and by_month.params["first_month"] == month_number(APR)
    by_lead = forecast.history(REP, APR, JUL, by_month=False)
    assert "l.closed_ts < :ps" in by_lead.text and by_lead.params["ps"] == APR
    assert "l.credit_owner_id = :me" in by_lead.text
    assert forecast.open_pipeline(REP, APR, JUL).params == {"org": "org-x", "pipeline": "p1", "me": "alice",
                                                            "ps": APR, "pe": JUL}


def test_activities_count_utc_days_and_per_pipeline_from_the_activities():
    daily = activities.daily_totals(Filters(org_id="org-x", from_ts=MID_APR, to_ts=JUL, rep_id="alice"))
    assert daily.params == {"org": "org-x", "from_day": int(MID_APR // DAY_S), "to_day": int(JUL // DAY_S),
                            "me": "alice"}
    per_pipeline = activities.pipeline_totals(Filters(org_id="org-x", from_ts=MID_APR, pipeline_id="p1"))
    assert per_pipeline.params == {"org": "org-x", "pipeline": "p1", "from_day_ts": (MID_APR // DAY_S) * DAY_S}


def test_compliance_joins_whole_months_of_the_exit_rollup_with_the_stays_at_the_edges():
    split = adoption.compliance(Filters(org_id="org-x", from_ts=MID_APR, to_ts=JUL), by_month=True)
    assert "FROM m_exit_months m" in split.text and "UNION ALL" in split.text
    assert split.params["first_month"] == month_number(APR) + 1 and split.params["from_ts"] == MID_APR
    assert "m_exit_months" not in adoption.compliance(QUARTER, by_month=False).text


def test_coaching_compares_every_rep_of_the_team_even_for_a_rep():
    assert ":me" not in coaching.per_rep(REP, "sqlite").text
    assert "GROUPING SETS" in coaching.both_levels(REP).text


def test_stalled_deals_bind_the_thresholds_as_arrays_in_key_order():
    query = stalled.most_stalled(REP, 1000.0, {("t2", "p1", "s1"): 5.0, ("t1", "p1", "s2"): 7.0})
    assert query.params["p_team"] == ["t1", "t2"] and query.params["p_p75"] == [7.0, 5.0]
    assert query.params["now"] == 1000.0 and query.params["me"] == "alice"
    assert " AND l.owner_id = :me AND l.pipeline_id = :pipeline AND l.owner_id IS NOT NULL" in query.text
    assert ":me" not in stalled.unowned(REP, 1000.0).text


def test_every_report_has_its_definition():
    assert {"funnel", "win_rate", "deal_size", "sales_cycle", "response_time", "conversion", "activities",
            "production", "forecast", "forecast_accuracy", "quota_attainment", "adoption", "coaching",
            "stalled_deals", "handovers", "leaderboard"} == set(DEFINITIONS)


# ------------------------------------------------------------------ against SQLite, computed by hand
DAY = 86400.0
# org-x, pipeline p1 (s1 position 1, s2 position 2, s3 position 3 = ask); all created and closed in Q2:
#   A alice: created Apr 1, first stage s1, reached s3 (ask on Apr 5), won Apr 11 at 1,000 USD → cycle 10 days
#   B alice: created Apr 2, s1 → s2, lost Apr 6                                               → decided, no ask
#   C bob:   created Apr 3, s1 → s3 (ask Apr 4), won Apr 9 at 3,000 USD, now owned by dave   → cycle 6 days
#   D bob:   created Apr 4, s1 only, open
#   E carol: created Mar 1 (before the quarter), won Apr 2 at 500 EUR                       → cycle 32 days
LEADS = [
    ("A", "alice", "alice", "alice", 1, 3, APR, APR + 4 * DAY, "won", APR + 10 * DAY, "1000", "USD"),
    ("B", "alice", "alice", "alice", 1, 2, APR + DAY, None, "lost", APR + 5 * DAY, None, None),
    ("C", "dave", "bob", "bob", 1, 3, APR + 2 * DAY, APR + 3 * DAY, "won", APR + 8 * DAY, "3000", "USD"),
    ("D", "bob", "bob", "bob", 1, 1, APR + 3 * DAY, None, "open", None, None, None),
    ("E", "carol", "carol", "carol", 1, 2, APR - 31 * DAY, None, "won", APR + DAY, "500", "EUR"),
]


@pytest.fixture
async def session():
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: m_leads.metadata.create_all(
            c, tables=[m_leads, m_stages, m_reps, m_rep_daily, m_timeline]))
        await conn.execute(sa.insert(m_stages), [
            {"org_id": "org-x", "pipeline_id": "p1", "stage_id": s, "name": s, "position": n, "is_ask": n == 3}
            for s, n in (("s1", 1), ("s2", 2), ("s3", 3))])
        await conn.execute(sa.insert(m_reps), [{"org_id": "org-x", "rep_id": r, "name": r.title(), "team_id": t}
                                               for r, t in (("alice", "T1"), ("bob", "T1"), ("carol", "T2"))])
        await conn.execute(sa.insert(m_leads), [
            {"org_id": "org-x", "lead_id": lead, "is_created": True, "owner_id": owner, "credit_owner_id": credit,
             "first_owner_id": first, "pipeline_id": "p1", "first_position": first_pos, "max_position": max_pos,
             "created_ts": created, "pipeline_entered_ts": created, "ask_entered_ts": ask, "outcome": outcome,
             "closed_ts": closed, "won_value": None if value is None else Decimal(value), "won_currency": currency}
            for lead, owner, credit, first, first_pos, max_pos, created, ask, outcome, closed, value, currency
            in LEADS])
        # another org's win, never counted
        await conn.execute(sa.insert(m_leads).values(
            org_id="org-y", lead_id="Z", credit_owner_id="alice", outcome="won", closed_ts=APR + DAY,
            created_ts=APR, won_value=Decimal(99), won_currency="USD"))
    async with AsyncSession(engine) as s:
        yield s
    await engine.dispose()


def as_dicts(rows: list) -> list[dict]:
    """The typed rows `fetch` reads, as {column: value} for the checks below."""
    return [r._asdict() for r in rows]


async def test_win_rate_on_sqlite(session):
    rows = as_dicts(await fetch(session, outcomes.win_rate(Filters(org_id="org-x", from_ts=APR, to_ts=JUL,
                                                                   group_by="rep"))))
    # alice won A and lost B; bob (credited at the close) won C; carol won E
    assert [(r["g"], r["won"], r["lost"]) for r in rows] == [("alice", 1, 1), ("bob", 1, 0), ("carol", 1, 0)]
    mine = as_dicts(await fetch(session, outcomes.win_rate(Filters(org_id="org-x", from_ts=APR, to_ts=JUL,
                                                                   rep_id="bob"))))
    assert [(r["won"], r["lost"]) for r in mine] == [(1, 0)]


async def test_deal_size_per_currency_on_sqlite(session):
    rows = as_dicts(await fetch(session, outcomes.deal_size(QUARTER)))
    by_currency = {r["currency"]: r for r in rows}
    assert by_currency["USD"]["n"] == 2 and Decimal(str(by_currency["USD"]["total"])) == Decimal(4000)
    assert Decimal(str(by_currency["USD"]["median"])) == Decimal(2000)  # mean of the two middle values
    assert by_currency["EUR"]["n"] == 1 and Decimal(str(by_currency["EUR"]["median"])) == Decimal(500)


async def test_conversion_on_sqlite(session):
    (row,) = as_dicts(await fetch(session, outcomes.conversion(QUARTER)))  # A, B, C, D created in Q2 (E in March)
    # qualified: left the first stage or won (A, B, C); proposals: reached the ask position 3 (A, C); won: A, C
    assert (row["created"], row["qualified"], row["proposals"], row["won"]) == (4, 3, 2, 2)


async def test_sales_cycle_and_ask_to_decision_on_sqlite(session):
    cycles = {r["g"]: r for r in as_dicts(await fetch(session, durations.sales_cycles(
        Filters(org_id="org-x", from_ts=APR, to_ts=JUL, group_by="rep"), "sqlite")))}
    assert {g: (r["n"], r["mean"] / DAY) for g, r in cycles.items()} == {
        "alice": (1, 10.0), "bob": (1, 6.0), "carol": (1, 32.0)}
    (asks,) = as_dicts(await fetch(session, durations.ask_to_decision(QUARTER, "sqlite")))
    # A: Apr 5 → Apr 11 = 6 days, C: Apr 4 → Apr 9 = 5 days; B and E never entered the ask stage
    assert (asks["n"], asks["median"] / DAY) == (2, 5.5)


async def test_handovers_on_sqlite(session):
    (row,) = as_dicts(await fetch(session, outcomes.handovers(QUARTER)))  # C, won by bob, is dave's customer now
    assert (row["g"], row["currency"], row["customers"], row["closers"]) == ("dave", "USD", 1, 1)
    assert Decimal(str(row["won_value"])) == Decimal(3000)


async def test_wins_per_currency_and_day_on_sqlite(session):
    rows = as_dicts(await fetch(session, revenue.won_by_currency_and_day(QUARTER, "sqlite", "USD")))
    # USD wins need no rate (day 0); the EUR win is converted at its day's rate: day number of Apr 2
    assert sorted((r["currency"], r["day"], r["n"], Decimal(str(r["amount"]))) for r in rows) == [
        ("EUR", int((APR + DAY) // DAY_S), 1, Decimal(500)), ("USD", 0, 2, Decimal(4000))]


async def test_rep_names_on_sqlite(session):
    assert await names_of_reps(session, "org-x", {"alice", "carol", "nobody", ""}) == {
        "alice": "Alice", "carol": "Carol"}
    assert await names_of_reps(session, "org-x", set()) == {}


class Figures(NamedTuple):
    label: str
    count: int
    note: str = "none"


async def test_fetch_reads_each_column_into_the_field_of_its_name(session):
    # the columns in another order than the fields, and one no field names: matched by name, the extra not read
    rows = await fetch(session, Sql("SELECT 'n' AS note, 7 AS count, 'x' AS other, 'a' AS label").read_as(Figures))
    assert rows == [Figures(label="a", count=7, note="n")]
    # a trailing field with a default may have no column: it keeps its default
    assert await fetch(session, Sql("SELECT 7 AS count, 'a' AS label").read_as(Figures)) == [Figures("a", 7)]
    # a statement without a column another field names is refused, not read into the wrong field
    with pytest.raises(LookupError, match="no column count"):
        await fetch(session, Sql("SELECT 'a' AS label, 7 AS n").read_as(Figures))
