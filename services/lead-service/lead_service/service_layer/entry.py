"""A lead entered by hand through the API: its custom fields checked against the org's definitions, and a rep's
entry of a prospect that is already another rep's open lead refused (the lead and its owner stay as they are)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from salesflow_shared.errors import FieldError, ValidationFailed
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository.leads import open_leads_by_email
from ..domain.custom_fields import coerce_custom_fields
from ..domain.dedup import someone_elses_lead
from ..domain.lead import LeadIn
from ..domain.stored_lead import StoredLead
from .activities import log_activity
from .ingest import Candidate, OrgSetup, Outcome, ingest


def with_valid_custom_fields(lead_in: LeadIn, setup: OrgSetup) -> LeadIn:
    """The lead with its custom fields coerced to their defined types; 422 naming each field that is not."""
    clean, problems = coerce_custom_fields(lead_in.custom_fields, setup.custom_defs)
    if problems:
        errors = [FieldError(f"custom_fields.{k}", m) for k, m in problems.items()]
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    if not clean and not lead_in.custom_fields:
        return lead_in  # nothing to coerce: no copy
    return lead_in.model_copy(update={"custom_fields": clean})


@dataclass(frozen=True)
class DuplicateEntry:
    """A rep entered a prospect that is another rep's open lead (a manager or admin may merge them)."""

    lead_id: str
    owner_id: str | None

    @property
    def detail(self) -> str:
        return someone_elses_lead(self.lead_id, self.owner_id)


async def enter_lead(uow: UnitOfWork, org_id: str, lead_in: LeadIn, setup: OrgSetup, *, rep_id: str | None,
                     now: datetime) -> Outcome | DuplicateEntry:
    """Create the lead, or update the open lead with the same email. Entered by a rep (`rep_id`): a lead it
    names no owner for is its own (so it stays visible to it), and the prospect of another rep's open lead is
    refused with a note on that lead's timeline instead."""
    lead_in = with_valid_custom_fields(lead_in, setup)
    if rep_id is not None:
        if lead_in.owner_id is None:
            lead_in = lead_in.model_copy(update={"owner_id": rep_id})
        taken = await _someone_elses_open_lead(uow, org_id, rep_id, lead_in)
        if taken is not None:
            owner = taken.owner_id
            await log_activity(uow, org_id, taken.id, kind="note", rep_id=rep_id, occurred_at=now, now=now,
                               subject="duplicate entry refused", source="system", announce=False,
                               notes=f"rep '{rep_id}' entered this prospect again; the lead stays with "
                                     + (f"'{owner}'" if owner else "its routing"))
            return DuplicateEntry(taken.id, owner)
    [outcome] = await ingest(uow, org_id, [Candidate(lead_in, origin="api")], setup, now)
    return outcome


async def _someone_elses_open_lead(uow: UnitOfWork, org_id: str, rep_id: str,
                                   lead_in: LeadIn) -> StoredLead | None:
    """The open lead with the entered email when the rep does not own it."""
    if not lead_in.contact.email:
        return None
    found = (await open_leads_by_email(uow.session, org_id, [lead_in.contact.email])).get(lead_in.contact.email)
    return found if found is not None and found.owner_id != rep_id else None
