"""Coaching sends managers to the right rep and stage: stalls only where the rep is slower than the team,
unassigned leads as their own signal, a stalled-deal threshold that has a real baseline (and says which),
compliance judged per visit with a win as a compliant exit, group_by refused where it does not apply.

Org-x, Q1 2026, team T1 = alice, bob; T2 = carol; the clock says 2026-04-15. Every number by hand:
  K1-K3 alice  s1 Jan 5 → s2 Jan 7 (2 d, manual) → won Jan 17 (10 d)
  K4-K6 bob    s1 Jan 5 → s2 Jan 9 (4 d, manual) → won Jan 10 (1 d)
  K7    carol  t1 Jan 5 → t2 Jan 7 (2 d, manual); open in t2
  K8    nobody s1 Jan 5 → s2 Jan 8 (3 d, manual); open in s2, never assigned
  K9    alice  s1 Mar 1; open
  K10   bob    s1 Jan 10 (required task k10a, done Jan 11) → s2 Jan 12 → s1 Jan 14 (required task k10b, never
               done) → s2 Jan 16; open in s2
"""
from __future__ import annotations

from metrics_testkit import ORG, History, T, all_reports, delivery_order, dump_read_models, feed, get, lead, pick

from metrics_service.service_layer.projector import rebuild_read_models
from salesflow_shared.testing import auth_headers

Q1 = {"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}
MARCH_5_20 = {"from": "2026-03-05T00:00:00Z", "to": "2026-03-20T00:00:00Z"}
CHECKED = [("coaching", Q1), ("adoption", Q1), ("stalled-deals", Q1), ("stalled-deals", MARCH_5_20)]


def coaching_history() -> History:
    h = History()
    for lead_id, rep, s1_days, s2_days in (("K1", "alice", 2, 10), ("K2", "alice", 2, 10), ("K3", "alice", 2, 10),
                                           ("K4", "bob", 4, 1), ("K5", "bob", 4, 1), ("K6", "bob", 4, 1)):
        lead(h, lead_id, rep, "p1", "north", T(1, 5), product_line="saas", source="web", value="100")
        h.stage(lead_id, T(1, 5), "s1", "entry")
        h.stage(lead_id, T(1, 5 + s1_days), "s2", "manual")
        h.won(lead_id, T(1, 5 + s1_days + s2_days), "p1", "100")
    lead(h, "K7", "carol", "p2", "north", T(1, 5), product_line="saas", source="web", value="100")
    h.stage("K7", T(1, 5), "t1", "entry")
    h.stage("K7", T(1, 7), "t2", "manual")
    h.created("K8", T(1, 5), product_line="saas", source="web", value="100", territory="north")
    h.routed("K8", T(1, 5), "p1", "north")
    h.stage("K8", T(1, 5), "s1", "entry")
    h.stage("K8", T(1, 8), "s2", "manual")
    lead(h, "K9", "alice", "p1", "north", T(3, 1), product_line="saas", source="web", value="100")
    h.stage("K9", T(3, 1), "s1", "entry")
    lead(h, "K10", "bob", "p1", "south", T(1, 10), product_line="saas", source="web", value="100")
    h.stage("K10", T(1, 10), "s1", "entry")
    h.task("created", "k10a", "K10", "s1", T(1, 10))
    h.task("completed", "k10a", "K10", "s1", T(1, 11))
    h.stage("K10", T(1, 12), "s2", "manual")
    h.stage("K10", T(1, 14), "s1", "manual")
    h.task("created", "k10b", "K10", "s1", T(1, 14))
    h.stage("K10", T(1, 16), "s2", "manual")
    return h


async def test_coaching_points_at_the_slower_rep_and_stage_with_a_real_baseline(metrics_app):
    app, client = metrics_app
    await feed(app, delivery_order(coaching_history().events, seed=23))

    # Stays entered in Q1 that ended: alice s1 [2,2,2], s2 [10,10,10]; bob s1 [4,4,4,2,2] (K10's two visits),
    # s2 [1,1,1,2] (K10's s2 → back to s1 is not a conversion); T1 s1 median of [2,2,2,2,2,4,4,4] = 2, s2 of
    # [1,1,1,2,10,10,10] = 2. carol alone in T2: t1 [2]. K8 (nobody's) is no rep row.
    body = await get(client, "coaching", **Q1)
    assert pick(body["rows"], "rep_id", "stage_id", "exits", "conversion_pct", "team_conversion_pct",
                "median_days_in_stage", "team_median_days_in_stage", "median_vs_team_ratio") == [
        ("alice", "s1", 3, 100.0, 100.0, 2.0, 2.0, 1.0), ("alice", "s2", 3, 100.0, 85.71, 10.0, 2.0, 5.0),
        ("bob", "s1", 5, 100.0, 100.0, 4.0, 2.0, 2.0), ("bob", "s2", 4, 75.0, 85.71, 1.0, 2.0, 0.5),
        ("carol", "t1", 1, 100.0, 100.0, 2.0, 2.0, 1.0)]
    # slower only: alice on s2 (5×), bob on s1 (2×); carol is nowhere slower than her team → none
    assert pick(body["stalls_most"], "rep_id", "slower_than_team", "stage_id", "median_vs_team_ratio") == [
        ("alice", True, "s2", 5.0), ("bob", True, "s1", 2.0), ("carol", False, None, None)]
    assert body["unassigned"] == [{"team_id": None, "pipeline_id": "p1", "stage_id": "s1", "exits": 1}]

    # Compliance, exits in Q1: a win is compliant; manual exits without tasks are not; K10's first s1 visit had
    # its own task done (compliant), its second visit's task was never done (not), whatever the other visit did.
    # alice 3 of 6; bob 3 wins + K10's first s1 visit = 4 of 9; carol 0 of 1; nobody's K8 0 of 1 (uncovered:
    # no owner). Coverage: open leads now — K8 (no owner ✗), K9, K10, K7.
    body = await get(client, "adoption", **Q1)
    assert pick(body["rows"], "group", "open_leads", "covered", "stage_exits", "compliant_exits", "compliance_pct") == [
        (None, 1, 0, 1, 0, 0.0), ("alice", 1, 1, 6, 3, 50.0), ("bob", 1, 1, 9, 4, 44.44), ("carol", 1, 1, 1, 0, 0.0)]
    assert body["time_basis"]["coverage"].startswith("open leads as of 2026-04-15")

    # Stalled, Q1 baseline (the team's stays entered in Q1, at least 5): T1 s1 8 stays, p75 = rank 6 of
    # [2,2,2,2,2,4,4,4] = 4 d; T1 s2 7 stays, p75 = rank 6 of [1,1,1,2,10,10,10] = 10 d. K10 in s2 since Jan 16 =
    # 89 d (79 over), K9 in s1 since Mar 1 = 45 d (41 over). K7 in t2: no t2 stay anywhere → not judged.
    rows = (await get(client, "stalled-deals", **Q1))["rows"]
    assert pick(rows, "lead_id", "rep_id", "days_in_stage", "team_p75_days", "days_over", "baseline",
                "baseline_stays") == [("K10", "bob", 89.0, 10.0, 79.0, "team_period", 7),
                                      ("K9", "alice", 45.0, 4.0, 41.0, "team_period", 8)]
    # 5-20 March: no stay entered then; the team's year before Mar 20 is the baseline (same stays here), shown
    body = await get(client, "stalled-deals", **MARCH_5_20)
    assert pick(body["rows"], "lead_id", "team_p75_days", "baseline", "baseline_stays") == [
        ("K10", 10.0, "team_trailing_year", 7), ("K9", 4.0, "team_trailing_year", 8)]
    # nobody owns K8: listed apart, compared with no one (in s2 since Jan 8 = 97 d)
    assert pick(body["unassigned"], "lead_id", "stage_id", "days_in_stage") == [("K8", "s2", 97.0)]
    alice = auth_headers(ORG, "rep", "alice")
    mine = await get(client, "stalled-deals", headers=alice, **Q1)
    assert (pick(mine["rows"], "lead_id"), mine["unassigned"]) == ([("K9",)], [])

    for path in ("coaching", "stalled-deals"):
        refused = await client.get(f"/v1/reports/{path}", params={**Q1, "group_by": "team"},
                                   headers=auth_headers(ORG, "manager", "boss"))
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "group_by"

    incremental, models = await all_reports(client, CHECKED), await dump_read_models(app)
    await rebuild_read_models(app.state.context.database, ORG)
    assert await all_reports(client, CHECKED) == incremental
    assert await dump_read_models(app) == models
