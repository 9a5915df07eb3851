"""Intake, de-duplication and edits, through the service layer alone: the embedded SQLite database and the
in-process bus (no PostgreSQL, no RabbitMQ, no HTTP), so the rules run in a few seconds.

What is asserted is what a user or another service sees: the lead as it is read back, the raw submission as
an admin lists it, and the events that reach the bus.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from lead_service.adapters.repository import forms as form_repo
from lead_service.adapters.repository import leads as lead_repo
from lead_service.adapters.repository.forms import Submission
from lead_service.bootstrap import build_definition
from lead_service.config import Settings
from lead_service.domain.forms import Form
from lead_service.domain.lead import LeadIn, LeadPatch
from lead_service.domain.stored_lead import StoredLead
from lead_service.service_layer import leads as lead_ops
from lead_service.service_layer import reprocessing
from lead_service.service_layer.ingest import Candidate, OrgSetup, ingest, load_org_setup
from lead_service.service_layer.intake import (
    Received,
    SubmissionState,
    accept_submission,
    process_submission,
    store_submission,
)
from lead_service.service_layer.views import load_lead, lock_lead_rows
from salesflow_shared.clock import ManualClock
from salesflow_shared.errors import Conflict, NotFound, ValidationFailed
from salesflow_shared.testing import EmbeddedService as Embedded
from salesflow_shared.testing import embedded_service, embedded_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOLD = ("LeadCreated", "LeadUpdated", "LeadDisqualified", "LeadErased", "ActivityLogged")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Embedded]:
    """lead-service as `make run` starts it with nothing configured, without its HTTP app and workers."""
    settings = embedded_settings(Settings, tmp_path_factory.mktemp("embedded") / "lead-service.db")
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    async with embedded_service(build_definition(settings), clock, observe=TOLD) as service:
        yield service


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def a_lead(email: str | None = "ada@acme.io", **fields: Any) -> LeadIn:
    return LeadIn.model_validate({"contact": {"first_name": "Ada", "last_name": "Lovelace", "email": email,
                                              "title": "CTO"},
                                  "company": {"name": "Acme"}, "country": "DE", "source": "api", **fields})


async def setup_of(embedded: Embedded, org_id: str) -> OrgSetup:
    async with embedded.context.database.session() as session:
        return await load_org_setup(session, org_id, enrichment_provider=False)


async def ingest_committed(embedded: Embedded, org_id: str, *leads: LeadIn, origin: str = "api") -> list[Any]:
    setup = await setup_of(embedded, org_id)
    async with embedded.context.uow() as uow:
        outcomes = await ingest(uow, org_id, [Candidate(lead, origin=origin) for lead in leads], setup,
                                embedded.clock.now())
        await uow.commit()
    return outcomes


async def read(embedded: Embedded, org_id: str, lead_id: str) -> dict[str, Any]:
    async with embedded.context.database.session() as session:
        return (await load_lead(session, org_id, lead_id, to_change=False)).as_api_dict()


async def open_leads_of(embedded: Embedded, org_id: str, email: str) -> StoredLead | None:
    async with embedded.context.database.session() as session:
        return (await lead_repo.open_leads_by_email(session, org_id, [email], for_update=False)).get(email)


# ------------------------------------------------------------------ intake
async def test_a_new_lead_is_stored_scored_and_announced(embedded: Embedded) -> None:
    org = new_org()
    [outcome] = await ingest_committed(embedded, org, a_lead(value="1200.00", currency="EUR"))

    assert outcome.created
    lead = await read(embedded, org, outcome.lead.id)
    assert lead["status"] == "open" and lead["version"] == 1
    assert lead["contact"]["email"] == "ada@acme.io" and lead["company"]["name"] == "Acme"
    assert lead["company"]["domain"] == "acme.io"  # a business email tells the company's domain
    assert lead["value"] == "1200.00" and lead["currency"] == "EUR"
    assert lead["enrichment"]["email"]["is_business"] is True
    [created] = await embedded.events(org, "LeadCreated", count=1)
    assert created.subject_id == lead["id"] and created.subject_version == 1
    assert created.data["lead"]["contact"]["email"] == "ada@acme.io"


async def test_the_same_email_again_updates_the_open_lead(embedded: Embedded) -> None:
    org = new_org()
    [first] = await ingest_committed(embedded, org, a_lead())
    embedded.clock.advance(minutes=5)
    [again] = await ingest_committed(embedded, org, a_lead(region="Bavaria", contact={"email": "ADA@acme.io",
                                                                                      "phone": "+49 1"}))

    assert not again.created and again.lead.id == first.lead.id
    assert sorted(again.changed) == ["contact.phone", "region"]
    lead = await read(embedded, org, first.lead.id)
    assert lead["version"] == 2 and lead["region"] == "Bavaria" and lead["contact"]["phone"] == "+49 1"
    assert lead["contact"]["first_name"] == "Ada"  # what the second entry left out stays
    events = await embedded.events(org, "LeadCreated", "LeadUpdated", count=2)
    assert [(e.type, e.subject_version) for e in events] == [("LeadCreated", 1), ("LeadUpdated", 2)]
    assert events[1].data["cause"] == "edit" and events[1].data["changed"] == ["contact.phone", "region"]


async def test_the_same_person_twice_in_one_batch_is_one_lead(embedded: Embedded) -> None:
    org = new_org()
    outcomes = await ingest_committed(embedded, org, a_lead(), a_lead(postcode="80331"), origin="import")

    assert [o.created for o in outcomes] == [True, False]
    assert outcomes[0].lead.id == outcomes[1].lead.id
    lead = await read(embedded, org, outcomes[0].lead.id)
    assert lead["postcode"] == "80331" and lead["version"] == 1
    [created] = await embedded.events(org, "LeadCreated", count=1)
    assert created.data["lead"]["postcode"] == "80331"  # one event, carrying the final state
    assert [e.type for e in embedded.told if e.org_id == org] == ["LeadCreated"]


async def test_leads_without_an_email_are_never_merged(embedded: Embedded) -> None:
    org = new_org()
    outcomes = await ingest_committed(embedded, org, a_lead(email=None), a_lead(email=None))

    assert [o.created for o in outcomes] == [True, True]
    first, second = [await read(embedded, org, o.lead.id) for o in outcomes]
    assert first["id"] != second["id"]
    assert first["contact"]["contact_id"] != second["contact"]["contact_id"]


# ------------------------------------------------------------------ web-form submissions
async def saved_form(embedded: Embedded, org_id: str) -> Form:
    """A form of the org as an admin defines it: maps email, full name and phone; requires the email."""
    form = Form.model_validate({
        "id": str(uuid.uuid4()), "org_id": org_id, "name": "Contact us",
        "mapping": {"email": "contact.email", "name": "contact.full_name", "phone": "contact.phone"},
        "defaults": {"product_line": "pro"}, "required": ["contact.email"], "public_key": f"pk_{uuid.uuid4().hex}",
        "signing_secret": "whsec_test", "honeypot_field": "website", "redirect_url": None,
        "rate_limit_per_minute": 60, "version": 1, "allowed_origins": []})
    async with embedded.context.uow() as uow:
        await form_repo.insert_form(uow.session, form, embedded.clock.now())
        await uow.commit()
    return form


async def submit(embedded: Embedded, form: Form, payload: dict[str, Any]) -> tuple[str, SubmissionState]:
    setup = await setup_of(embedded, form.org_id)
    received = Received(str(uuid.uuid4()), json.dumps(payload).encode(), "application/json", "signed", None, None,
                        embedded.clock.now())
    async with embedded.context.uow() as uow:
        state = await accept_submission(uow, form, setup, received, payload)
        await uow.commit()
    assert state is not None
    return received.submission_id, state


async def test_a_resubmitted_form_updates_its_lead_and_logs_the_resubmission(embedded: Embedded) -> None:
    org = new_org()
    form = await saved_form(embedded, org)

    _, first = await submit(embedded, form, {"email": "grace@navy.mil", "name": "Grace Hopper"})
    _, second = await submit(embedded, form, {"email": "grace@navy.mil", "name": "Grace Hopper",
                                              "phone": "+1 555 0100"})

    assert (first.status, first.outcome) == ("accepted", "created")
    assert (second.status, second.outcome, second.lead_id) == ("accepted", "updated", first.lead_id)
    lead = await read(embedded, org, first.lead_id or "")
    assert lead["source"] == "web_form" and lead["product_line"] == "pro" and lead["form_id"] == form.id
    assert lead["contact"]["phone"] == "+1 555 0100" and lead["version"] == 2
    events = await embedded.events(org, "LeadCreated", "LeadUpdated", "ActivityLogged", count=3)
    assert [e.type for e in events] == ["LeadCreated", "ActivityLogged", "LeadUpdated"]
    assert events[1].data["subject"] == "form resubmitted"
    assert events[2].data["cause"] == "form_resubmitted" and events[2].data["changed"] == ["contact.phone"]


async def test_a_submission_that_fails_mapping_is_kept_and_can_be_reprocessed(embedded: Embedded) -> None:
    org = new_org()
    form = await saved_form(embedded, org)

    submission_id, state = await submit(embedded, form, {"name": "No Email"})

    assert state.status == "failed" and state.lead_id is None
    assert [e["field"] for e in state.errors or []] == ["contact.email"]
    async with embedded.context.database.session() as session:
        stored = await form_repo.find_submission(session, org, submission_id, form_id=form.id)
    assert stored is not None and stored.status == "failed" and stored.attempts == 1

    relaxed = form.model_copy(update={"required": []})  # the admin fixes the form, then reprocesses
    setup = await setup_of(embedded, org)
    async with embedded.context.uow() as uow:
        await process_submission(uow, relaxed, submission_id, setup, embedded.clock.now())  # from the raw body
        await uow.commit()
    async with embedded.context.database.session() as session:
        stored = await form_repo.find_submission(session, org, submission_id, form_id=form.id)
    assert stored is not None and stored.status == "accepted" and stored.outcome == "created"
    assert stored.attempts == 2
    lead = await read(embedded, org, stored.lead_id or "")
    assert lead["contact"]["first_name"] == "No" and lead["contact"]["last_name"] == "Email"


async def stored_submission(embedded: Embedded, form: Form, submission_id: str) -> Submission:
    async with embedded.context.database.session() as session:
        stored = await form_repo.find_submission(session, form.org_id, submission_id, form_id=form.id)
    assert stored is not None
    return stored


async def test_reprocessing_the_failed_submissions_accepts_those_the_fixed_form_maps(embedded: Embedded) -> None:
    org = new_org()
    form = await saved_form(embedded, org)
    named, _ = await submit(embedded, form, {"name": "Ada Lovelace"})  # no email: failed, the form requires one
    embedded.clock.advance(seconds=1)
    nobody, _ = await submit(embedded, form, {"phone": " "})  # no contact at all: fails whatever the form says
    embedded.clock.advance(seconds=1)
    await submit(embedded, form, {"email": "grace@navy.mil"})  # accepted: not reprocessed
    relaxed = form.model_copy(update={"required": []})  # the admin drops the required email

    async with embedded.context.uow() as uow:
        ids = await reprocessing.unfinished_submissions(uow, relaxed, limit=500)
    results = await reprocessing.reprocess_all(embedded.context, relaxed, ids)

    assert ids == [named, nobody]  # oldest first
    assert [(r.submission_id, r.state.status, r.state.outcome) for r in results] == [
        (named, "accepted", "created"), (nobody, "failed", None)]
    accepted = await stored_submission(embedded, form, named)
    assert (accepted.status, accepted.attempts, accepted.lead_id) == ("accepted", 2, results[0].state.lead_id)
    lead = await read(embedded, org, accepted.lead_id or "")
    assert (lead["contact"]["first_name"], lead["contact"]["last_name"], lead["form_id"]) == ("Ada", "Lovelace",
                                                                                             form.id)
    still = await stored_submission(embedded, form, nobody)
    assert (still.status, still.attempts) == ("failed", 2)
    async with embedded.context.uow() as uow:
        assert await reprocessing.unfinished_submissions(uow, relaxed, limit=500) == [nobody]


async def test_an_admin_reprocess_refuses_spam_and_unknown_submissions(embedded: Embedded) -> None:
    org = new_org()
    form = await saved_form(embedded, org)
    spam = Received(str(uuid.uuid4()), b'{"website": "x"}', "application/json", "browser", None, None,
                    embedded.clock.now())
    async with embedded.context.uow() as uow:
        await store_submission(uow, form, spam, SubmissionState("spam"))
        await uow.commit()

    async with embedded.context.uow() as uow:
        with pytest.raises(ValidationFailed) as refused:
            await reprocessing.reprocess_submission(uow, embedded.context, form, spam.submission_id)
        with pytest.raises(NotFound):
            await reprocessing.reprocess_submission(uow, embedded.context, form, "no-such-submission")

    assert refused.value.errors[0].field == "submission_id"
    assert (await stored_submission(embedded, form, spam.submission_id)).status == "spam"


async def test_the_sweep_finishes_submissions_left_received_past_the_delay(embedded: Embedded) -> None:
    org = new_org()
    form = await saved_form(embedded, org)
    now = embedded.clock.now()
    # what an unexpected processing error leaves: the raw row alone, "received"; the sweep waits 30 s
    late = Received(str(uuid.uuid4()), b'{"email": "late@stark.com"}', "application/json", "signed", None, None,
                    now - timedelta(seconds=31))
    fresh = Received(str(uuid.uuid4()), b'{"email": "fresh@stark.com"}', "application/json", "signed", None, None,
                     now - timedelta(seconds=29))
    async with embedded.context.uow() as uow:
        for received in (late, fresh):
            await store_submission(uow, form, received, SubmissionState("received"))
        await uow.commit()

    assert await reprocessing.sweep_once(embedded.context) == 1

    finished = await stored_submission(embedded, form, late.submission_id)
    assert (finished.status, finished.outcome, finished.attempts) == ("accepted", "created", 1)
    lead = await read(embedded, org, finished.lead_id or "")
    assert lead["contact"]["email"] == "late@stark.com" and lead["form_id"] == form.id
    waiting = await stored_submission(embedded, form, fresh.submission_id)
    assert (waiting.status, waiting.attempts, waiting.lead_id) == ("received", 0, None)


# ------------------------------------------------------------------ edits
async def patch(embedded: Embedded, org_id: str, lead_id: str, **fields: Any) -> dict[str, Any]:
    setup = await setup_of(embedded, org_id)
    async with embedded.context.uow() as uow:
        lead = await lock_lead_rows(uow.session, org_id, lead_id)
        after = await lead_ops.apply_patch(uow, lead, LeadPatch.model_validate(fields), setup, org_id,
                                           embedded.clock.now())
        await uow.commit()
    return after.as_api_dict()


async def test_an_edit_changes_the_lead_once_and_announces_what_changed(embedded: Embedded) -> None:
    org = new_org()
    [outcome] = await ingest_committed(embedded, org, a_lead())
    lead_id = outcome.lead.id

    after = await patch(embedded, org, lead_id, status="qualified", contact={"title": "CEO"},
                        company={"domain": "acme.example"})
    unchanged = await patch(embedded, org, lead_id, status="qualified")

    assert after["version"] == 2 and unchanged["version"] == 2  # an edit that changes nothing is no new version
    lead = await read(embedded, org, lead_id)
    assert lead["status"] == "qualified" and lead["contact"]["title"] == "CEO"
    assert lead["company"]["domain"] == "acme.example" and lead["company"]["name"] == "Acme"
    events = await embedded.events(org, "LeadUpdated", count=1)
    assert [e.data["changed"] for e in events] == [["company.domain", "contact.title", "status"]]


async def test_an_edit_refuses_another_contacts_email_and_bad_values(embedded: Embedded) -> None:
    org = new_org()
    await ingest_committed(embedded, org, a_lead(email="grace@navy.mil"))
    [outcome] = await ingest_committed(embedded, org, a_lead())

    with pytest.raises(Conflict):
        await patch(embedded, org, outcome.lead.id, contact={"email": "grace@navy.mil"})
    with pytest.raises(ValidationFailed) as refused:
        await patch(embedded, org, outcome.lead.id, value="10.00", source=None)
    assert sorted(e.field for e in refused.value.errors) == ["currency", "source"]
    assert (await read(embedded, org, outcome.lead.id))["version"] == 1


async def test_disqualify_then_erase(embedded: Embedded) -> None:
    org = new_org()
    [outcome] = await ingest_committed(embedded, org, a_lead())
    lead_id = outcome.lead.id
    now = embedded.clock.now()

    async with embedded.context.uow() as uow:
        lead = await load_lead(uow.session, org, lead_id, for_update=True)
        await lead_ops.disqualify(uow, org, lead, "no budget", now)
        await uow.commit()
    async with embedded.context.uow() as uow:
        with pytest.raises(Conflict):
            await lead_ops.disqualify(uow, org, await load_lead(uow.session, org, lead_id), "again", now)
    async with embedded.context.uow() as uow:
        lead = await lock_lead_rows(uow.session, org, lead_id)
        erased = await lead_ops.erase(uow, org, lead_id, lead.contact.contact_id, now,
                                      email=lead.contact.email)
        await uow.commit()

    assert erased == [lead_id]
    lead = await read(embedded, org, lead_id)
    assert lead["status"] == "disqualified" and lead["disqualify_reason"] is None
    assert lead["erased_at"] is not None and lead["contact"]["email"] is None and lead["company"]["name"] is None
    assert await open_leads_of(embedded, org, "ada@acme.io") is None
    events = await embedded.events(org, "LeadCreated", "LeadDisqualified", "LeadErased", count=3)
    assert [(e.type, e.subject_version) for e in events] == [
        ("LeadCreated", 1), ("LeadDisqualified", 2), ("LeadErased", 3)]
