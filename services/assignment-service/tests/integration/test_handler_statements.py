"""The statements a lead's deliveries send to assignment-service's database (PostgreSQL), listed by hand: a new
lead's routing is four, its events written by the decision's own statement; its enrichment update is two."""
from __future__ import annotations

import re
from typing import Any

from assignment_testkit import (
    add_reps,
    add_team,
    assignment_app,
    fallback,
    lead_created,
    lead_updated,
    outbox_events,
    owners,
    publish_rules,
)

from salesflow_shared.testing import as_deliveries, statements_sent


def what(statement: str) -> str:
    """A statement as the tables it writes, in order (its CTEs' first), e.g. 'INSERT inbox'; a read as 'SELECT'."""
    writes = [f"{verb.split()[0]} {table}" for verb, table in re.findall(
        r"(INSERT INTO|(?<!DO )UPDATE|DELETE FROM) (\w+)", statement)]
    return " + ".join(writes) or "SELECT"


async def sent(app: Any, envelope: Any) -> list[str]:
    context = app.state.context
    _, statements = await statements_sent(
        context.database, lambda: context.dispatcher.handle_batch(as_deliveries([envelope])))
    return [what(statement) for statement in statements]


async def test_a_new_leads_routing_writes_its_events_with_the_decision(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["rep-a", "rep-b"])
        team = await add_team(client, "Inside", ["rep-a", "rep-b"])
        await publish_rules(client, [fallback(team)])

        assert await sent(app, lead_created("lead-1", email="ada@example.com")) == [
            "INSERT inbox",
            "INSERT leads",  # the lead's row, locked (with the reps' open-lead counts)
            "INSERT rotations",  # the rotation's slot, locked
            # the rotation's new position, the decision, the rep's last assignment, LeadRouted and LeadAssigned,
            # and the lead's new owner: one statement
            "UPDATE rotations + INSERT decisions + UPDATE reps + INSERT outbox + UPDATE leads",
        ]
        assert await owners(app) == {"lead-1": "rep-a"}
        [routed], [assigned] = await outbox_events(app, "LeadRouted"), await outbox_events(app, "LeadAssigned")
        assert (routed["subject_version"], assigned["subject_version"]) == (1, 2)
        assert assigned["data"]["owner_id"] == "rep-a"

        assert await sent(app, lead_updated("lead-1", 2, ["company_name"], cause="enrichment",
                                            email="ada@example.com", company_name="Acme")) == [
            "INSERT inbox", "UPDATE leads"]
        # an update that changes nothing the routing depends on publishes nothing
        assert len(await outbox_events(app, "LeadRouted")) == len(await outbox_events(app, "LeadAssigned")) == 1
