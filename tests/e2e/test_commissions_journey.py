"""Commissions end to end across the running services, all over HTTP.

A manager defines a plan with retroactive tiers, a product-line SPIFF, a split with a sales engineer, a manager
overlay and a clawback; leads are created in lead-service, routed by assignment-service to the rep, won in
pipeline-service; incentive-service's statements appear and explain themselves; a refund claws a deal back; the
rep sees the statement once approved and disputes a line; the manager resolves it; the period is locked and
exported for payroll. The rep's quota arrives as metrics-service publishes it (QuotaSet on the bus)."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from e2e_testkit import (
    ASSIGNMENT,
    INCENTIVE,
    LEAD,
    PIPELINE,
    World,
    admin,
    fallback_rule,
    manager,
    new_org,
    ok,
    poll,
    position,
    put_rules,
    quarter_start,
    rep,
    setup_team,
)

from salesflow_shared.bus import RabbitBus
from salesflow_shared.events import QuotaSetV1, make_event
from salesflow_shared.testing import AMQP_URL, publish_envelope


def plan(team_id: str, start: str) -> dict:
    return {
        "name": "Inside sales", "currency": "EUR", "period": "quarter", "effective_from": start,
        "coverage": {"participants": ["ann", "sam", "mia"]},
        "credit": {"splits": [{"to": "closer", "percent": "80"}, {"to": "sam", "percent": "20"}],
                   "overlays": [{"participant": "mia", "teams": [team_id], "percent": "10"}]},
        "base_rate": "0.05",
        "tiers": {"mode": "retroactive", "bands": [{"from": "0", "to": "100", "rate": "0.05"},
                                                   {"from": "100", "to": None, "rate": "0.10"}]},
        "spiffs": [{"name": "CRM push", "kind": "product_line", "product_line": "crm", "amount": "200"}],
        "clawback": {"days": 30},
    }


async def test_a_plan_pays_wins_from_the_normal_flow_and_the_period_is_approved_locked_and_exported(world: World):
    org = new_org("commissions")
    today = datetime.now(UTC).date()
    start = quarter_start(today)
    async with world.client(ASSIGNMENT, admin(org)) as assignment_api, world.client(PIPELINE, admin(org)) as pipe, \
            world.client(LEAD, admin(org)) as lead_api, world.client(INCENTIVE, manager(org)) as incentives, \
            world.client(INCENTIVE, rep(org, "ann")) as ann_incentives:
        pipeline = await ok(pipe.post("/v1/pipelines/templates/inbound-web-form/instantiate", json={}), 201)
        team = await setup_team(assignment_api, org, ["ann"], "Inside")
        await ok(assignment_api.post("/v1/reps", json={"user_id": "sam", "name": "Sam", "email": f"sam@{org}.example"}),
                 201)
        await put_rules(assignment_api, [fallback_rule(pipeline["id"], team)])

        refused = await incentives.post("/v1/plans", json={**plan(team, start.isoformat()), "credit": {
            "splits": [{"to": "closer", "percent": "80"}, {"to": "sam", "percent": "30"}]}})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "credit.splits"
        await ok(incentives.post("/v1/plans", json=plan(team, start.isoformat())), 201)
        # ann's quota for the quarter, as metrics-service announces it.
        feeder = RabbitBus(AMQP_URL, namespace=world.system.namespace, client_name="e2e-quota")
        await feeder.start()
        try:
            await publish_envelope(feeder, make_event(QuotaSetV1(
                quota_id=f"q-{org}", scope="rep", scope_id="ann", period="quarter", period_start=start,
                period_end=(start + timedelta(days=100)).replace(day=1), amount=Decimal("10000"), currency="EUR"),
                org_id=org, subject_id=f"q-{org}", producer="metrics-service"))
        finally:
            await feeder.close()

        # ------------------------------------------------------------------ two deals won through the normal flow
        leads = []
        for name, value in (("one", "5000"), ("two", "7000")):
            lead = await ok(lead_api.post("/v1/leads", json={
                "contact": {"first_name": name, "email": f"{name}@{org}-buyer.com"}, "company": {"name": f"{name} AG"},
                "country": "DE", "value": value, "currency": "EUR", "product_line": "crm", "source": "api"}), 201)
            leads.append((lead["id"], value))

        async def routed_to_ann():
            for lead_id, _ in leads:
                pos = await position(pipe, lead_id)
                assert pos["status"] == "active" and pos["owner_id"] == "ann", pos
        await poll(routed_to_ann, timeout=30)
        async with world.client(PIPELINE, rep(org, "ann")) as ann_pipe:
            for lead_id, value in leads:
                await ok(ann_pipe.post(f"/v1/positions/{lead_id}/won", json={"value": value, "currency": "EUR"}))
        (first, _), (second, _) = leads

        async def statement_of(participant: str, lines: int) -> dict:
            listed = await ok(incentives.get("/v1/statements", params={"participant_id": participant,
                                                                       "period_start": start.isoformat()}))
            assert len(listed["items"]) == 1, listed
            body = await ok(incentives.get(f"/v1/statements/{listed['items'][0]['statement_id']}"))
            assert len(body["lines"]) == lines, body
            return body

        # ann: 80 % of 5,000 + 7,000 = 9,600 of a 10,000 quota (96 %): band 0, 5 %: 200 + 280; SPIFF 200 × 80 % twice.
        ann = await poll(lambda: statement_of("ann", 4), timeout=30)
        assert [(line["kind"], line["lead_id"], line["amount"]) for line in ann["lines"]] == [
            ("commission", first, "200.00"), ("commission", second, "280.00"), ("spiff", first, "160.00"),
            ("spiff", second, "160.00")]
        assert ann["total"] == "800.00" and ann["summary"]["attainment_pct"] == "96.00"
        sam = await statement_of("sam", 4)  # 20 %: no quota, so the 5 % base rate: 50 + 70, SPIFFs 40 + 40
        assert sam["total"] == "200.00"
        mia = await statement_of("mia", 2)  # the overlay: 10 % of each win at 5 %, no SPIFF
        assert [line["amount"] for line in mia["lines"]] == ["25.00", "35.00"]
        explained = await ok(incentives.get(
            f"/v1/statements/{ann['statement_id']}/lines/{ann['lines'][1]['line_id']}/explain"))
        assert explained["steps"][0].startswith(f"deal {second} won ") and explained["steps"][-1] == \
            "commission = 280.00 EUR"

        # ------------------------------------------------------------------ a refund claws the second deal back
        await ok(incentives.post(f"/v1/credits/{second}/refunds", json={"note": "customer cancelled"}), 201)
        # ann: 4,000 credited (40 %), 5 %: 200, and the first deal's SPIFF.
        ann = await poll(lambda: _total(incentives, ann["statement_id"], "360.00"), timeout=30)
        assert [(line["kind"], line["lead_id"], line["amount"]) for line in ann["lines"]] == [
            ("commission", first, "200.00"), ("clawback", second, "0.00"), ("spiff", first, "160.00")]

        # ------------------------------------------------------------------ approval, dispute, lock, export
        assert (await ann_incentives.get(f"/v1/statements/{ann['statement_id']}")).status_code == 404
        for action in ("review", "approve"):
            moved = await ok(incentives.post(f"/v1/payouts/periods/{start}/{action}"))
            assert len(moved["statements"]) == 3
        mine = await ok(ann_incentives.get(f"/v1/statements/{ann['statement_id']}"))
        dispute = await ok(ann_incentives.post(
            f"/v1/statements/{ann['statement_id']}/lines/{mine['lines'][1]['line_id']}/disputes",
            json={"comment": "the refund was only partial"}), 201)
        resolved = await ok(incentives.post(f"/v1/disputes/{dispute['dispute_id']}/resolve", json={
            "outcome": "rejected", "resolution": "the whole contract was cancelled"}))
        assert resolved["status"] == "rejected" and resolved["seconds_to_resolve"] >= 0
        assert (await ok(ann_incentives.get("/v1/disputes")))["items"][0]["resolution"] == \
            "the whole contract was cancelled"
        locked = await ok(incentives.post(f"/v1/payouts/periods/{start}/lock"))
        assert len(locked["statements"]) == 3
        exported = await incentives.get(f"/v1/payouts/periods/{start}/export")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        rows = {r["participant_id"]: (r["currency"], r["amount"], r["statement_version"])
                for r in csv.DictReader(io.StringIO(exported.text))}
        assert rows == {"ann": ("EUR", "360.00", "1"), "sam": ("EUR", "90.00", "1"), "mia": ("EUR", "25.00", "1")}


async def _total(client, statement_id: str, wanted: str) -> dict:
    body = await ok(client.get(f"/v1/statements/{statement_id}"))
    assert body["total"] == wanted, body
    return body
