"""A lead's deliveries, consumed as the service does (in batches; one delivery a batch when traffic is light), cost
at most three statements each on PostgreSQL: the inbox claim and two writes. A newer lead snapshot is written
over in one statement that returns the row as it was (deals and program_leads); the running programs come back
with the new facts. Stale, out-of-order and concurrent snapshots keep behaving as with a locked read first."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from incentive_testkit import Incentives, new_lead

from incentive_service.adapters.orm import deal_outcomes, deals, recalculation_queue
from incentive_service.adapters.programs_orm import program_leads
from incentive_service.adapters.repository import event_copies as copies
from incentive_service.adapters.repository import programs as program_repo
from salesflow_shared.events import (
    ActivityLoggedV1,
    CompanyData,
    Envelope,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadSnapshot,
    LeadUpdatedV1,
    LeadWonV1,
    StageAdvancedV1,
)
from salesflow_shared.testing import as_deliveries, statements_sent

WHEN = datetime(2027, 2, 10, 10, tzinfo=UTC)


def new_org() -> str:
    """An org of the test's own: no program another test started scores its facts."""
    return f"org-{uuid.uuid4().hex[:8]}"


def snapshot(lead_id: str, *, product_line: str = "crm", owner_id: str | None = "ann", value: str = "100",
             close: date | None = date(2027, 3, 1), company: str = "Acme") -> LeadSnapshot:
    return LeadSnapshot(lead_id=lead_id, product_line=product_line, owner_id=owner_id, value=Decimal(value),
                        currency="EUR", expected_close_date=close, company=CompanyData(name=company))


def updated(lead_id: str, **changes: Any) -> LeadUpdatedV1:
    return LeadUpdatedV1(lead=snapshot(lead_id, **changes), changed=sorted(changes) or ["value"])


async def sent_by(incentives: Incentives, act: Callable[[], Awaitable[Any]]) -> list[str]:
    """The statements `act` sent (the relay's and the program finisher's polls left out: they run beside it; the
    tests' service recalculates statements only when told)."""
    _, sent = await statements_sent(incentives.context.database, act)
    return [s for s in sent if "outbox" not in s and "programs.ends_at <=" not in s]


async def deliver(incentives: Incentives, *envelopes: Envelope) -> list[str]:
    """The envelopes delivered as one batch (the service consumes in batches); the statements it sent."""
    return await sent_by(incentives, lambda: incentives.context.dispatcher.handle_batch(
        as_deliveries(envelopes)))


def kinds(statements: list[str]) -> list[str]:
    """Each statement by what it does and the table it writes or reads."""
    named = []
    for s in statements:
        words = s.split()
        if words[0] == "INSERT":
            named.append(f"INSERT {words[2]}")
        elif words[0] == "UPDATE":
            named.append(f"UPDATE {words[1]}" + (" FROM" if " FROM (SELECT" in s else ""))
        elif s.startswith("WITH added AS (INSERT INTO program_facts"):
            named.append("add facts")
        elif s.startswith("WITH gained AS (INSERT INTO program_scores"):
            named.append("add to tallies")
        elif "pg_advisory_xact_lock" in s:
            named.append("lock leads")
        else:
            named.append(f"SELECT {words[1].split('.')[0]}")  # (the table of its first column)
    return named


async def deal_of(incentives: Incentives, org: str, lead_id: str) -> dict[str, Any]:
    [row] = await incentives.rows(deals, deals.c.org_id == org, deals.c.lead_id == lead_id)
    return row


async def close_date_of(incentives: Incentives, org: str, lead_id: str) -> tuple[int, date | None]:
    [row] = await incentives.rows(program_leads, program_leads.c.org_id == org, program_leads.c.lead_id == lead_id)
    return row["lead_version"], row["expected_close_date"]


# ---------------------------------------------------------------- statements per delivery


async def test_a_leads_five_deliveries_cost_fourteen_statements_at_most_three_each(incentives: Incentives):
    org, lead = new_org(), new_lead()
    steps = [
        incentives.envelope(LeadCreatedV1(lead=snapshot(lead)), lead, org=org, version=1),
        incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="bob", reason="round robin"), lead, org=org,
                            version=1),
        incentives.envelope(updated(lead, owner_id="bob"), lead, org=org, version=2),
        incentives.envelope(StageAdvancedV1(lead_id=lead, pipeline_id="p1", to_stage_id="s1", to_stage_name="New",
                                            to_stage_position=1, reason="entry", owner_id="bob", entered_at=WHEN),
                            lead, org=org),
        incentives.envelope(ActivityLoggedV1(activity_id=f"act-{lead}", lead_id=lead, kind="email", rep_id="bob",
                                             occurred_at=WHEN), lead, org=org),
    ]
    per_delivery = [kinds(await deliver(incentives, envelope)) for envelope in steps]
    assert per_delivery == [
        ["INSERT inbox", "INSERT deals", "INSERT program_leads"],  # the claim: one row per handler, one statement
        ["INSERT inbox", "UPDATE deals"],
        ["INSERT inbox", "UPDATE deals FROM", "UPDATE program_leads FROM"],  # was a locked SELECT + UPDATE each
        ["INSERT inbox", "lock leads", "add facts"],  # the running programs (none) read with the facts
        ["INSERT inbox", "lock leads", "add facts"],
    ]
    assert sum(map(len, per_delivery)) == 14  # 2.8 a delivery (18 before: 3.6)
    deal = await deal_of(incentives, org, lead)
    assert (deal["lead_version"], deal["owner_id"], deal["assigned_version"]) == (2, "bob", 1)


async def test_a_fact_in_an_org_with_a_running_program_reads_the_program_with_the_facts(incentives: Incentives):
    org, lead = new_org(), new_lead()
    launched = await incentives.client.post(
        "/v1/programs/templates/monthly-race", headers=incentives.headers("manager", "mia", org=org),
        json={"name": "Feb race", "year": 2027, "month": 2, "participants": ["ann"], "target": 100, "start": True})
    assert launched.status_code == 201, launched.text
    advanced = incentives.envelope(StageAdvancedV1(
        lead_id=lead, pipeline_id="p1", from_stage_id="s1", from_stage_position=1, to_stage_id="s2",
        to_stage_name="Qualified", to_stage_position=2, reason="manual", owner_id="ann", entered_at=WHEN), lead,
        org=org)
    sent = await deliver(incentives, advanced)
    # No SELECT of programs of its own: the program came back with the fact. Then the scoring: the lead is new
    # to the program (no contributions to read back): its contribution inserted; the race has badges, so the
    # awards are read, and ann, who may still earn one, is re-tallied from all her contributions.
    assert kinds(sent) == ["INSERT inbox", "lock leads", "add facts", "INSERT program_contributions",
                           "SELECT program_awards", "add to tallies", "SELECT program_contributions",
                           "UPDATE program_scores"], sent
    board = (await incentives.client.get(f"/v1/programs/{launched.json()['id']}/leaderboard",
                                         headers=incentives.headers("manager", "mia", org=org))).json()
    assert [(e["id"], e["points"]) for e in board["entries"]] == [("ann", 5)]


# ---------------------------------------------------------------- stale and out-of-order snapshots


async def test_an_older_snapshot_arriving_after_a_newer_one_changes_nothing(incentives: Incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead)), lead, org=org, version=1))
    newer = incentives.envelope(updated(lead, product_line="erp", close=date(2027, 4, 1)), lead, org=org, version=3)
    older = incentives.envelope(updated(lead, product_line="hr", close=date(2027, 5, 1)), lead, org=org, version=2)
    await deliver(incentives, newer)
    before = await deal_of(incentives, org, lead)
    stale = await deliver(incentives, older)
    # The one-statement update writes nothing; the locked reads tell it is stale: nothing more is written.
    assert kinds(stale) == ["INSERT inbox", "UPDATE deals FROM", "SELECT deals", "UPDATE program_leads FROM",
                            "SELECT program_leads"]
    assert await deal_of(incentives, org, lead) == before
    assert (before["lead_version"], before["product_line"]) == (3, "erp")
    assert await close_date_of(incentives, org, lead) == (3, date(2027, 4, 1))
    # The same snapshot again under another event id (a second publication): stale too.
    again = incentives.envelope(updated(lead, product_line="ops"), lead, org=org, version=3)
    await deliver(incentives, again)
    assert (await deal_of(incentives, org, lead))["product_line"] == "erp"


async def test_an_update_before_the_leads_creation_is_kept_and_the_creation_ignored(incentives: Incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(updated(lead, product_line="erp", close=date(2027, 4, 1)), lead,
                                                  org=org, version=2))
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead)), lead, org=org, version=1))
    deal = await deal_of(incentives, org, lead)
    assert (deal["lead_version"], deal["product_line"], deal["owner_id"]) == (2, "erp", "ann")
    assert await close_date_of(incentives, org, lead) == (2, date(2027, 4, 1))


async def test_a_snapshot_sets_the_owner_only_until_an_assignment_is_known(incentives: Incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead, owner_id=None)), lead, org=org,
                                                  version=1))
    await deliver(incentives, incentives.envelope(updated(lead, owner_id="carl"), lead, org=org, version=2))
    assert (await deal_of(incentives, org, lead))["owner_id"] == "carl"  # lead-service's owner: the best known
    await deliver(incentives, incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="bob", team_id="t2",
                                                                 reason="manual"), lead, org=org, version=1))
    await deliver(incentives, incentives.envelope(updated(lead, owner_id="dora", product_line="erp"), lead, org=org,
                                                  version=3))
    deal = await deal_of(incentives, org, lead)
    assert (deal["owner_id"], deal["team_id"], deal["product_line"]) == ("bob", "t2", "erp")


async def test_a_win_before_any_owner_is_credited_to_the_owner_of_a_later_snapshot(incentives: Incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead, owner_id=None)), lead, org=org,
                                                  version=1))
    await deliver(incentives, incentives.envelope(LeadWonV1(lead_id=lead, pipeline_id="p1", value=Decimal("100"),
                                                            currency="EUR", won_at=WHEN), lead, org=org))
    # (what the win queued is not this test's)
    async with incentives.context.database.session() as session, session.begin():
        await session.execute(sa.delete(recalculation_queue).where(recalculation_queue.c.org_id == org))
    await deliver(incentives, incentives.envelope(updated(lead, owner_id="ann"), lead, org=org, version=2))
    outcomes = await incentives.rows(deal_outcomes, deal_outcomes.c.org_id == org, deal_outcomes.c.lead_id == lead)
    assert [(o["kind"], o["owner_id"]) for o in outcomes] == [("won", "ann")]
    queued = await incentives.rows(recalculation_queue, recalculation_queue.c.org_id == org)
    assert [(q["subject_id"], q["reason"]) for q in queued] == [(lead, "credit_changed")]


# ---------------------------------------------------------------- concurrent writers


async def _while_another_transaction_holds_the_row(incentives: Incentives, hold: Callable[[Any], Awaitable[None]],
                                                   then: Callable[[Any], Awaitable[Any]]) -> Any:
    """`then` in a second transaction started while the first, having run `hold`, still holds the row; the first
    commits once `then` is waiting for it. What `then` returned."""
    database = incentives.context.database
    async with database.session() as first:
        await hold(first)

        async def second() -> Any:
            async with database.session() as session, session.begin():
                return await then(session)
        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # blocked on the row the first transaction holds
        await first.commit()
    return await asyncio.wait_for(waiting, 10)


async def test_a_snapshot_written_while_an_assignment_commits_returns_and_keeps_the_assignment(incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead, owner_id="carl")), lead,
                                                  org=org, version=1))

    async def assign(session: Any) -> None:
        await copies.lock_deal(session, org, lead, WHEN)
        await copies.save_assignment(session, org, lead, "bob", "t2", 1, WHEN)

    async def newer_snapshot(session: Any) -> copies.Deal | None:
        return await copies.save_newer_snapshot(session, org, lead, copies.DealSnapshot(
            2, "erp", "acme", Decimal("5"), "EUR"), ("dora", None), WHEN)

    before = await _while_another_transaction_holds_the_row(incentives, assign, newer_snapshot)
    # The row as the assignment left it (not as it was when the statement began): an owner assigned, kept.
    assert before is not None and (before.assigned_version, before.owner_id) == (1, "bob")
    deal = await deal_of(incentives, org, lead)
    assert (deal["lead_version"], deal["product_line"], deal["owner_id"], deal["team_id"]) == (2, "erp", "bob", "t2")


async def test_a_snapshot_overtaken_by_a_newer_one_committing_meanwhile_writes_nothing(incentives: Incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead)), lead, org=org, version=1))

    async def newer(session: Any) -> None:
        await copies.lock_deal(session, org, lead, WHEN)
        await copies.save_snapshot(session, org, lead, copies.DealSnapshot(5, "erp", "acme", None, "EUR"), WHEN)
        await program_repo.lock_lead_snapshot(session, org, lead)
        await program_repo.update_lead_snapshot(session, org, lead, lead_version=5, owner_id="ann",
                                                close_date=date(2027, 6, 1))

    async def older(session: Any) -> tuple[Any, Any]:
        return (await copies.save_newer_snapshot(session, org, lead, copies.DealSnapshot(
                    3, "hr", "acme", None, "EUR"), ("ann", None), WHEN),
                await program_repo.update_newer_lead_snapshot(session, org, lead, lead_version=3, owner_id="ann",
                                                              close_date=date(2027, 7, 1)))

    assert await _while_another_transaction_holds_the_row(incentives, newer, older) == (None, None)
    assert (await deal_of(incentives, org, lead))["product_line"] == "erp"
    assert await close_date_of(incentives, org, lead) == (5, date(2027, 6, 1))


async def test_a_close_date_written_while_another_commits_returns_the_date_that_one_left(incentives: Incentives):
    org, lead = new_org(), new_lead()
    await deliver(incentives, incentives.envelope(LeadCreatedV1(lead=snapshot(lead, close=date(2027, 3, 1))), lead,
                                                  org=org, version=1))

    async def moved(session: Any) -> None:
        await program_repo.lock_lead_snapshot(session, org, lead)
        await program_repo.update_lead_snapshot(session, org, lead, lead_version=2, owner_id="ann",
                                                close_date=date(2027, 3, 20))

    async def moved_again(session: Any) -> Any:
        return await program_repo.update_newer_lead_snapshot(session, org, lead, lead_version=3, owner_id="ann",
                                                             close_date=date(2027, 4, 2))

    before = await _while_another_transaction_holds_the_row(incentives, moved, moved_again)
    assert before is not None and (before["lead_version"], before["expected_close_date"]) == (2, date(2027, 3, 20))
    assert await close_date_of(incentives, org, lead) == (3, date(2027, 4, 2))
