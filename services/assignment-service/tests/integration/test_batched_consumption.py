"""assignment-service consumes in batches (one transaction per batch): a batch decides exactly as the same
deliveries one by one would (round-robin order, capacities, a lead's several events), and a batch that fails
leaves nothing behind, so that the bus's one-by-one retry neither loses nor doubles a decision."""
from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from assignment_testkit import (
    add_reps,
    add_team,
    assignment_app,
    decisions,
    fallback,
    lead_created,
    lead_updated,
    leads,
    outbox_events,
    owners,
    publish_rules,
    rotations,
    table_count,
)

from assignment_service.bootstrap import build_definition
from salesflow_shared.bus import PermanentFailure
from salesflow_shared.infra_tables import inbox_table
from salesflow_shared.testing import as_deliveries


async def rotation_positions(app: Any) -> list[int]:
    async with app.state.context.database.session() as session:
        return [int(p) for (p,) in await session.execute(sa.select(rotations.c.position))]


def test_the_service_consumes_in_batches_one_batch_at_a_time():
    definition = build_definition()
    assert definition.consume_in_batches is True
    assert definition.max_batches_in_flight == 1


async def test_a_batch_of_new_leads_is_routed_round_robin_in_delivery_order(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["rep-a", "rep-b", "rep-c"])
        team = await add_team(client, "Inside", ["rep-a", "rep-b", "rep-c"])
        await publish_rules(client, [fallback(team)])
        batch = [lead_created(f"lead-{n}") for n in range(1, 6)]

        await app.state.context.dispatcher.handle_batch(as_deliveries(batch))

        # The rotation starts at the team's first member and each lead takes the next slot, in delivery order.
        assert await owners(app) == {"lead-1": "rep-a", "lead-2": "rep-b", "lead-3": "rep-c",
                                     "lead-4": "rep-a", "lead-5": "rep-b"}
        assert await rotation_positions(app) == [5]
        assigned = await outbox_events(app, "LeadAssigned")
        assert [(e["subject_id"], e["data"]["owner_id"]) for e in assigned] == [
            ("lead-1", "rep-a"), ("lead-2", "rep-b"), ("lead-3", "rep-c"), ("lead-4", "rep-a"), ("lead-5", "rep-b")]
        # each published event is caused by the delivery that decided it, as when consumed alone
        assert [e["causation_id"] for e in assigned] == [str(envelope.id) for envelope in batch]
        # the next lead, alone, continues the rotation where the batch left it
        await app.state.context.dispatcher.handle_batch(as_deliveries([lead_created("lead-6")]))
        assert (await owners(app))["lead-6"] == "rep-c"


async def test_capacities_in_a_batch_count_the_leads_the_batch_gave_before(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["rep-a"], capacity=1)
        await add_reps(client, ["rep-b"], capacity=2)
        await add_reps(client, ["rep-c"])
        team = await add_team(client, "Inside", ["rep-a", "rep-b", "rep-c"])
        await publish_rules(client, [fallback(team)])

        await app.state.context.dispatcher.handle_batch(as_deliveries([lead_created(f"lead-{n}")
                                                                       for n in range(1, 7)]))

        # lead-1..3 take slots 1..3 (rep-a is then full: 1 of 1); lead-4 at slot 1 skips rep-a for rep-b (full:
        # 2 of 2); lead-5 at slot 3 takes rep-c; lead-6 at slot 1 skips rep-a and rep-b for rep-c.
        assert await owners(app) == {"lead-1": "rep-a", "lead-2": "rep-b", "lead-3": "rep-c",
                                     "lead-4": "rep-b", "lead-5": "rep-c", "lead-6": "rep-c"}


async def test_a_leads_creation_and_update_in_one_batch_route_it_once_with_the_newest_snapshot(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["rep-a", "rep-b"])
        team = await add_team(client, "Inside", ["rep-a", "rep-b"])
        await publish_rules(client, [fallback(team)])
        batch = [
            lead_created("lead-1", country="DE"),
            lead_updated("lead-1", 2, ["country"], cause="enrichment", country="FR"),  # after its creation
            # before its creation (the bus may reorder)
            lead_updated("lead-2", 2, ["country"], cause="enrichment", country="ES"),
            lead_created("lead-2", country="DE"),
            lead_created("lead-3"),
        ]

        await app.state.context.dispatcher.handle_batch(as_deliveries(batch))

        assert await owners(app) == {"lead-1": "rep-a", "lead-2": "rep-b", "lead-3": "rep-a"}
        async with app.state.context.database.session() as session:
            rows = {r.lead_id: r for r in await session.execute(sa.select(leads))}
        assert {lead_id: (r.lead_version, r.snapshot["country"]) for lead_id, r in rows.items()
                if lead_id != "lead-3"} == {"lead-1": (2, "FR"), "lead-2": (2, "ES")}
        assert await table_count(app, decisions) == 3  # one decision per lead
        routed = await outbox_events(app, "LeadRouted")
        assert [e["subject_id"] for e in routed] == ["lead-1", "lead-2", "lead-3"]
        # the lead's own events count up its version: LeadRouted 1, LeadAssigned 2
        assert [(e["subject_id"], e["subject_version"]) for e in await outbox_events(app)
                if e["subject_id"] == "lead-1"] == [("lead-1", 1), ("lead-1", 2)]


async def test_a_failing_delivery_fails_its_batch_whole_and_the_one_by_one_retry_decides_each_once(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["rep-a", "rep-b"])
        team = await add_team(client, "Inside", ["rep-a", "rep-b"])
        await publish_rules(client, [fallback(team)])
        dispatcher = app.state.context.dispatcher
        poison = lead_created("lead-poison", org_id="org-without-rules")
        batch = [lead_created("lead-1"), poison, lead_created("lead-2")]

        with pytest.raises(PermanentFailure):
            await dispatcher.handle_batch(as_deliveries(batch))
        # rolled back whole: no decision, no rotation slot, no event, no inbox row (all would be retried)
        assert await table_count(app, decisions) == 0
        assert await rotation_positions(app) == []
        assert await outbox_events(app, "LeadRouted") == await outbox_events(app, "LeadAssigned") == []
        assert await table_count(app, inbox_table) == 0

        # The bus then hands each delivery over alone: the others are decided as if the poison were not there.
        for body, headers in as_deliveries(batch):
            if body == poison.to_json():
                with pytest.raises(PermanentFailure):
                    await dispatcher.handle_message(body, headers)
                continue
            await dispatcher.handle_message(body, headers)
        assert await owners(app) == {"lead-1": "rep-a", "lead-2": "rep-b"}
        assert await rotation_positions(app) == [2]

        # a redelivery of the good ones, together, is absorbed by the inbox: nothing decided twice
        await dispatcher.handle_batch(as_deliveries([batch[0], batch[2]]))
        assert await table_count(app, decisions) == 2
        assert len(await outbox_events(app, "LeadAssigned")) == 2
        assert await rotation_positions(app) == [2]
