"""Credit by who owned the lead when it happened (issue: numbers after a hand-over to account management).

A hand-written Q2 2026 history of org-x, delivered shuffled with duplicates; every number computed by hand:
  C1 alice, created Apr 1 00:00; s1 Apr 1, alice calls Apr 1 03:00, s2 Apr 3 (goal), s3 Apr 6 (goal),
     won Apr 10 at 9,000; the win hands the customer over to dave (account management, team AM) at Apr 10 00:05;
     dave calls Apr 12.
  C2 bob, created Apr 2 00:00; s1 Apr 2; a sequence email logged as bob at 00:10, bob calls at 05:00;
     reassigned to alice Apr 4 (manual); s2 Apr 5 (goal); won Apr 8 at 1,000 by alice; handed over to dave by a
     hand-over stamped with the very instant of the win (Apr 8 00:00: the win's own hand-over never counts).
  C3 bob, created Apr 3; s1 Apr 3; lost Apr 9.
alice has a Q2 quota of 10,000 USD. The clock says 2026-04-15.
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from metrics_testkit import (
    NOW,
    ORG,
    History,
    T,
    all_reports,
    delivery_order,
    dump_read_models,
    feed,
    get,
    lead,
    metrics_settings,
    pick,
)

from metrics_service.entrypoints.http import create_app
from metrics_service.service_layer.projector import rebuild_read_models
from metrics_service.service_layer.quota_milestones import announce_reached_quotas
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import auth_headers, running_app

Q2 = {"from": "2026-04-01T00:00:00Z", "to": "2026-07-01T00:00:00Z"}
APRIL_1_15 = {"from": "2026-04-01T00:00:00Z", "to": "2026-04-15T00:00:00Z"}  # not whole months: the row path


def handover_history() -> History:
    h = History()
    lead(h, "C1", "alice", "p1", "north", T(4, 1), product_line="saas", source="web", value="8000")
    h.stage("C1", T(4, 1), "s1", "entry")
    h.activity("c1-call", "C1", "alice", "call", T(4, 1, 3), duration=60)
    h.stage("C1", T(4, 3), "s2", "goal_met")
    h.stage("C1", T(4, 6), "s3", "goal_met")
    h.won("C1", T(4, 10), "p1", "9000")
    h.assigned("C1", T(4, 10, 0, 5), "dave", "north", trigger="lead_won")
    h.activity("c1-dave", "C1", "dave", "call", T(4, 12), duration=60)
    lead(h, "C2", "bob", "p1", "south", T(4, 2), product_line="saas", source="web", value="1000")
    h.stage("C2", T(4, 2), "s1", "entry")
    h.activity("c2-seq", "C2", "bob", "email", T(4, 2, 0, 10), source="sequence")
    h.activity("c2-call", "C2", "bob", "call", T(4, 2, 5), duration=60)
    h.assigned("C2", T(4, 4), "alice", "south", trigger="manual")
    h.stage("C2", T(4, 5), "s2", "goal_met")
    h.won("C2", T(4, 8), "p1", "1000")
    h.assigned("C2", T(4, 8), "dave", "south", trigger="lead_won")
    lead(h, "C3", "bob", "p1", "south", T(4, 3), product_line="saas", source="web", value="500")
    h.stage("C3", T(4, 3), "s1", "entry")
    h.lost("C3", T(4, 9), "p1")
    return h


MANAGER = auth_headers(ORG, "manager", "boss")
CHECKED = [("win-rate", {**Q2, "group_by": "rep"}), ("win-rate", {**APRIL_1_15, "group_by": "rep"}),
           ("deal-size", {**Q2, "group_by": "rep"}), ("response-time", Q2), ("adoption", Q2), ("coaching", Q2),
           ("handovers", Q2), ("leaderboard", {"period": "quarter", "metric": "revenue"}),
           ("quota-attainment", {"period": "quarter"}), ("production", {**Q2, "group_by": "rep"})]


async def test_a_win_and_its_revenue_stay_with_the_closer_after_the_hand_over(database_url):
    settings = metrics_settings(database_url).model_copy(update={"quota_milestone_interval_s": 0})
    app = create_app(settings, clock=lambda: NOW)
    async with running_app(app) as client:
        await feed(app, delivery_order(handover_history().events, seed=17))
        quota = await client.post("/v1/quotas", headers=auth_headers(ORG, "admin"), json={
            "scope": "rep", "scope_id": "alice", "period": "quarter", "period_start": "2026-04-01",
            "amount": "10000", "currency": "USD"})
        assert quota.status_code == 201, quota.text

        # Wins to the owner at the win: alice C1 and C2 (bob had handed C2 over to her before), bob lost C3.
        for period in (Q2, APRIL_1_15):
            rows = (await get(client, "win-rate", group_by="rep", **period))["rows"]
            assert pick(rows, "group", "won", "lost", "win_rate_pct") == [("alice", 2, 0, 100.0), ("bob", 0, 1, 0.0)]
        rows = (await get(client, "deal-size", group_by="rep", **Q2))["rows"]
        assert pick(rows, "group", "currency", "deals", "total") == [("alice", "USD", 2, "10000.00")]
        rows = (await get(client, "leaderboard", period="quarter", metric="revenue"))["rows"]
        assert pick(rows, "rank", "rep_id", "revenue") == [(1, "alice", "10000.00")]
        rows = (await get(client, "production", group_by="rep", **Q2))["rows"]
        # leads generated to the owner at creation (C1 alice, C2 and C3 bob), wins to the owner at the win
        assert pick(rows, "group", "leads_generated", "deals_won", "revenue") == [
            ("alice", 1, 2, "10000.00"), ("bob", 2, 0, "0.00")]
        # 9,000 + 1,000 = 10,000 of alice's 10,000: 100 %, and QuotaReached says the same
        rows = (await get(client, "quota-attainment", period="quarter"))["rows"]
        assert pick(rows, "scope_id", "actual", "attainment_pct") == [("alice", "10000.00", 100.0)]
        assert await announce_reached_quotas(app.state.context, NOW, 7) == 1
        async with app.state.context.database.session() as session:
            [payload] = (await session.execute(sa.select(outbox_table.c.payload).where(
                outbox_table.c.event_type == "QuotaReached"))).scalars().all()
        reached = json.loads(payload)["data"]
        assert (reached["scope_id"], reached["attained"], reached["attainment_pct"]) == ("alice", "10000.00", 100.0)

        # Stage exits to the owner at the exit: alice C1 s1→s2, s2→s3, s3→won, C2 s1→s2 (hers since Apr 4),
        # s2→won = 5; bob C3 s1→lost = 1; dave made none.
        rows = (await get(client, "adoption", **Q2))["rows"]
        assert pick(rows, "group", "stage_exits") == [("alice", 5), ("bob", 1)]
        coaching = (await get(client, "coaching", **Q2))["rows"]
        assert pick(coaching, "rep_id", "stage_id", "exits") == [
            ("alice", "s1", 2), ("alice", "s2", 2), ("alice", "s3", 1), ("bob", "s1", 1)]
        # Response to the owner at creation, by a human touch: C1 alice 3 h; C2 bob 5 h (not the sequence email
        # at 10 minutes); C3 never touched.
        rows = (await get(client, "response-time", **Q2))["rows"]
        assert pick(rows, "group", "leads", "responded", "median_hours") == [("alice", 1, 1, 3.0),
                                                                            ("bob", 2, 1, 5.0)]
        # Account management's own view: dave now owns the two customers alice won.
        rows = (await get(client, "handovers", **Q2))["rows"]
        assert pick(rows, "group", "rep_name", "currency", "customers", "closers", "won_value") == [
            ("dave", "Dave Diaz", "USD", 2, 1, "10000.00")]
        dave = auth_headers(ORG, "rep", "dave")
        assert pick((await get(client, "handovers", headers=dave, **Q2))["rows"], "customers") == [(2,)]
        assert (await get(client, "win-rate", headers=dave, **Q2))["rows"] == []
        # The closer sees her wins.
        alice = auth_headers(ORG, "rep", "alice")
        assert pick((await get(client, "win-rate", headers=alice, **Q2))["rows"], "won", "lost") == [(2, 0)]

        incremental, models = await all_reports(client, CHECKED), await dump_read_models(app)
        await rebuild_read_models(app.state.context.database, ORG)
        assert await all_reports(client, CHECKED) == incremental
        assert await dump_read_models(app) == models
