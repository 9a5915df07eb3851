"""Changing one lead: edit (If-Match), disqualify, soft delete, GDPR erase."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from salesflow_shared.errors import Conflict, FieldError, ValidationFailed
from salesflow_shared.events import LeadDisqualifiedV1, LeadErasedV1, LeadUpdatedV1
from salesflow_shared.idempotency import forget_responses_about
from salesflow_shared.outbox import forget_events_about
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import leads as lead_repo
from ..adapters.repository import new_id
from ..domain.custom_fields import coerce_custom_fields
from ..domain.dedup import changed_fields
from ..domain.lead import COMPANY_FIELDS, LeadPatch
from ..domain.stored_lead import NO_COMPANY, StoredCompany, StoredLead, to_cents
from .ingest import OrgSetup, rescored
from .views import snapshot


async def _company_for(uow: UnitOfWork, org_id: str, current: StoredCompany, patch: dict[str, str | None],
                       now: datetime) -> StoredCompany:
    merged = {f: getattr(current, f) for f in COMPANY_FIELDS}
    merged.update(patch)
    name = merged.get("name")
    key = merged["domain"] or (("name:" + name.strip().lower()) if name else None)
    if key is None:
        return NO_COMPANY
    found = await lead_repo.company_id_of_key(uow.session, org_id, key)
    if found is not None and found != current.company_id:
        await lead_repo.update_company(uow.session, org_id, found, now,
                                       **{f: v for f, v in patch.items() if f != "domain"})
        company_id = found
    elif current.company_id:
        company_id = current.company_id
        await lead_repo.update_company(uow.session, org_id, company_id, now, dedup_key=key,
                                       **{f: merged[f] for f in COMPANY_FIELDS})
    else:
        company_id = new_id()
        await lead_repo.insert_company(uow.session, org_id, company_id, key, {f: merged[f] for f in COMPANY_FIELDS},
                                       now)
    return await lead_repo.company_part(uow.session, org_id, company_id)


# The lead fields an edit sets to what it sends (source and status may not be cleared).
_EDITED = ("country", "region", "postcode", "timezone", "language", "product_line", "currency",
           "expected_close_date", "source", "status", "owner_id", "team_id")


async def apply_patch(uow: UnitOfWork, lead: StoredLead, patch: LeadPatch, setup: OrgSetup,
                      org_id: str, now: datetime) -> StoredLead:
    """Apply a validated PATCH to a locked lead, publish LeadUpdated; returns the lead as it now is."""
    sent = patch.model_dump(mode="json", exclude_unset=True)  # what was sent; its JSON parts as stored
    edits: dict[str, Any] = {}
    errors: list[FieldError] = []
    contact = lead.contact
    if sent.get("contact") is not None:
        email = sent["contact"].get("email")
        if email and email != lead.contact.email:
            if await lead_repo.email_taken(uow.session, org_id, email, except_contact_id=lead.contact.contact_id):
                raise Conflict(f"another contact already has the email {email}; link that contact instead")
        contact = replace(contact, **sent["contact"])
        if lead.contact.contact_id:
            await lead_repo.update_contact(uow.session, org_id, contact, now)
    company = lead.company
    if sent.get("company") is not None:
        company = await _company_for(uow, org_id, lead.company, sent["company"], now)
    for key in _EDITED:
        if key in sent:
            if key in ("source", "status") and sent[key] is None:
                errors.append(FieldError(key, "may not be null"))
                continue
            edits[key] = getattr(patch, key)
    if "value" in sent:
        edits["value"] = None if patch.value is None else to_cents(patch.value)
    if "utm" in sent:
        edits["utm"] = sent["utm"] or {}
    if "custom_fields" in sent:
        merged = {**lead.custom_fields, **(sent["custom_fields"] or {})}
        merged = {k: v for k, v in merged.items() if v is not None}
        clean, problems = coerce_custom_fields(merged, setup.custom_defs)
        errors += [FieldError(f"custom_fields.{k}", m) for k, m in problems.items()]
        edits["custom_fields"] = clean
    if edits.get("value", lead.value) is not None and not edits.get("currency", lead.currency):
        errors.append(FieldError("currency", "required with value"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    if lead.status not in ("open", "qualified", "nurturing") and "status" in sent:
        raise Conflict(f"a {lead.status} lead's status is changed by its pipeline, not by an edit")
    after = rescored(replace(lead, contact=contact, company=company, **edits), setup)
    changed = changed_fields(lead, after)
    if not changed:
        return lead
    after = replace(after, version=lead.version + 1, updated_at=now)
    await lead_repo.save_lead(uow.session, org_id, after, now)
    await lead_repo.remember_past_owner(uow.session, org_id, lead.id, lead.owner_id, after.owner_id, now)
    uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=changed, cause="edit"), org_id=org_id,
                subject_id=lead.id, subject_version=after.version)
    return after


async def save_lead_change(uow: UnitOfWork, org_id: str, lead: StoredLead, now: datetime, **columns: Any) -> int:
    """Bump the version and write some columns (status, deleted_at...) of a locked lead; returns the new
    version."""
    version = lead.version + 1
    await lead_repo.set_lead_columns(uow.session, org_id, lead.id, **columns, version=version, updated_at=now)
    return version


async def disqualify(uow: UnitOfWork, org_id: str, lead: StoredLead, reason: str, now: datetime) -> StoredLead:
    if lead.status in ("disqualified", "won"):
        raise Conflict(f"the lead is already {lead.status}")
    version = await save_lead_change(uow, org_id, lead, now, status="disqualified", disqualify_reason=reason)
    uow.publish(LeadDisqualifiedV1(lead_id=lead.id, reason=reason, owner_id=lead.owner_id),
                org_id=org_id, subject_id=lead.id, subject_version=version)
    return replace(lead, status="disqualified", disqualify_reason=reason, version=version, updated_at=now)


async def soft_delete(uow: UnitOfWork, org_id: str, lead: StoredLead, now: datetime) -> None:
    version = await save_lead_change(uow, org_id, lead, now, deleted_at=now)
    # Other services learn of a deletion as a disqualification (it leaves its pipeline and sequences).
    if lead.status not in ("disqualified", "won", "lost"):
        uow.publish(LeadDisqualifiedV1(lead_id=lead.id, reason="deleted", owner_id=lead.owner_id),
                    org_id=org_id, subject_id=lead.id, subject_version=version)


async def erase(uow: UnitOfWork, org_id: str, lead_id: str, contact_id: str | None, now: datetime,
                email: str | None = None) -> list[str]:
    """Scrub the person's data from every lead of the contact, and publish LeadErased for each.

    Every store of this service is reached: the leads and their contact, the company when no other lead
    links it, activity subjects and notes, the outbox rows about the leads and their activities, the stored
    Idempotency-Key responses that returned them, and raw submissions and import rows that carry the person's
    email (even ones that never became a lead). Pending enrichment is cancelled: a provider answering later
    finds nothing to fill (`apply_result` ignores a lead that is no longer pending)."""
    targets = await lead_repo.lock_erasure_targets(uow.session, org_id, lead_id, contact_id)
    ids = [t.lead_id for t in targets]
    activity_ids = await lead_repo.activity_ids_of(uow.session, org_id, ids)
    # The events already written about these leads (and their activities) carry the person's data too, and so
    # do the responses stored for retried requests.
    await forget_events_about(uow.session, ids + activity_ids)
    await forget_responses_about(uow.session, org_id, ids + activity_ids)
    for target in targets:
        await lead_repo.scrub_lead(uow.session, org_id, target, now)
        uow.publish(LeadErasedV1(lead_id=target.lead_id), org_id=org_id, subject_id=target.lead_id,
                    subject_version=target.version + 1)
    if contact_id:
        await lead_repo.scrub_contact(uow.session, org_id, contact_id, now)
    await lead_repo.scrub_orphaned_companies(uow.session, org_id, {t.company_id for t in targets if t.company_id},
                                             now)
    await lead_repo.scrub_records_of(uow.session, org_id, ids, email)
    return ids
