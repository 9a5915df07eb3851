"""QuotaReached: a win that takes a rep or team to its quota is announced once, whatever reruns or replicas."""
from __future__ import annotations

import asyncio
import json

import sqlalchemy as sa
from metrics_testkit import NOW, ORG, OTHER_ORG, History, T, build_history, lead, metrics_settings, other_org_history

from metrics_service.entrypoints.http import create_app
from metrics_service.service_layer.projector import project_all, rebuild_read_models
from metrics_service.service_layer.quota_milestones import announce_reached_quotas
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import auth_headers, running_app

ADMIN = auth_headers(ORG, "admin", "root")
LOOKBACK_DAYS = 7


async def feed(context, envelopes) -> None:
    for envelope in envelopes:
        await context.dispatcher.dispatch(envelope)
    await project_all(context.database)


async def quota(client, org: str, scope: str, scope_id: str, period_start: str, amount: str) -> str:
    response = await client.post("/v1/quotas", headers=auth_headers(org, "admin", "root"), json={
        "scope": scope, "scope_id": scope_id, "period": "quarter", "period_start": period_start, "amount": amount,
        "currency": "USD"})
    assert response.status_code == 201, response.text
    return response.json()["quota_id"]


async def attainment(client) -> dict[str, tuple[str, float]]:
    """The quota-attainment report of Q2 2026: quota id → (actual, attainment_pct)."""
    response = await client.get("/v1/reports/quota-attainment", params={"period": "quarter", "date": "2026-04-15"},
                                headers=ADMIN)
    assert response.status_code == 200, response.text
    return {r["quota_id"]: (r["actual"], r["attainment_pct"]) for r in response.json()["rows"]}


async def announced(context, org: str) -> list[dict]:
    async with context.database.session() as session:
        rows = (await session.execute(sa.select(outbox_table.c.payload).where(
            outbox_table.c.org_id == org, outbox_table.c.event_type == "QuotaReached")
            .order_by(outbox_table.c.id))).scalars().all()
    return [json.loads(r)["data"] for r in rows]


async def test_a_win_crossing_the_quota_announces_it_once(database_url):
    # The worker is off: the test runs it at chosen moments (and twice at once, as two replicas would).
    settings = metrics_settings(database_url).model_copy(update={"quota_milestone_interval_s": 0})
    app = create_app(settings, clock=lambda: NOW)
    async with running_app(app) as client:
        context = app.state.context
        await feed(context, [*build_history().events, *other_org_history().events])
        # Q2 2026 so far: bob (team T1) won L8 for 800 on Apr 5; nothing else.
        bob_q2 = await quota(client, ORG, "rep", "bob", "2026-04-01", "1000")
        team_q2 = await quota(client, ORG, "team", "T1", "2026-04-01", "800")
        await quota(client, ORG, "rep", "carol", "2026-04-01", "500")  # carol won nothing in Q2
        await quota(client, ORG, "rep", "alice", "2026-01-01", "1000")  # reached in Q1, which ended > 7 days ago
        other_bob = await quota(client, OTHER_ORG, "rep", "bob", "2026-04-01", "100")  # org-y's bob won nothing

        assert await announce_reached_quotas(context, NOW, LOOKBACK_DAYS) == 1
        [team_event] = await announced(context, ORG)
        assert team_event["quota_id"] == team_q2 and team_event["scope"] == "team"
        assert (team_event["attained"], team_event["attainment_pct"]) == ("800.00", 100.0)
        assert (await attainment(client))[team_q2] == ("800.00", 100.0)  # the report's figures

        # bob wins 300 more on Apr 10: 1100 of 1000. Two replicas run the worker at the same moment.
        win = History()
        lead(win, "L9", "bob", "p1", "south", T(4, 8), product_line="saas", source="web", value="300")
        win.won("L9", T(4, 10), "p1", "300")
        await feed(context, win.events)
        runs = await asyncio.gather(*(announce_reached_quotas(context, NOW, LOOKBACK_DAYS) for _ in range(2)))
        assert sorted(runs) == [0, 1]
        assert await announce_reached_quotas(context, NOW, LOOKBACK_DAYS) == 0
        # A rebuild of the read models does not make anything new to announce.
        await rebuild_read_models(context.database, ORG)
        assert await announce_reached_quotas(context, NOW, LOOKBACK_DAYS) == 0

        events = await announced(context, ORG)
        assert [e["quota_id"] for e in events] == [team_q2, bob_q2]
        bob_event = events[1]
        assert bob_event == {
            "quota_id": bob_q2, "scope": "rep", "scope_id": "bob", "period": "quarter", "period_start": "2026-04-01",
            "amount": "1000.00", "currency": "USD", "attained": "1100.00", "attainment_pct": 110.0,
            "reached_at": NOW.isoformat().replace("+00:00", "Z")}
        assert (await attainment(client))[bob_q2] == ("1100.00", 110.0)
        # The other org's bob is another person: org-x's wins never count for org-y's quota.
        assert await announced(context, OTHER_ORG) == []
        assert other_bob not in {e["quota_id"] for e in events}
