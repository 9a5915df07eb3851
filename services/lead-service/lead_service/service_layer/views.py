"""Reading leads: the event snapshot, ETags, rep scoping, and loading one lead as a caller may see it."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.errors import Forbidden, NotFound
from salesflow_shared.events import LeadSnapshot
from salesflow_shared.preconditions import check_if_match as shared_check_if_match
from salesflow_shared.preconditions import strong_etag

from ..adapters.repository import leads as lead_repo
from ..domain.stored_lead import StoredLead


def check_may_change(principal: Principal | None, lead: StoredLead) -> None:
    """A rep changes only the leads it owns now: one it owned before is read-only."""
    if principal is not None and not principal.sees_whole_org and lead.owner_id != principal.user_id:
        raise Forbidden(f"lead {lead.id} is read-only for you: you no longer own it")


def snapshot(lead: StoredLead) -> LeadSnapshot:
    """The event snapshot of a lead (LeadCreated, LeadUpdated)."""
    return LeadSnapshot.model_validate({**lead.as_api_dict(), "lead_id": lead.id})


def etag(lead: StoredLead) -> str:
    return strong_etag(lead.version)


def check_if_match(if_match: str | None, current_version: int) -> None:
    shared_check_if_match(if_match, strong_etag(current_version))


async def load_lead(session: AsyncSession, org_id: str, lead_id: str, *, for_update: bool = False,
                    principal: Principal | None = None, include_deleted: bool = False,
                    to_change: bool = True) -> StoredLead:
    """The lead as `principal` may see it (404 when it may not); with `to_change`, a rep who only owned it
    before gets 403 (it is read-only for them)."""
    lead = await lead_repo.find_lead(session, org_id, lead_id, for_update=for_update, principal=principal,
                                     include_deleted=include_deleted)
    if lead is None:
        raise NotFound(f"no lead {lead_id}")
    if to_change:
        check_may_change(principal, lead)
    return lead


async def lock_lead_rows(session: AsyncSession, org_id: str, lead_id: str, principal: Principal | None = None,
                         include_deleted: bool = False) -> StoredLead:
    """Lock a lead for a change in the order every ingest uses (company → contact → lead), so an edit or an
    erasure racing a submission of the same person waits instead of deadlocking; returns the locked lead."""
    lead = await load_lead(session, org_id, lead_id, principal=principal, include_deleted=include_deleted)
    await lead_repo.lock_contact_and_company(session, org_id, lead)
    return await load_lead(session, org_id, lead_id, for_update=True, principal=principal,
                           include_deleted=include_deleted)
