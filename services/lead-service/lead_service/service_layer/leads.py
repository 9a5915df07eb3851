"""Changing one lead: edit (If-Match), disqualify, soft delete, GDPR erase."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus

import sqlalchemy as sa

from salesflow_shared.errors import Conflict, FieldError, ValidationFailed
from salesflow_shared.events import LeadDisqualifiedV1, LeadErasedV1, LeadUpdatedV1
from salesflow_shared.idempotency import forget_responses_about
from salesflow_shared.outbox import forget_events_about
from salesflow_shared.ownership import remember_past_owner
from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import activities, companies, contacts, import_rows, lead_past_owners, leads, submissions
from ..domain.custom_fields import coerce_custom_fields
from ..domain.dedup import changed_fields
from ..domain.lead import LeadPatch
from .ingest import OrgSetup, lead_columns, new_id, rescore
from .views import COMPANY_FIELDS, CONTACT_FIELDS, iso, snapshot


async def _company_for(uow: UnitOfWork, org_id: str, current: dict[str, Any], patch: dict[str, Any],
                       now: datetime) -> dict[str, Any]:
    merged = {f: current.get(f) for f in COMPANY_FIELDS}
    merged.update(patch)
    name = merged.get("name")
    key = merged["domain"] or (("name:" + name.strip().lower()) if name else None)
    if key is None:
        return {"company_id": None, **{f: None for f in COMPANY_FIELDS}}
    row = (await uow.session.execute(sa.select(companies).where(
        companies.c.org_id == org_id, companies.c.dedup_key == key))).first()
    if row is not None and row.id != current.get("company_id"):
        await uow.session.execute(sa.update(companies).where(companies.c.id == row.id).values(
            **{f: v for f, v in patch.items() if f != "domain"}, updated_at=now))
        company_id = row.id
    elif current.get("company_id"):
        company_id = current["company_id"]
        await uow.session.execute(sa.update(companies).where(companies.c.id == company_id).values(
            dedup_key=key, **{f: merged[f] for f in COMPANY_FIELDS}, updated_at=now))
    else:
        company_id = new_id()
        await uow.session.execute(sa.insert(companies).values(
            id=company_id, org_id=org_id, dedup_key=key, **{f: merged[f] for f in COMPANY_FIELDS},
            created_at=now, updated_at=now))
    fresh = (await uow.session.execute(sa.select(companies).where(companies.c.id == company_id))).one()
    return {"company_id": company_id, **{f: getattr(fresh, f) for f in COMPANY_FIELDS}}


async def apply_patch(uow: UnitOfWork, lead: dict[str, Any], patch: LeadPatch, setup: OrgSetup,
                      org_id: str, now: datetime) -> dict[str, Any]:
    """Apply a validated PATCH to a locked lead, publish LeadUpdated; returns the new lead."""
    sent = patch.model_dump(mode="json", exclude_unset=True)
    after: dict[str, Any] = {**lead, "contact": dict(lead["contact"]), "company": dict(lead["company"])}
    errors: list[FieldError] = []
    if "contact" in sent and sent["contact"] is not None:
        contact_patch = sent["contact"]
        email = contact_patch.get("email")
        if email and email != lead["contact"].get("email"):
            taken = (await uow.session.execute(sa.select(contacts.c.id).where(
                contacts.c.org_id == org_id, contacts.c.email == email,
                contacts.c.id != lead["contact"]["contact_id"]))).first()
            if taken is not None:
                raise Conflict(f"another contact already has the email {email}; link that contact instead")
        after["contact"].update(contact_patch)
        if lead["contact"].get("contact_id"):
            await uow.session.execute(sa.update(contacts).where(
                contacts.c.id == lead["contact"]["contact_id"], contacts.c.org_id == org_id).values(
                **{f: after["contact"].get(f) for f in CONTACT_FIELDS}, updated_at=now))
    if "company" in sent and sent["company"] is not None:
        after["company"] = await _company_for(uow, org_id, lead["company"], sent["company"], now)
    for key in ("country", "region", "postcode", "timezone", "language", "product_line", "currency",
                "expected_close_date", "source", "status", "owner_id", "team_id"):
        if key in sent:
            if key in ("source", "status") and sent[key] is None:
                errors.append(FieldError(key, "may not be null"))
                continue
            after[key] = sent[key]
    if "value" in sent:
        after["value"] = None if patch.value is None else str(Decimal(patch.value).quantize(Decimal("0.01")))
    if "utm" in sent:
        after["utm"] = sent["utm"] or {}
    if "custom_fields" in sent:
        merged = {**(lead.get("custom_fields") or {}), **(sent["custom_fields"] or {})}
        merged = {k: v for k, v in merged.items() if v is not None}
        clean, problems = coerce_custom_fields(merged, setup.custom_defs)
        errors += [FieldError(f"custom_fields.{k}", m) for k, m in problems.items()]
        after["custom_fields"] = clean
    if after.get("value") is not None and not after.get("currency"):
        errors.append(FieldError("currency", "required with value"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    if lead["status"] not in ("open", "qualified", "nurturing") and "status" in sent:
        raise Conflict(f"a {lead['status']} lead's status is changed by its pipeline, not by an edit")
    rescore(after, setup)
    changed = changed_fields(lead, after)
    if not changed:
        return lead
    after["version"] = lead["version"] + 1
    after["updated_at"] = iso(now)
    await uow.session.execute(sa.update(leads).where(leads.c.id == lead["id"], leads.c.org_id == org_id)
                              .values(**lead_columns(after), updated_at=now))
    await remember_past_owner(uow.session, lead_past_owners, org_id, lead["id"], lead.get("owner_id"),
                              after.get("owner_id"), now)
    uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=changed, cause="edit"), org_id=org_id,
                subject_id=lead["id"], subject_version=after["version"])
    return after


async def save_lead_change(uow: UnitOfWork, org_id: str, lead: dict[str, Any], now: datetime,
                           **columns: Any) -> dict[str, Any]:
    """Bump the version and write some columns (status, owner...) of a locked lead."""
    after = {**lead, **columns, "version": lead["version"] + 1, "updated_at": iso(now)}
    await uow.session.execute(sa.update(leads).where(leads.c.id == lead["id"], leads.c.org_id == org_id)
                              .values(**columns, version=after["version"], updated_at=now))
    return after


async def disqualify(uow: UnitOfWork, org_id: str, lead: dict[str, Any], reason: str, now: datetime) -> dict[str, Any]:
    if lead["status"] in ("disqualified", "won"):
        raise Conflict(f"the lead is already {lead['status']}")
    after = await save_lead_change(uow, org_id, lead, now, status="disqualified", disqualify_reason=reason)
    uow.publish(LeadDisqualifiedV1(lead_id=lead["id"], reason=reason, owner_id=lead.get("owner_id")),
                org_id=org_id, subject_id=lead["id"], subject_version=after["version"])
    return after


async def soft_delete(uow: UnitOfWork, org_id: str, lead: dict[str, Any], now: datetime) -> None:
    after = await save_lead_change(uow, org_id, lead, now, deleted_at=now)
    # Other services learn of a deletion as a disqualification (it leaves its pipeline and sequences).
    if lead["status"] not in ("disqualified", "won", "lost"):
        uow.publish(LeadDisqualifiedV1(lead_id=lead["id"], reason="deleted", owner_id=lead.get("owner_id")),
                    org_id=org_id, subject_id=lead["id"], subject_version=after["version"])


async def erase(uow: UnitOfWork, org_id: str, lead_id: str, contact_id: str | None, now: datetime,
                email: str | None = None) -> list[str]:
    """Scrub the person's data from every lead of the contact, and publish LeadErased for each.

    Every store of this service is reached: the leads and their contact, the company when no other lead
    links it, activity subjects and notes, the outbox rows about the leads and their activities, the stored
    Idempotency-Key responses that returned them, and raw submissions and import rows that carry the person's
    email (even ones that never became a lead). Pending enrichment is cancelled: a provider answering later
    finds nothing to fill (`apply_result` ignores a lead that is no longer pending)."""
    condition = leads.c.id == lead_id
    if contact_id:
        condition = sa.or_(condition, leads.c.contact_id == contact_id)
    targets = (await uow.session.execute(sa.select(leads.c.id, leads.c.version, leads.c.company_id).where(
        leads.c.org_id == org_id, condition).with_for_update())).all()
    ids = [t.id for t in targets]
    activity_ids = list((await uow.session.execute(sa.select(activities.c.id).where(
        activities.c.org_id == org_id, activities.c.lead_id.in_(ids)))).scalars())
    # The events already written about these leads (and their activities) carry the person's data too, and so
    # do the responses stored for retried requests.
    await forget_events_about(uow.session, ids + activity_ids)
    await forget_responses_about(uow.session, org_id, ids + activity_ids)
    for target in targets:
        await uow.session.execute(sa.update(leads).where(leads.c.id == target.id).values(
            email=None, search_text="", postcode=None, custom_fields={}, utm={}, enrichment={},
            enrichment_status="none", enrichment_next_at=None, enrichment_error=None, company_id=None,
            disqualify_reason=None, score_breakdown=[], erased_at=now, updated_at=now, version=target.version + 1))
        uow.publish(LeadErasedV1(lead_id=target.id), org_id=org_id, subject_id=target.id,
                    subject_version=target.version + 1)
    if contact_id:
        await uow.session.execute(sa.update(contacts).where(contacts.c.id == contact_id,
                                                            contacts.c.org_id == org_id).values(
            **{f: None for f in CONTACT_FIELDS}, company_id=None, erased_at=now, updated_at=now))
    await _erase_orphaned_companies(uow, org_id, {t.company_id for t in targets if t.company_id}, now)
    await uow.session.execute(sa.update(activities).where(
        activities.c.org_id == org_id, activities.c.lead_id.in_(ids)).values(subject=None, notes=None))
    await uow.session.execute(sa.update(submissions).where(
        submissions.c.org_id == org_id, submissions.c.lead_id.in_(ids)).values(raw_body="", errors=None,
                                                                                remote_ip=None))
    await uow.session.execute(sa.update(import_rows).where(
        import_rows.c.org_id == org_id, import_rows.c.lead_id.in_(ids)).values(data={}, errors=None))
    if email:
        escaped = email.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        encoded = quote_plus(email).lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        body = sa.func.lower(submissions.c.raw_body)
        await uow.session.execute(sa.update(submissions).where(
            submissions.c.org_id == org_id,
            sa.or_(body.like(f"%{escaped}%", escape="\\"), body.like(f"%{encoded}%", escape="\\")))
            .values(raw_body="", errors=None, remote_ip=None))
        await uow.session.execute(sa.update(import_rows).where(
            import_rows.c.org_id == org_id,
            sa.func.lower(sa.cast(import_rows.c.data, sa.Text)).like(f"%{escaped}%", escape="\\"))
            .values(data={}, errors=None))
    return ids


async def _erase_orphaned_companies(uow: UnitOfWork, org_id: str, company_ids: set[str], now: datetime) -> None:
    """A company only the erased leads linked tells who the person is (its name, its domain = the email's):
    scrub it. A company other leads still link is theirs too and stays."""
    for company_id in sorted(company_ids):
        still_linked = (await uow.session.execute(sa.select(leads.c.id).where(
            leads.c.org_id == org_id, leads.c.company_id == company_id).limit(1))).first()
        linked_contact = (await uow.session.execute(sa.select(contacts.c.id).where(
            contacts.c.org_id == org_id, contacts.c.company_id == company_id,
            contacts.c.erased_at.is_(None)).limit(1))).first()
        if still_linked is None and linked_contact is None:
            await uow.session.execute(sa.update(companies).where(
                companies.c.id == company_id, companies.c.org_id == org_id).values(
                dedup_key=f"erased:{company_id}", **{f: None for f in COMPANY_FIELDS}, updated_at=now))
