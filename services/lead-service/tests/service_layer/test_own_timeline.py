"""The timeline entries of lead-service's own events are written by the transaction that publishes them (not
consumed back through the broker); other services' events are still consumed. Embedded SQLite, no broker.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from lead_service.bootstrap import build_definition
from lead_service.config import Settings
from lead_service.domain.lead import LeadIn, LeadPatch
from lead_service.service_layer import leads as lead_ops
from lead_service.service_layer.ingest import Candidate, OrgSetup, ingest
from lead_service.service_layer.timeline import record_own_events, timeline_page
from lead_service.service_layer.views import lock_lead_rows
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import LeadCreatedV1, LeadRoutedV1, make_event
from salesflow_shared.testing import EmbeddedService as Embedded
from salesflow_shared.testing import embedded_service, embedded_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

NO_SETUP = OrgSetup(rules=[], custom_defs={}, enrichment_provider=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Embedded]:
    settings = embedded_settings(Settings, tmp_path_factory.mktemp("own-timeline") / "lead-service.db")
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    async with embedded_service(build_definition(settings), clock) as service:
        yield service


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def a_lead(email: str = "ada@acme.io") -> LeadIn:
    return LeadIn.model_validate({"contact": {"first_name": "Ada", "email": email}, "source": "api"})


async def created(embedded: Embedded, org: str, lead: LeadIn) -> tuple[str, list[Any]]:
    """A lead ingested and committed: its id and the events the commit published."""
    async with embedded.uow() as uow:
        [outcome] = await ingest(uow, org, [Candidate(lead)], NO_SETUP, embedded.clock.now())
        await uow.commit()
    return outcome.lead.id, uow.published


async def story(embedded: Embedded, org: str, lead_id: str) -> list[tuple[str, str]]:
    async with embedded.uow() as uow:
        items, _ = await timeline_page(uow, org, lead_id, limit=100, cursor=None, correlation_id=None)
    return [(e["kind"], e["producer"]) for e in items]


async def test_own_events_are_not_consumed_back_but_other_services_events_are(embedded: Embedded) -> None:
    subscribed = set(embedded.context.subscribed_event_types)
    assert not subscribed & {"LeadCreated", "LeadUpdated", "LeadDisqualified", "ActivityLogged"}
    assert {"LeadRouted", "LeadAssigned", "StageAdvanced", "EmailSent", "LeadWon", "LeadErased"} <= subscribed
    # Subscribed to by the version before: a deployed queue's bindings are removed at start.
    assert set(embedded.context.definition.retired_event_types) == {"LeadCreated", "LeadUpdated", "LeadDisqualified"}


async def test_the_commit_that_publishes_an_event_writes_its_entries_once(embedded: Embedded) -> None:
    org = new_org()
    lead_id, [event] = await created(embedded, org, a_lead())
    # No delivery was needed: the entries committed with the lead.
    assert await story(embedded, org, lead_id) == [("created", "lead-service"), ("scored", "lead-service")]

    # The same event written again (a replay of the commit's hook) or handed to the consumer (one queued before
    # the upgrade that stopped subscribing to it) adds nothing.
    async with embedded.uow() as uow:
        await record_own_events(uow, [(LeadCreatedV1.model_validate(event.data), event)])
        await uow.commit()
    await embedded.dispatch(event)
    assert await story(embedded, org, lead_id) == [("created", "lead-service"), ("scored", "lead-service")]

    # An edit and a disqualification tell theirs in their own transactions; a rolled-back one tells nothing.
    async with embedded.uow() as uow:
        lead = await lock_lead_rows(uow.session, org, lead_id)
        await lead_ops.apply_patch(uow, lead, LeadPatch(region="Bavaria"), NO_SETUP, org, embedded.clock.now())
        await uow.rollback()
    async with embedded.uow() as uow:
        lead = await lock_lead_rows(uow.session, org, lead_id)
        lead = await lead_ops.apply_patch(uow, lead, LeadPatch(region="Bavaria"), NO_SETUP, org,
                                          embedded.clock.now())
        await lead_ops.disqualify(uow, org, lead, "no budget", embedded.clock.now())
        await uow.commit()
    assert [kind for kind, _ in await story(embedded, org, lead_id)] == [
        "created", "scored", "updated", "disqualified"]


async def test_other_services_events_still_land_once_and_an_erasure_forgets_at_once(embedded: Embedded) -> None:
    org = new_org()
    lead_id, _ = await created(embedded, org, a_lead("grace@acme.io"))
    routed = make_event(LeadRoutedV1(lead_id=lead_id, pipeline_id="p-1", reason="fallback"), org_id=org,
                        subject_id=lead_id)
    await embedded.dispatch(routed)
    await embedded.dispatch(routed)  # a redelivery
    assert [kind for kind, _ in await story(embedded, org, lead_id)] == ["created", "scored", "routed"]

    # The erasure's delivery is the test's to make, after a late event: the relay would publish it at once.
    await embedded.context.relay.stop()
    try:
        async with embedded.uow() as uow:
            lead = await lock_lead_rows(uow.session, org, lead_id)
            await lead_ops.erase(uow, org, lead_id, lead.contact.contact_id, embedded.clock.now())
            await uow.commit()
        [erased] = uow.published
        assert await story(embedded, org, lead_id) == []  # by the erasure's own transaction
        # Another service's event that was on its way at the erasure adds no entry: the lead is erased.
        await embedded.dispatch(make_event(LeadRoutedV1(lead_id=lead_id, pipeline_id="p-2", reason="late"),
                                           org_id=org, subject_id=lead_id))
        assert await story(embedded, org, lead_id) == []
        await embedded.dispatch(erased)
        assert await story(embedded, org, lead_id) == []
    finally:
        embedded.context.relay.start()

