"""An enrichment answer applied while another transaction changes the lead (its assignment) keeps that change.

In the embedded mode SQLite takes no lock on a read, so the answer's transaction can read the lead, see another
commit land, and write its columns back as they were read; the write is conditional on the version read, and a
lead that moved is read again."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from lead_service.bootstrap import build_definition
from lead_service.config import Settings
from lead_service.domain.lead import LeadIn
from lead_service.service_layer import enrichment
from lead_service.service_layer.ingest import Candidate, OrgSetup, ingest
from lead_service.service_layer.views import load_lead
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import LeadAssignedV1, make_event
from salesflow_shared.testing import EmbeddedService as Embedded
from salesflow_shared.testing import embedded_service, embedded_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

WITH_PROVIDER = OrgSetup(rules=[], custom_defs={}, enrichment_provider=True)
ANSWER = {"company": {"name": "Acme", "industry": "Software", "size": "51-200"}, "location": {"region": "Bavaria"}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Embedded]:
    settings = embedded_settings(Settings, tmp_path_factory.mktemp("enrichment-result") / "lead-service.db")
    async with embedded_service(build_definition(settings), ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
                                observe=("LeadUpdated",)) as service:
        yield service


async def pending_lead(embedded: Embedded, org: str) -> str:
    lead = LeadIn.model_validate({"contact": {"first_name": "Ada", "email": "ada@acme-software.com"},
                                  "source": "api"})
    async with embedded.uow() as uow:
        [outcome] = await ingest(uow, org, [Candidate(lead)], WITH_PROVIDER, embedded.clock.now())
        await uow.commit()
    assert outcome.lead.enrichment_status == "pending"
    return outcome.lead.id


async def test_an_assignment_committed_between_the_answers_read_and_write_is_kept(embedded, monkeypatch):
    org = f"org-{uuid.uuid4().hex[:8]}"
    lead_id = await pending_lead(embedded, org)
    assignment = LeadAssignedV1(lead_id=lead_id, owner_id="iris", team_id="inside", reason="round robin")
    assigned = make_event(assignment, org_id=org, subject_id=lead_id, subject_version=1)
    reads = []

    async def read_then_assignment_lands(session, org_id, lead_id_, **kwargs):
        lead = await load_lead(session, org_id, lead_id_, **kwargs)
        reads.append(lead.version)
        if len(reads) == 1:  # another transaction commits while the answer is being applied
            await embedded.dispatch(assigned)
        return lead
    monkeypatch.setattr(enrichment, "load_lead", read_then_assignment_lands)

    await enrichment.apply_result(embedded.context, org, lead_id, ANSWER, embedded.clock.now())

    assert reads == [1, 2]  # read again after the assignment moved the lead on
    async with embedded.uow() as uow:
        lead = await load_lead(uow.session, org, lead_id)
    assert (lead.owner_id, lead.team_id) == ("iris", "inside")  # the assignment survived
    assert lead.region == "Bavaria" and lead.company.industry == "Software" and lead.enrichment_status == "done"
    assert lead.version == 3
    [updated] = await embedded.events(org, "LeadUpdated", count=1)
    assert updated.subject_version == 3 and updated.data["lead"]["owner_id"] == "iris"
