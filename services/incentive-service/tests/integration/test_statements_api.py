"""Statements over HTTP on the real PostgreSQL: a plan with tiers, a SPIFF, a split and a clawback; wins through the
normal events; statements that explain themselves; the workflow, a dispute, versions, the lock, a clawback after
it, payroll export, payouts in the participant's currency, the audit log. Amounts computed by hand."""
from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

from incentive_testkit import Incentives, recalculate, win_deal

from salesflow_shared.events import ExchangeRateSetV1, LeadReopenedV1, QuotaSetV1

PLAN = {
    "name": "AE 2027", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
    "coverage": {"participants": ["ann", "sam"]},
    "credit": {"splits": [{"to": "closer", "percent": "80"}, {"to": "sam", "percent": "20"}]},
    "base_rate": "0.08",
    "tiers": {"mode": "marginal", "bands": [{"from": "0", "to": "100", "rate": "0.08"},
                                            {"from": "100", "to": None, "rate": "0.12"}]},
    "spiffs": [{"name": "Cloud launch", "kind": "product_line", "product_line": "cloud", "amount": "500"}],
    "clawback": {"days": 90},
}
FEB_10 = datetime(2027, 2, 10, 15, tzinfo=UTC)
FEB_20 = datetime(2027, 2, 20, 15, tzinfo=UTC)


async def _setup(incentives: Incentives) -> dict:
    bad = await incentives.client.post("/v1/plans", headers=incentives.headers(role="manager", sub="mia"), json={
        **PLAN, "credit": {"splits": [{"to": "closer", "percent": "80"}, {"to": "sam", "percent": "10"}]}})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"] == [{"field": "credit.splits", "message": "percentages must sum to 100, not 90"}]
    created = await incentives.client.post("/v1/plans", json=PLAN,
                                           headers=incentives.headers(role="manager", sub="mia"))
    assert created.status_code == 201, created.text
    overlapping = await incentives.client.post("/v1/plans", headers=incentives.headers(), json={
        **PLAN, "name": "Other", "coverage": {"participants": ["ann"]}, "effective_from": "2027-03-01"})
    assert overlapping.status_code == 422 and overlapping.json()["errors"][0]["field"] == "effective_from"
    await incentives.dispatch(incentives.envelope(QuotaSetV1(
        quota_id="q-ann", scope="rep", scope_id="ann", period="quarter", period_start=date(2027, 1, 1),
        period_end=date(2027, 4, 1), amount=Decimal("100000"), currency="EUR"), "q-ann"))
    await win_deal(incentives, "lead-1", "ann", "60000", FEB_10, product_line="cloud")
    await win_deal(incentives, "lead-2", "ann", "50000", FEB_20)
    await recalculate(incentives)
    return created.json()


async def _statement(incentives: Incentives, participant: str, start: str = "2027-01-01", **headers) -> dict:
    listed = await incentives.client.get("/v1/statements", params={"participant_id": participant,
                                                                   "period_start": start},
                                         headers=headers or incentives.headers())
    items = listed.json()["items"]
    assert len(items) == 1, listed.text
    return (await incentives.client.get(f"/v1/statements/{items[0]['statement_id']}",
                                        headers=headers or incentives.headers())).json()


async def test_statements_are_computed_from_wins_and_explain_every_amount(incentives: Incentives):
    await _setup(incentives)
    ann = await _statement(incentives, "ann")
    # ann: 80 % of 60,000 and 50,000 = 48,000 + 40,000 = 88 % of the 100,000 quota, all in band 0 (8 %):
    # 3,840 + 3,200; the cloud SPIFF 500 × 80 % = 400.
    assert [(line["kind"], line["lead_id"], line["amount"]) for line in ann["lines"]] == [
        ("commission", "lead-1", "3840.00"), ("commission", "lead-2", "3200.00"), ("spiff", "lead-1", "400.00")]
    assert (ann["total"], ann["payout"], ann["payout_currency"], ann["status"], ann["version"]) == (
        "7440.00", "7440.00", "EUR", "computed", 1)
    assert ann["summary"]["attainment_pct"] == "88.00"
    explained = (await incentives.client.get(
        f"/v1/statements/{ann['statement_id']}/lines/{ann['lines'][0]['line_id']}/explain",
        headers=incentives.headers())).json()
    assert explained["rule"] == "tiers.bands[0]" and explained["steps"][0] == \
        "deal lead-1 won 2027-02-10 for 60,000.00 EUR"
    assert "credit 80% (split, credit.splits[0]" in explained["steps"][1]
    assert explained["steps"][-1] == "commission = 3,840.00 EUR"
    # sam: 20 % of each deal with no quota: the base rate, 960 + 800, and 100 of the SPIFF.
    sam = await _statement(incentives, "sam")
    assert sam["total"] == "1860.00" and "no quota" in sam["summary"]["warnings"][0]


async def test_reps_see_their_statement_once_approved_dispute_it_and_the_period_is_locked_and_exported(
        incentives: Incentives):
    await _setup(incentives)
    manager = incentives.headers(role="manager", sub="mia")
    ann_headers = incentives.headers(role="rep", sub="ann")
    ann = await _statement(incentives, "ann")
    sid = ann["statement_id"]
    assert (await incentives.client.get(f"/v1/statements/{sid}", headers=ann_headers)).status_code == 404
    assert (await incentives.client.get("/v1/statements", headers=ann_headers)).json()["items"] == []
    assert (await incentives.client.post(f"/v1/statements/{sid}/approve", headers=manager)).status_code == 409
    assert (await incentives.client.post(f"/v1/statements/{sid}/review", headers=ann_headers)).status_code == 403
    assert (await incentives.client.post(f"/v1/statements/{sid}/review", headers=manager)).status_code == 200
    approved = await incentives.client.post(f"/v1/statements/{sid}/approve", headers=manager)
    assert approved.json()["status"] == "approved" and approved.json()["approved_by"] == "mia"

    seen = (await incentives.client.get(f"/v1/statements/{sid}", headers=ann_headers)).json()
    assert seen["total"] == "7440.00"
    assert (await incentives.client.get(f"/v1/statements/{sid}", headers=incentives.headers(role="rep", sub="sam"))
            ).status_code == 404
    line = seen["lines"][1]  # lead-2's commission
    incentives.clock.advance(hours=3)
    opened = await incentives.client.post(f"/v1/statements/{sid}/lines/{line['line_id']}/disputes",
                                          json={"comment": "lead-2 was 55,000"}, headers=ann_headers)
    assert opened.status_code == 201, opened.text
    assert (await incentives.client.get(f"/v1/statements/{sid}", headers=manager)).json()["open_disputes"] == 1
    incentives.clock.advance(hours=2)
    resolved = await incentives.client.post(f"/v1/disputes/{opened.json()['dispute_id']}/resolve", headers=manager,
                                            json={"outcome": "accepted", "resolution": "value was 55,000",
                                                  "amount": "320.00"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "accepted" and resolved.json()["seconds_to_resolve"] == 7200
    await recalculate(incentives)

    # The approved version stays readable; the new version adds the adjustment as a line.
    v2 = await _statement(incentives, "ann")
    assert v2["version"] == 2 and v2["status"] == "computed" and v2["total"] == "7760.00"
    assert [(line["kind"], line["amount"]) for line in v2["lines"]][-1] == ("recalculation", "320.00")
    assert v2["lines"][-1]["reason"] == "adjustment"
    v1 = (await incentives.client.get(f"/v1/statements/{sid}", headers=ann_headers)).json()
    assert (v1["status"], v1["total"]) == ("superseded", "7440.00")
    assert (await incentives.client.get(f"/v1/statements/{v2['statement_id']}", headers=ann_headers)).status_code == 404

    for action in ("review", "approve", "lock"):
        moved = await incentives.client.post(f"/v1/payouts/periods/2027-01-01/{action}", headers=manager)
        assert moved.status_code == 200 and len(moved.json()["statements"]) == 2, moved.text
    exported = await incentives.client.get("/v1/payouts/periods/2027-01-01/export", headers=manager)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["participant_id"], r["currency"], r["amount"], r["statement_version"], r["status"]) for r in rows] == [
        ("ann", "EUR", "7760.00", "2", "locked"), ("sam", "EUR", "1860.00", "1", "locked")]
    assert (await incentives.client.get("/v1/payouts/periods/2027-01-01/export", headers=ann_headers)
            ).status_code == 403

    # Locked is immutable: a reopening within 90 days takes lead-1's commission and SPIFF back on the next statement.
    await incentives.dispatch(incentives.envelope(LeadReopenedV1(
        lead_id="lead-1", pipeline_id="p1", reopened_at=datetime(2027, 4, 5, tzinfo=UTC)), "lead-1"))
    incentives.clock.set(datetime(2027, 4, 6, 9, tzinfo=UTC))
    await recalculate(incentives)
    assert (await _statement(incentives, "ann"))["total"] == "7760.00"
    q2 = await _statement(incentives, "ann", "2027-04-01")
    assert sorted((line["kind"], line["lead_id"], line["amount"]) for line in q2["lines"]) == [
        ("clawback", "lead-1", "-3840.00"), ("clawback", "lead-1", "-400.00")]
    await recalculate(incentives)  # nothing more to carry
    assert (await _statement(incentives, "ann", "2027-04-01"))["version"] == 1

    events = {e["type"] for e in await incentives.outbox()}
    assert {"StatementComputed", "StatementApproved", "StatementLocked", "DisputeOpened", "DisputeResolved"} <= events
    trail = (await incentives.client.get("/v1/payouts/audit", params={"entity": "dispute"}, headers=manager)).json()
    assert [(e["action"], e["actor"]) for e in trail["items"]] == [("dispute_resolved", "mia"),
                                                                  ("dispute_opened", "ann")]
    assert trail["items"][0]["before"]["status"] == "open" and trail["items"][0]["after"]["status"] == "accepted"


async def test_a_participant_is_paid_in_their_currency_and_what_if_writes_nothing(incentives: Incentives):
    await _setup(incentives)
    await incentives.dispatch(incentives.envelope(ExchangeRateSetV1(
        base_currency="EUR", quote_currency="USD", rate=Decimal("1.10"), valid_from=date(2027, 1, 1)), "EUR-USD"))
    assert (await incentives.client.put("/v1/payees/sam", json={"currency": "USD"},
                                        headers={**incentives.headers(), **await incentives.payee_if_match("sam")})
            ).status_code == 200
    await incentives.client.post("/v1/statements/compute", json={"on": "2027-02-15"}, headers=incentives.headers())
    sam = await _statement(incentives, "sam")
    assert (sam["total"], sam["payout"], sam["payout_currency"]) == ("1860.00", "2046.00", "USD")

    before = await incentives.outbox()
    # 20,000 more: ann's 80 % (16,000) takes her from 88 % to 104 %: 12,000 at 8 % + 4,000 at 12 % = 1,440.
    answer = await incentives.client.post("/v1/statements/what-if", headers=incentives.headers(role="rep", sub="ann"),
                                          json={"value": "20000", "currency": "EUR", "won_at": "2027-03-01T10:00:00Z"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["earned"], body["attainment_pct_now"], body["attainment_pct_with_deal"]) == ("1440.00", "88.00",
                                                                                             "104.00")
    assert await incentives.outbox() == before


async def test_a_statement_of_many_lines_is_stored_whole_with_its_explanations(incentives: Incentives):
    await _setup(incentives)
    for i in range(30):  # 30 more deals of 1,000: a statement long enough to be written with COPY
        await win_deal(incentives, f"many-{i:02d}", "ann", "1000", datetime(2027, 3, 1, 9, i, tzinfo=UTC))
    await recalculate(incentives)
    ann = await _statement(incentives, "ann")
    # 88,000 + 30 × 800 = 112,000 credited (112 %), marginal: the first 88,000 at 8 % (7,040), then 12,000 at 8 %
    # (960) and the last 12,000 at 12 % (1,440); the SPIFF 400.
    assert len(ann["lines"]) == 33 and [line["seq"] for line in ann["lines"]] == list(range(33))
    assert Decimal(ann["total"]) == sum(Decimal(line["amount"]) for line in ann["lines"]) == Decimal("7040.00") + \
        Decimal("960.00") + Decimal("1440.00") + Decimal("400.00")
    last = (await incentives.client.get(
        f"/v1/statements/{ann['statement_id']}/lines/{ann['lines'][31]['line_id']}/explain",
        headers=incentives.headers())).json()
    assert last["lead_id"] == "many-29" and last["steps"][-1] == "commission = 96.00 EUR"


async def test_a_plan_defined_after_the_fact_computes_the_past_periods_statements(incentives: Incentives):
    await win_deal(incentives, "old-1", "ann", "20000", datetime(2026, 11, 5, tzinfo=UTC))
    await recalculate(incentives)
    assert (await incentives.client.get("/v1/statements", headers=incentives.headers())).json()["items"] == []
    created = await incentives.client.post("/v1/plans", headers=incentives.headers(), json={
        **PLAN, "effective_from": "2026-10-01", "tiers": None, "base_rate": "0.10"})
    assert created.status_code == 201, created.text
    await recalculate(incentives)  # today is 2027-02-15: Q4 2026 and Q1 2027
    q4 = await _statement(incentives, "ann", "2026-10-01")
    assert [(line["lead_id"], line["amount"]) for line in q4["lines"]] == [("old-1", "1600.00")]  # 80 % × 20,000 × 10 %
    assert (await _statement(incentives, "ann", "2027-01-01"))["lines"] == []


async def test_a_new_plan_version_needs_the_etag_of_the_newest_one(incentives: Incentives):
    manager = incentives.headers(role="manager", sub="mia")
    created = await incentives.client.post("/v1/plans", json=PLAN, headers=manager)
    plan_url = f"/v1/plans/{created.json()['plan_id']}"
    read = await incentives.client.get(plan_url, headers=manager)
    assert read.headers["ETag"] == '"1"'
    raised = {**PLAN, "base_rate": "0.09"}
    assert (await incentives.client.put(plan_url, json=raised, headers=manager)).status_code == 428
    weak = await incentives.client.put(plan_url, json=raised, headers={**manager, "If-Match": 'W/"1"'})
    assert weak.status_code == 412
    second = await incentives.client.put(plan_url, json=raised, headers={**manager, "If-Match": '"1"'})
    assert second.status_code == 200 and second.json()["version"] == 2 and second.headers["ETag"] == '"2"'
    # another manager still holding version 1 cannot replace version 2 unseen
    stale = await incentives.client.put(plan_url, json={**PLAN, "base_rate": "0.05"},
                                        headers={**manager, "If-Match": '"1"'})
    assert stale.status_code == 412
    newest = (await incentives.client.get(plan_url, headers=manager)).json()
    assert newest["version"] == 2 and newest["document"]["base_rate"] == "0.09"


async def test_a_retried_approval_gets_the_first_answer_instead_of_a_conflict_and_is_announced_once(
        incentives: Incentives):
    await _setup(incentives)
    manager = incentives.headers(role="manager", sub="mia")
    sid = (await _statement(incentives, "ann"))["statement_id"]
    assert (await incentives.client.post(f"/v1/statements/{sid}/review", headers=manager)).status_code == 200
    keyed = {**manager, "Idempotency-Key": "approve-ann-q1"}
    first = await incentives.client.post(f"/v1/statements/{sid}/approve", headers=keyed)
    assert first.status_code == 200 and first.json()["status"] == "approved"
    # without the key a second approval is refused (409: already approved); with it, the first answer comes back
    retry = await incentives.client.post(f"/v1/statements/{sid}/approve", headers=keyed)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert (await incentives.client.post(f"/v1/statements/{sid}/approve", headers=manager)).status_code == 409
    assert len(await incentives.outbox("StatementApproved")) == 1
    # the statement read carries a strong ETag; holding it, a client gets 304 and no body
    read = await incentives.client.get(f"/v1/statements/{sid}", headers=manager)
    etag = read.headers["ETag"]
    assert etag.startswith('"') and read.json()["status"] == "approved"
    unchanged = await incentives.client.get(f"/v1/statements/{sid}", headers={**manager, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
