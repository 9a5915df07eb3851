"""Two replicas (two processes) consuming the same queue concurrently: fair rotations, exact weights, no
rotation slot taken twice, no lead assigned twice although the broker delivers some LeadCreated twice."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import sqlalchemy as sa
from assignment_testkit import (
    ADMIN,
    Broker,
    add_reps,
    add_team,
    assignment_app,
    decisions,
    fallback,
    handled_by_replica,
    lead_created,
    publish_rules,
    replica_process,
    table_count,
)

from salesflow_shared.testing import eventually

ROUND_ROBIN_LEADS = 1001  # "over 1,000 leads to a team of 7 equal reps"
WEIGHTED_LEADS = 200  # smooth weighted round robin is exact per cycle of 10 slots
REDELIVERED = 40


async def test_two_concurrent_consumers_share_rotations_fairly(database_url, amqp_url, bus_namespace):
    async with assignment_app(database_url, amqp_url, bus_namespace) as (app_a, client), \
            replica_process(database_url, amqp_url, bus_namespace) as replica_b, \
            Broker(amqp_url, bus_namespace) as broker:
        equal = [f"eq-{i}" for i in range(7)]
        await add_reps(client, equal + ["w5", "w3", "w2"])
        team = await add_team(client, "Seven equals", equal)
        weighted_team = await add_team(client, "Weighted", ["w5", "w3", "w2"])
        await publish_rules(client, [
            {"id": "partners", "name": "Partners", "pipeline_id": "p-partner",
             "conditions": [{"field": "source", "op": "eq", "value": "partner"}],
             "owner": {"strategy": "weighted_round_robin", "team_id": weighted_team,
                       "weights": {"w5": 5, "w3": 3, "w2": 2}}},
            fallback(team)])

        envelopes = [lead_created(f"rr-{i}") for i in range(ROUND_ROBIN_LEADS)]
        envelopes += [lead_created(f"w-{i}", source="partner") for i in range(WEIGHTED_LEADS)]
        envelopes += envelopes[:REDELIVERED]  # the broker may deliver any message twice
        started = time.monotonic()
        for chunk in range(0, len(envelopes), 100):
            await asyncio.gather(*(broker.publish(e) for e in envelopes[chunk:chunk + 100]))
        expected = ROUND_ROBIN_LEADS + WEIGHTED_LEADS

        async def all_decided():
            assert await table_count(app_a, decisions) >= expected
        await eventually(all_decided, timeout=150, interval=0.25)  # generous: the machine is shared
        elapsed = time.monotonic() - started

        # both replicas really took part
        by_a = app_a.state.context.metrics.messages_handled.labels("LeadCreated", "ok")._value.get()
        by_b = await handled_by_replica(replica_b)
        assert by_a > 50 and by_b > 50, (by_a, by_b)

        async with app_a.state.context.database.session() as session:
            rows = (await session.execute(sa.select(decisions.c.lead_id, decisions.c.owner_id,
                                                    decisions.c.rule_id, decisions.c.explanation))).all()
        assert len(rows) == expected
        assert len({r.lead_id for r in rows}) == expected  # a redelivered LeadCreated never assigned twice

        rr = [r for r in rows if r.rule_id != "partners"]
        counts = Counter(r.owner_id for r in rr)
        assert set(counts) == set(equal)
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        slots = sorted(r.explanation["rotation"]["position"] for r in rr)
        assert slots == list(range(ROUND_ROBIN_LEADS))  # every rotation slot handed out exactly once

        weighted = Counter(r.owner_id for r in rows if r.rule_id == "partners")
        for rep_id, weight in (("w5", 5), ("w3", 3), ("w2", 2)):
            assert abs(weighted[rep_id] / WEIGHTED_LEADS - weight / 10) <= 0.02, weighted

        listed = (await client.get("/v1/reps?limit=20", headers=ADMIN)).json()["items"]
        reps = {r["id"]: r["open_leads"] for r in listed}
        assert sum(reps.values()) == expected
        print(f"\n{expected} leads (+{REDELIVERED} redeliveries) decided by two replicas in {elapsed:.1f}s; "
              f"(replica A {by_a:.0f}, replica B {by_b:.0f}); round robin counts {sorted(counts.values())}; "
              f"weighted {dict(weighted)}")
