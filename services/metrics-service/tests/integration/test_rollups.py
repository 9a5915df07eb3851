"""The monthly rollups equal a GROUP BY over the read models after any delivery order, after a rebuild, and the
reports that read them give the numbers of the row-level SQL, also over periods that are not whole months
(the exactness tests and the SQLite comparison check the whole-month reads against hand-computed numbers)."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from metrics_testkit import ORG, History, T, build_history, delivery_order, lead, other_org_history

import metrics_service
from metrics_service.adapters import rollups
from metrics_service.service_layer.projector import project_all
from salesflow_shared.migrations import _alembic_config
from salesflow_shared.testing import auth_headers

ADMIN = auth_headers(ORG, "manager", "boss")


async def feed(app, envelopes) -> None:
    for envelope in envelopes:
        await app.state.context.dispatcher.dispatch(envelope)
    await project_all(app.state.context.database)


async def adoption(client, period: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/v1/reports/adoption", params=period, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


async def rollup_rows(session) -> dict[str, list[tuple[Any, ...]]]:
    return {table.name: sorted(tuple(str(v) for v in r) for r in (await session.execute(sa.select(table))).all())
            for table in rollups.ROLLUPS}


async def recomputed(app, org: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rollups as one GROUP BY over the read models gives them (computed and rolled back)."""
    async with app.state.context.database.session() as session:
        await rollups.fill(session, org)
        rows = await rollup_rows(session)
        await session.rollback()
    return rows


async def test_rollups_equal_a_group_by_of_the_read_models_whatever_the_order_and_after_rebuild(metrics_app):
    app, client = metrics_app
    events = sorted(build_history().events, key=lambda e: e.occurred_at)
    for part in range(4):  # four projector batches, each shuffled with duplicates: later ones undo earlier rows
        await feed(app, delivery_order(events[part * len(events) // 4:(part + 1) * len(events) // 4], seed=part))
    await feed(app, other_org_history().events)
    async with app.state.context.database.session() as session:
        kept = await rollup_rows(session)
    # the history reopens a lost lead and reassigns one: rows were emptied and deleted, none is left at zero
    assert kept["m_closed_months"] and kept["m_stay_months"] and kept["m_cohort_months"]
    assert all(r[-2] != "0" for r in kept["m_closed_months"]) and all(r[-2] != "0" for r in kept["m_exit_months"])
    assert kept == await recomputed(app, ORG)  # the other org's rows are untouched by the fill of this one

    rebuilt = await client.post("/v1/reports/rebuild", headers=auth_headers(ORG, "admin"))
    assert rebuilt.status_code == 200, rebuilt.text
    async with app.state.context.database.session() as session:
        assert await rollup_rows(session) == kept


async def test_an_update_of_a_lead_changes_the_rollups_only_through_a_closed_value_or_a_missing_creation(metrics_app):
    """A LeadUpdated alone is applied without recomputing its lead when the lead has a creation time and is
    open (nothing the rollups read can change): the rollups still equal the GROUP BY after updates of an open
    lead, of a won lead's value (its closed and won rows move), and of a lead known only from an update."""
    app, _ = metrics_app
    h = History()
    lead(h, "W1", "alice", "p1", "north", T(1, 1), product_line="saas", source="web", value="1000")
    h.stage("W1", T(1, 1), "s1", "entry")
    h.won("W1", T(1, 5), "p1", None)  # no value of its own: the snapshot's counts
    lead(h, "O1", "bob", "p1", "north", T(1, 2), product_line="saas", source="web", value="700")
    h.stage("O1", T(1, 2), "s1", "entry")
    await feed(app, h.events)
    updates = History()
    updates.updated("W1", T(1, 6), 2, "edit", T(1, 1), product_line="saas", source="web", value=Decimal("2500"))
    updates.updated("O1", T(1, 6), 2, "edit", T(1, 2), product_line="saas", source="web", value=Decimal("900"))
    updates.updated("U1", T(1, 7), 2, "edit", T(1, 7), product_line="saas", source="web", value=Decimal("50"))
    for envelope in updates.events:  # each alone, as its own batch
        await feed(app, [envelope])
    async with app.state.context.database.session() as session:
        kept = await rollup_rows(session)
    assert kept == await recomputed(app, ORG)
    assert any(r[-1] == "2500.00" for r in kept["m_closed_months"]), kept["m_closed_months"]
    assert sum(int(r[-2]) for r in kept["m_created_months"]) == 3  # U1 counts from its update's creation time


async def test_periods_that_are_not_whole_months_give_the_row_level_numbers(metrics_app):
    """Adoption over Jan 5 – Mar 10 12:00 reads February from m_exit_months and the edges from the stays; the
    row-level SQL below is the reference."""
    app, client = metrics_app
    await feed(app, delivery_order(build_history().events, seed=4))
    period = {"from": "2026-01-05T00:00:00Z", "to": "2026-03-10T12:00:00Z"}
    async with app.state.context.database.session() as session:
        expected = {r.owner_id: (r.exits, r.compliant) for r in await session.execute(sa.text("""
SELECT owner_id, COUNT(*) AS exits,
       SUM(CASE WHEN (next_kind = 'stage' AND next_reason = 'goal_met') OR tasks_done OR next_kind = 'won' THEN 1
                ELSE 0 END) AS compliant
FROM m_timeline WHERE org_id = :org AND kind = 'stage' AND next_kind IN ('stage', 'won', 'lost', 'disqualified')
  AND next_ts >= extract(epoch FROM timestamptz '2026-01-05Z')
  AND next_ts < extract(epoch FROM timestamptz '2026-03-10 12:00Z')
GROUP BY owner_id"""), {"org": ORG})}
    rows = await adoption(client, period)
    assert {r["group"]: (r["stage_exits"], r["compliant_exits"]) for r in rows if r["stage_exits"]} == expected
    assert sum(e for e, _ in expected.values()) > 0
    # the same report over whole months (rollups) and month by month add up
    whole = await adoption(client, {"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"})
    months = [await adoption(client, {"from": f"2026-0{m}-01T00:00:00Z", "to": f"2026-0{m + 1}-01T00:00:00Z"})
              for m in (1, 2, 3)]
    for row in whole:
        assert row["stage_exits"] == sum(r["stage_exits"] for month in months for r in month
                                         if r["group"] == row["group"])


async def test_revision_0013_packs_the_durations_and_its_downgrade_gives_the_same_doubles_back(metrics_app):
    """Upgrading from float8[] keeps every double bit for bit (the reports' medians depend on it); the
    downgrade rebuilds each one from its bits; both equal what the projector writes."""
    app, _ = metrics_app

    def rows_of(table: str, phase: str) -> str:
        # one statement text per schema: the driver caches prepared statements by text, per connection
        return f"SELECT * FROM {table} /* {phase} */"

    await feed(app, delivery_order(build_history().events, seed=5))
    tables = ("m_stay_months", "m_cohort_months", "m_created_months")
    async with app.state.context.database.session() as session:
        packed = {t: sorted(tuple(r) for r in await session.execute(sa.text(rows_of(t, "projected")))) for t in tables}
    assert all(packed.values()) and all(isinstance(rows[0][-1], bytes) for rows in packed.values())
    location = Path(metrics_service.__file__).parent / "migrations"

    def migrate(sync_connection: Any, step: Any, target: str) -> None:
        step(_alembic_config(location, sync_connection), target)

    async with app.state.context.database.engine.begin() as connection:
        await connection.run_sync(migrate, command.downgrade, "0012")
        for table in tables:
            arrays = sorted(tuple(r) for r in await connection.execute(sa.text(rows_of(table, "downgraded"))))
            assert [(*r[:-1], rollups.pack(r[-1])) for r in arrays] == packed[table]
            assert all(list(r[-1]) == sorted(r[-1]) for r in arrays)
        await connection.run_sync(migrate, command.upgrade, "0013")
        for table in tables:
            upgraded = await connection.execute(sa.text(rows_of(table, "upgraded")))
            assert sorted(tuple(r) for r in upgraded) == packed[table]
        # revision 0014 empties the read models and has the projector replay the log: the same rows again
        await connection.run_sync(migrate, command.upgrade, "head")
        for table in tables:
            assert not (await connection.execute(sa.text(rows_of(table, "emptied")))).all()
    await project_all(app.state.context.database)
    async with app.state.context.database.session() as session:
        for table in tables:
            assert sorted(tuple(r) for r in await session.execute(sa.text(rows_of(table, "replayed")))) == packed[table]
