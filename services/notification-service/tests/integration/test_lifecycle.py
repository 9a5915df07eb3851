"""Erasure, the delivery log's access rules, and the embedded mode (SQLite + in-process bus)."""
from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from notification_fakes import FakeMailchimp
from notification_testkit import Harness

from notification_service.adapters.orm import leads
from notification_service.config import Settings
from notification_service.entrypoints.http import create_app
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    ContactData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadErasedV1,
    LeadSnapshot,
    StageAdvancedV1,
    make_event,
)
from salesflow_shared.testing import SmtpSink, auth_headers, eventually, running_app, service_test_settings


def entered(lead_id: str, stage_id: str) -> StageAdvancedV1:
    return StageAdvancedV1(lead_id=lead_id, pipeline_id="pipe-1", to_stage_id=stage_id, to_stage_name=stage_id,
                           to_stage_position=1, reason="entry", entered_at=datetime.now(UTC))


async def test_erasure_stops_everything_scrubs_the_log_and_archives_the_contact(harness: Harness):
    await harness.client.put("/v1/mailchimp/settings", json={"api_key": "k-us6"},
                             headers={**harness.admin, "If-Match": '"0"'})
    await harness.define_pipeline("pipe-1", ["s1", "s2"])
    await harness.post("/v1/mailchimp/rules", {"stage_id": "s1", "action": "subscribe", "list_id": "L1"})
    first = await harness.template("First", "Hello {{ lead.first_name }}")
    later = await harness.template("Later", "Again {{ lead.first_name }}")
    await harness.post("/v1/sequences", {"name": "s", "trigger": "stage_entry", "stage_id": "s1",
                                         "steps": [{"template_id": first},
                                                   {"template_id": later, "delay_minutes": 60}]})
    lead = await harness.lead(email="gone@prospect.example", first_name="Gonzo")
    await harness.handled(await harness.send(LeadAssignedV1(lead_id=lead, owner_id="rep-1", owner_email="r@x.io",
                                                            reason="rr"), lead))
    await harness.handled(await harness.send(entered(lead, "s1"), lead))
    await harness.settled()
    assert len(harness.smtp.to("gone@prospect.example")) == 1

    await harness.handled(await harness.send(LeadErasedV1(lead_id=lead), lead))
    harness.clock.advance(hours=2)
    await harness.settled()
    assert len(harness.smtp.to("gone@prospect.example")) == 1
    member = hashlib.md5(b"gone@prospect.example").hexdigest()
    assert harness.mailchimp.members[("L1", member)]["status"] == "archived"
    [enrollment] = await harness.enrollments(lead)
    assert enrollment["stop_reason"] == "erased"
    rows = await harness.deliveries(lead_id=lead)
    assert {r["recipient_kind"] for r in rows} == {"prospect", "rep", "list"}
    for row in rows:
        assert "gone@prospect.example" not in str(row["payload"]) + str(row["recipient"])
        assert "Gonzo" not in str(row["payload"])
    async with harness.context.database.session() as session:
        row = (await session.execute(sa.select(leads).where(leads.c.lead_id == lead))).mappings().one()
    assert row["erased"] and row["email"] is None and row["first_name"] is None
    # a late LeadUpdated/LeadCreated replay cannot bring the data back
    snapshot = LeadSnapshot(lead_id=lead, contact=ContactData(email="gone@prospect.example"))
    await harness.handled(await harness.send(LeadCreatedV1(lead=snapshot), lead, version=99))
    async with harness.context.database.session() as session:
        assert (await session.execute(sa.select(leads.c.email).where(leads.c.lead_id == lead))).scalar_one() is None


async def test_delivery_log_is_scoped_by_org_and_rep(harness: Harness):
    template = await harness.template("Hello", "Hello {{ lead.first_name }}")
    await harness.post("/v1/sequences", {"name": "s", "trigger": "stage_entry", "stage_id": "s1",
                                         "steps": [{"template_id": template}]})
    mine, theirs = await harness.lead(), await harness.lead()
    for lead, rep in ((mine, "rep-1"), (theirs, "rep-2")):
        await harness.handled(await harness.send(LeadAssignedV1(lead_id=lead, owner_id=rep, owner_email=f"{rep}@x.io",
                                                                reason="rr"), lead))
        await harness.handled(await harness.send(entered(lead, "s1"), lead))
    await harness.settled()
    as_rep = await harness.client.get("/v1/deliveries", headers=auth_headers(harness.org, "rep", "rep-1"))
    assert {(d["lead_id"], d["recipient_kind"]) for d in as_rep.json()["items"]} == {
        (mine, "prospect"), (mine, "rep")}
    assert "payload" not in as_rep.json()["items"][0]
    page1 = (await harness.client.get("/v1/deliveries", params={"limit": 2}, headers=harness.admin)).json()
    page2 = (await harness.client.get("/v1/deliveries", params={"limit": 2, "cursor": page1["next_cursor"]},
                                      headers=harness.admin)).json()
    assert len(page1["items"]) == 2 and len(page2["items"]) == 2 and page2["next_cursor"] is None
    assert not {d["id"] for d in page1["items"]} & {d["id"] for d in page2["items"]}
    other_org = await harness.client.get("/v1/deliveries", params={"lead_id": mine}, headers=auth_headers("org-z"))
    assert other_org.json()["items"] == []
    assert (await harness.client.get("/v1/deliveries", params={"cursor": "junk"},
                                     headers=harness.admin)).status_code == 422
    metrics = (await harness.client.get("/metrics")).text
    assert 'salesflow_delivery_attempts_total{kind="email",outcome="ok"} 4.0' in metrics


async def test_embedded_mode_sqlite_and_in_process_bus(tmp_path, smtp_sink: SmtpSink, fake_mailchimp: FakeMailchimp):
    clock = ManualClock(datetime(2026, 1, 5, 10, tzinfo=UTC))
    settings = service_test_settings(Settings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
                                     smtp_port=smtp_sink.port, scheduler_poll_interval_s=0.05)
    app = create_app(settings, clock=clock)
    async with running_app(app) as client:
        headers = auth_headers("org-e")
        template = (await client.post("/v1/templates", headers=headers, json={
            "name": "t", "subject": "Hi {{ lead.first_name }}", "html_body": "<p>x</p>", "text_body": "x"})).json()
        assert (await client.post("/v1/sequences", headers=headers, json={
            "name": "s", "trigger": "lead_created", "steps": [{"template_id": template["id"]}]})).status_code == 201
        context = app.state.context
        snapshot = LeadSnapshot(lead_id="l-e", contact=ContactData(first_name="Eve", email="eve@prospect.example"))
        await context.dispatcher.dispatch(make_event(LeadCreatedV1(lead=snapshot), org_id="org-e", subject_id="l-e"))

        async def sent():
            assert [m["Subject"] for m in smtp_sink.to("eve@prospect.example")] == ["Hi Eve"]
            log = (await client.get("/v1/deliveries", headers=headers)).json()["items"]
            assert [d["status"] for d in log] == ["sent"]
        await eventually(sent)


async def test_a_graceful_stop_lets_messages_on_the_wire_finish_and_be_recorded(
        shared_database_url, amqp_url, bus_namespace, smtp_sink: SmtpSink, fake_mailchimp: FakeMailchimp):
    smtp_sink.delay_s = 1.0
    org = f"org-{uuid.uuid4().hex[:8]}"
    clock = ManualClock(datetime(2026, 1, 5, 10, tzinfo=UTC))
    settings = service_test_settings(Settings, database_url=shared_database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, smtp_port=smtp_sink.port, db_pool_size=3,
                                     scheduler_poll_interval_s=0.05)
    app = create_app(settings, clock=clock)
    async with running_app(app):
        context = app.state.context
        await context.dispatcher.dispatch(make_event(LeadCreatedV1(lead=LeadSnapshot(
            lead_id="l-1", contact=ContactData(first_name="Lee"))), org_id=org, subject_id="l-1"))
        await context.dispatcher.dispatch(make_event(LeadAssignedV1(
            lead_id="l-1", owner_id="rep-1", owner_email="rep-1@x.io", reason="rr"), org_id=org, subject_id="l-1"))

        async def on_the_wire():
            assert smtp_sink.receiving == 1
        await eventually(on_the_wire)
    # the app stopped while the relay was still answering: the attempt finished and was recorded
    assert len(smtp_sink.to("rep-1@x.io")) == 1
    app = create_app(settings, clock=clock)
    async with running_app(app), app.state.context.database.session() as session:
        log = (await session.execute(sa.text("SELECT status FROM deliveries WHERE org_id = :org"),
                                     {"org": org})).scalars().all()
    assert log == ["sent"]
