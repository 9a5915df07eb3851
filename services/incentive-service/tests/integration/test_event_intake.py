"""What incentive-service learns from the other services' events: deals and each of their outcomes, the rep
directory, quotas and the currency model — each once however often it is delivered, in any order."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from incentive_testkit import NOW, Incentives, build_app, new_lead

from incentive_service.adapters.orm import deal_outcomes, deals, exchange_rates, payees, quotas, recalculation_queue
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    CompanyData,
    ExchangeRateSetV1,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadSnapshot,
    LeadUpdatedV1,
    LeadWonV1,
    QuotaRemovedV1,
    QuotaSetV1,
    RepCreatedV1,
    RepSnapshot,
)
from salesflow_shared.testing import eventually, running_app


async def test_a_win_arriving_through_rabbitmq_twice_is_recorded_once_with_its_closer(incentives: Incentives):
    lead = new_lead()
    await incentives.send(incentives.envelope(LeadCreatedV1(lead=LeadSnapshot(
        lead_id=lead, product_line="cloud", value=Decimal("900"), currency="EUR",
        company=CompanyData(name="Acme GmbH"))), lead))
    await incentives.send(incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="ann", team_id="t1",
                                                             reason="test"), lead))
    won = incentives.envelope(LeadWonV1(lead_id=lead, pipeline_id="p1", value=Decimal("1000.00"), currency="EUR",
                                        won_at=datetime(2027, 2, 10, 12, tzinfo=UTC)), lead)
    await incentives.send(won)
    await incentives.send(won)  # a redelivery

    async def recorded():
        rows = await incentives.rows(deal_outcomes, deal_outcomes.c.lead_id == lead)
        assert [(r["kind"], r["value"], r["currency"], r["owner_id"]) for r in rows] == [
            ("won", Decimal("1000.00"), "EUR", "ann")]
        deal = (await incentives.rows(deals, deals.c.lead_id == lead))[0]
        assert (deal["product_line"], deal["company_key"], deal["team_id"]) == ("cloud", "acme gmbh", "t1")
    await eventually(recorded)


async def test_an_older_assignment_arriving_late_does_not_replace_the_newer_owner(incentives: Incentives):
    lead = new_lead()
    newer = incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="bob", reason="manual"), lead, version=2)
    older = incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="ann", reason="first"), lead, version=1)
    await incentives.dispatch(newer)
    await incentives.dispatch(older)
    assert (await incentives.rows(deals, deals.c.lead_id == lead))[0]["owner_id"] == "bob"


async def test_directory_quotas_and_rates_are_kept_newest_version_first(incentives: Incentives):
    await incentives.dispatch(incentives.envelope(RepCreatedV1(rep=RepSnapshot(
        rep_id="ann", name="Ann", email="ann@example.com", team_ids=["t1"])), "ann"))
    quota = QuotaSetV1(quota_id="q1", scope="rep", scope_id="ann", period="quarter", period_start=date(2027, 1, 1),
                       period_end=date(2027, 4, 1), amount=Decimal("50000"), currency="eur", version=2)
    await incentives.dispatch(incentives.envelope(quota, "q1"))
    await incentives.dispatch(incentives.envelope(quota.model_copy(update={"amount": Decimal("1"), "version": 1}),
                                                  "q1"))
    await incentives.dispatch(incentives.envelope(ExchangeRateSetV1(
        base_currency="EUR", quote_currency="USD", rate=Decimal("1.1"), valid_from=date(2027, 1, 1)), "EUR-USD"))

    assert [(p["participant_id"], p["team_ids"]) for p in await incentives.rows(payees)] == [("ann", ["t1"])]
    assert [(q["amount"], q["currency"], q["removed"]) for q in await incentives.rows(quotas)] == [
        (Decimal("50000.00"), "EUR", False)]
    assert [r["rate"] for r in await incentives.rows(exchange_rates)] == [Decimal("1.10000000")]
    await incentives.dispatch(incentives.envelope(QuotaRemovedV1(quota_id="q1"), "q1-removed"))
    assert [q["removed"] for q in await incentives.rows(quotas)] == [True]


async def test_payees_currency_is_set_by_managers_and_a_rep_sees_only_themselves(incentives: Incentives):
    resp = await incentives.client.put("/v1/payees/ann", json={"currency": "usd"},
                                       headers={**incentives.headers(), "If-Match": '"0"'})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "currency"
    manager = incentives.headers(role="manager", sub="mia")
    unconditional = await incentives.client.put("/v1/payees/ann", json={"currency": "USD", "role": "ae"},
                                                headers=manager)
    assert unconditional.status_code == 428  # even a participant not known yet: "0" says "I saw none"
    resp = await incentives.client.put("/v1/payees/ann", json={"currency": "USD", "role": "ae"},
                                       headers={**manager, "If-Match": '"0"'})
    assert resp.status_code == 200, resp.text
    assert resp.json()["currency"] == "USD" and resp.json()["role"] == "ae"
    read = await incentives.client.get("/v1/payees/ann", headers=manager)
    assert read.headers["ETag"] == resp.headers["ETag"]
    again = await incentives.client.put("/v1/payees/ann", json={"currency": "EUR"},
                                        headers={**manager, "If-Match": '"0"'})
    assert again.status_code == 412  # a stale If-Match: mia's first setting would be overwritten unseen
    assert (await incentives.client.get("/v1/payees/ann", headers=incentives.headers(role="rep", sub="ann"))
            ).json()["currency"] == "USD"
    assert (await incentives.client.get("/v1/payees/ann", headers=incentives.headers(role="rep", sub="bob"))
            ).status_code == 404
    assert (await incentives.client.get("/v1/payees/ann", headers=incentives.headers(org="org-b"))).status_code == 404
    assert (await incentives.client.put("/v1/payees/ann", json={"currency": "USD"},
                                        headers=incentives.headers(role="rep", sub="ann"))).status_code == 403
    teams = await incentives.client.put("/v1/payees/sam", json={"currency": "EUR", "team_ids": ["t9"]},
                                        headers={**incentives.headers(), "If-Match": '"0"'})
    assert teams.status_code == 200 and teams.json()["team_ids"] == ["t9"]


async def test_a_win_known_before_its_owner_credits_the_owner_learnt_afterwards(incentives: Incentives):
    lead = new_lead()
    await incentives.dispatch(incentives.envelope(LeadWonV1(lead_id=lead, pipeline_id="p1", value=Decimal("10"),
                                                            currency="EUR", won_at=datetime(2027, 2, 1, tzinfo=UTC)),
                                                  lead))
    await incentives.dispatch(incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="ann", team_id="t1",
                                                                 reason="late"), lead))
    await incentives.dispatch(incentives.envelope(LeadAssignedV1(lead_id=lead, owner_id="bob", reason="later"), lead))
    rows = await incentives.rows(deal_outcomes, deal_outcomes.c.lead_id == lead)
    assert [(r["owner_id"], r["team_id"]) for r in rows] == [("ann", "t1")]  # the closer, once known, stays


async def test_ids_longer_than_stored_are_refused_naming_them(incentives: Incentives):
    resp = await incentives.client.put(f"/v1/payees/{'x' * 101}", json={"currency": "EUR"},
                                       headers={**incentives.headers(), "If-Match": '"0"'})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "participant_id"
    far = await incentives.client.post("/v1/statements/what-if", headers=incentives.headers(role="rep", sub="ann"),
                                       json={"value": "10", "currency": "EUR", "won_at": "9999-12-31T10:00:00Z"})
    assert far.status_code == 422 and far.json()["errors"][0]["field"] == "won_at"
    huge = await incentives.client.get(f"/v1/plans/p1/versions/{2 ** 40}", headers=incentives.headers())
    assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "version"


async def test_a_deal_without_a_win_queues_no_recalculation_and_one_with_a_win_does(incentives: Incentives):
    lead = new_lead()
    snapshot = {"lead_id": lead, "product_line": "crm", "value": Decimal("100"), "currency": "EUR"}
    await incentives.dispatch(incentives.envelope(LeadCreatedV1(lead=LeadSnapshot(**snapshot)), lead, version=1))
    await incentives.dispatch(incentives.envelope(LeadUpdatedV1(lead=LeadSnapshot(
        **{**snapshot, "product_line": "erp"}), changed=["product_line"]), lead, version=2))
    queued = await incentives.rows(recalculation_queue, recalculation_queue.c.subject_id == lead)
    assert queued == []  # credited on no statement: nothing to recompute
    await incentives.dispatch(incentives.envelope(LeadWonV1(lead_id=lead, pipeline_id="p1", value=Decimal("100"),
                                                            currency="EUR", owner_id="ann",
                                                            won_at=datetime(2027, 2, 1, tzinfo=UTC)), lead))
    await incentives.dispatch(incentives.envelope(LeadUpdatedV1(lead=LeadSnapshot(
        **{**snapshot, "product_line": "crm"}), changed=["product_line"]), lead, version=3))
    queued = await incentives.rows(recalculation_queue, recalculation_queue.c.subject_id == lead)
    assert [(q["subject_kind"], q["reason"]) for q in queued] == [("lead", "credit_changed")]


async def test_the_recalculation_worker_takes_a_queued_change_at_once_after_its_commit(database_url: str):
    # The safety-net poll is far off: only the commit that queued the change can have woken the worker.
    app = build_app(database_url, "", "", ManualClock(NOW), recalculation_interval_s=0.2, worker_idle_poll_s=60)
    async with running_app(app) as client:
        incentives = Incentives(client=client, context=app.state.context, clock=ManualClock(NOW), feeder=None)
        lead = new_lead()
        await incentives.dispatch(incentives.envelope(LeadWonV1(
            lead_id=lead, pipeline_id="p1", value=Decimal("10"), currency="EUR", owner_id="ann",
            won_at=datetime(2027, 2, 1, tzinfo=UTC)), lead))

        async def drained() -> None:
            assert await incentives.rows(recalculation_queue) == []
        await eventually(drained, timeout=5)
