"""What an admin sets up, through the service layer alone (embedded SQLite, in-process bus, no HTTP): the use cases
POST /v1/templates, POST /v1/sequences and their neighbours call, then the events that enroll a lead and the
workers' ticks that send its steps, on a clock the test moves (the embedded service and SMTP server: conftest.py).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from notification_service.adapters.orm import enrollments
from notification_service.service_layer import configuration as uc
from notification_service.service_layer.deliveries import DeliveryWorker
from notification_service.service_layer.sequences import SequenceScheduler
from salesflow_shared.errors import Conflict, PreconditionFailed, ValidationFailed
from salesflow_shared.events import ContactData, EventData, LeadCreatedV1, LeadSnapshot, StageAdvancedV1, make_event
from salesflow_shared.testing import EmbeddedService

ORG = "org-a"


def template_values(subject: str, **overrides: Any) -> dict[str, Any]:
    return {"name": subject, "key": None, "audience": "prospect", "subject": subject,
            "html_body": "<p>Hello {{ lead.first_name }}</p>", "text_body": "Hello {{ lead.first_name }}\n",
            **overrides}


def sequence_values(steps: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    return {"name": "Qualified follow-up", "trigger": "stage_entry", "pipeline_id": None, "stage_id": "qualified",
            "source": None, "steps": steps, "business_timezone": None, "active": True, **overrides}


async def create_template(svc: EmbeddedService, subject: str, **overrides: Any) -> str:
    async with svc.uow() as uow:
        template = await uc.create_template(uow, ORG, template_values(subject, **overrides), svc.clock.now())
        await uow.commit()
    return template.id


async def tell(svc: EmbeddedService, data: EventData, lead_id: str) -> None:
    await svc.dispatch(make_event(data, org_id=ORG, subject_id=lead_id, subject_version=1))


async def lead_enters_qualified(svc: EmbeddedService, lead_id: str, email: str) -> None:
    contact = ContactData(first_name="Ada", last_name="Lovelace", email=email)
    await tell(svc, LeadCreatedV1(lead=LeadSnapshot(lead_id=lead_id, owner_id="rep-1", contact=contact)), lead_id)
    await tell(svc, StageAdvancedV1(lead_id=lead_id, pipeline_id="pipe-1", to_stage_id="qualified",
                                    to_stage_name="Qualified", to_stage_position=1, reason="entry",
                                    entered_at=svc.clock.now()), lead_id)


async def work(svc: EmbeddedService) -> None:
    scheduler, sender = SequenceScheduler(svc.context), DeliveryWorker(svc.context)
    while await scheduler.run_once() or await sender.run_once():
        pass


async def enrollments_of(svc: EmbeddedService, lead_id: str) -> list[dict[str, Any]]:
    async with svc.session() as session:
        rows = await session.execute(sa.select(enrollments).where(enrollments.c.lead_id == lead_id))
        return [dict(r) for r in rows.mappings()]


# ------------------------------------------------------------------ a sequence created, then a lead enrolled
async def test_a_sequence_created_by_its_use_case_enrolls_the_next_lead_entering_its_stage(embedded, smtp_sink):
    svc = embedded
    welcome, follow_up = await create_template(svc, "Welcome"), await create_template(svc, "Follow-up")
    async with svc.uow() as uow:
        sequence = await uc.create_sequence(uow, ORG, sequence_values([
            {"template_id": welcome, "delay_minutes": 0, "business_hours": False},
            {"template_id": follow_up, "delay_minutes": 90, "business_hours": False}]), svc.clock.now())
        await uow.commit()
    assert (sequence.org_id, sequence.active) == (ORG, True)
    assert sequence.created_at == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # the embedded clock's Monday

    await lead_enters_qualified(svc, "lead-1", "ada@prospect.example")
    [enrollment] = await enrollments_of(svc, "lead-1")
    assert (enrollment["sequence_id"], enrollment["status"], enrollment["next_step"]) == (sequence.id, "active", 0)

    await work(svc)
    assert [m["Subject"] for m in smtp_sink.to("ada@prospect.example")] == ["Welcome"]
    svc.clock.advance(minutes=89)
    await work(svc)
    assert len(smtp_sink.to("ada@prospect.example")) == 1
    svc.clock.advance(minutes=1)
    await work(svc)
    assert [m["Subject"] for m in smtp_sink.to("ada@prospect.example")] == ["Welcome", "Follow-up"]
    [enrollment] = await enrollments_of(svc, "lead-1")
    assert (enrollment["status"], enrollment["next_step"]) == ("completed", 2)

    # Deactivated, it enrolls nobody new.
    async with svc.uow() as uow:
        stopped = await uc.deactivate_sequence(uow, ORG, sequence.id, svc.clock.now())
        await uow.commit()
    assert stopped.active is False
    await lead_enters_qualified(svc, "lead-2", "bob@prospect.example")
    await work(svc)
    assert await enrollments_of(svc, "lead-2") == [] and smtp_sink.to("bob@prospect.example") == []


async def test_a_sequence_is_refused_with_every_problem_named_and_nothing_stored(embedded):
    svc = embedded
    rep_template = await create_template(svc, "You got a lead", key="rep.lead_assigned", audience="rep")
    values = sequence_values([{"template_id": "no-such-template", "delay_minutes": 0, "business_hours": False},
                              {"template_id": rep_template, "delay_minutes": 0, "business_hours": False}],
                             stage_id=None, business_timezone="Mars/Olympus")
    async with svc.uow() as uow:
        with pytest.raises(ValidationFailed) as refused:
            await uc.create_sequence(uow, ORG, values, svc.clock.now())
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("stage_id", "a stage_entry sequence needs the stage it starts in"),
        ("business_timezone", "not an IANA time zone"),
        ("steps.0.template_id", "no such template"),
        ("steps.1.template_id", "sequence steps need a prospect template")]

    await lead_enters_qualified(svc, "lead-1", "ada@prospect.example")
    assert await enrollments_of(svc, "lead-1") == []


# ------------------------------------------------------------------ templates
async def test_templates_are_checked_by_rendering_keep_their_keys_unique_and_are_replaced_over_their_version(
        embedded):
    svc = embedded
    with pytest.raises(ValidationFailed) as refused:
        await create_template(svc, "Broken", text_body="Hello {{ lead.first_name")
    assert [e.field for e in refused.value.errors] == ["text_body"]
    first = await create_template(svc, "Assigned", key="rep.lead_assigned", audience="rep")
    with pytest.raises(Conflict):
        await create_template(svc, "Assigned again", key="rep.lead_assigned", audience="rep")

    async with svc.uow() as uow:
        await uc.replace_template(uow, ORG, first, template_values("Assigned to you", key="rep.lead_assigned",
                                                                   audience="rep"), if_match='"1"',
                                  now=svc.clock.now())
        await uow.commit()
    async with svc.uow() as uow:
        replaced = await uc.find_template(uow, ORG, first)
        assert (replaced.subject, replaced.version, uc.template_etag(replaced)) == ("Assigned to you", 2, '"2"')
        with pytest.raises(PreconditionFailed):  # the version read before the replacement is stale
            await uc.replace_template(uow, ORG, first, template_values("Again"), if_match='"1"',
                                      now=svc.clock.now())


# ------------------------------------------------------------------ Mailchimp and milestone rules
async def test_rules_naming_what_this_org_does_not_have_are_refused(embedded):
    svc = embedded
    async with svc.uow() as uow:
        for values, field, message in [
            ({"trigger": "stage_entry", "pipeline_id": "pipe-x", "stage_id": "qualified"}, "pipeline_id",
             "no pipeline 'pipe-x' in this org (or it is archived)"),
            ({"trigger": "stage_entry", "pipeline_id": None, "stage_id": "Won"}, "stage_id",
             "'Won' is not a stage but an outcome: use trigger 'won' without a stage_id"),
            ({"trigger": "won", "pipeline_id": None, "stage_id": "qualified"}, "stage_id",
             "a won rule holds in any stage: leave stage_id out"),
        ]:
            with pytest.raises(ValidationFailed) as refused:
                await uc.create_mailchimp_rule(uow, ORG, {**values, "action": "subscribe", "list_id": "list-1",
                                                          "tags": [], "merge_fields": {},
                                                          "status_if_new": "subscribed"}, svc.clock.now())
            assert [(e.field, e.message) for e in refused.value.errors] == [(field, message)]
        with pytest.raises(ValidationFailed) as refused:
            await uc.create_milestone_rule(uow, ORG, {"name": "Big exit", "kind": "stage_exit_above_value",
                                                      "stage_id": None, "min_value": None, "currency": None,
                                                      "channels": ["email"], "active": True}, svc.clock.now())
        assert refused.value.errors[0].field == "stage_id"
