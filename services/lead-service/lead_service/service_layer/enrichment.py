"""Enrichment by the HTTP provider, in the background: intake never waits for it; results land later as
LeadUpdated(cause="enrichment"). Failures retry with growing delays; an open circuit pauses the calls."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog

from salesflow_shared.app import ServiceContext, run_periodically
from salesflow_shared.errors import NotFound
from salesflow_shared.events import LeadUpdatedV1, utcnow

from ..adapters.enrichment_client import EnrichmentClient, ProviderError
from ..adapters.orm import companies, leads
from ..domain.dedup import changed_fields
from ..domain.enrichment import CircuitOpen
from .ingest import lead_columns
from .views import iso, load_lead, snapshot

log = structlog.get_logger(__name__)
LEASE_S = 60
COMPANY_KEYS = ("name", "size", "industry")
LOCATION_KEYS = ("country", "region")


async def claim_due(context: ServiceContext, now: datetime, limit: int = 20) -> list[Any]:
    """Lease due leads (pushing their next attempt past the lease) so replicas never call twice at once."""
    async with context.uow() as uow:
        due = sa.select(leads.c.id).where(
            leads.c.enrichment_status == "pending",
            sa.or_(leads.c.enrichment_next_at.is_(None), leads.c.enrichment_next_at <= now),
        ).order_by(leads.c.enrichment_next_at).limit(limit)
        if uow.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list((await uow.session.execute(due)).scalars())
        if not ids:
            return []
        await uow.session.execute(sa.update(leads).where(leads.c.id.in_(ids)).values(
            enrichment_next_at=now + timedelta(seconds=LEASE_S)))
        rows = (await uow.session.execute(sa.select(leads.c.id, leads.c.org_id, leads.c.email,
                                                    leads.c.enrichment_attempts).where(leads.c.id.in_(ids)))).all()
        await uow.commit()
    return rows


def merge_provider_data(lead: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Fill only what the lead does not have: a provider never overwrites what a person entered."""
    after = {**lead, "company": dict(lead["company"])}
    company = data.get("company") if isinstance(data.get("company"), dict) else {}
    for key in COMPANY_KEYS:
        value = company.get(key)
        if isinstance(value, str) and value.strip() and not after["company"].get(key):
            after["company"][key] = value.strip()[:100 if key != "name" else 200]
    location = data.get("location") if isinstance(data.get("location"), dict) else {}
    country = location.get("country")
    if isinstance(country, str) and len(country.strip()) == 2 and not after.get("country"):
        after["country"] = country.strip().upper()
    region = location.get("region")
    if isinstance(region, str) and region.strip() and not after.get("region"):
        after["region"] = region.strip()[:100]
    return after


async def apply_result(context: ServiceContext, org_id: str, lead_id: str, data: dict[str, Any] | None,
                       now: datetime) -> None:
    async with context.uow() as uow:
        try:
            lead = await load_lead(uow.session, org_id, lead_id, for_update=True)
        except NotFound:
            return
        if lead["enrichment_status"] != "pending":
            return
        after = merge_provider_data(lead, data or {})
        after["enrichment"] = {**lead["enrichment"], "provider": data, "enriched_at": iso(now)}
        after["enrichment_status"] = "done"
        changed = changed_fields(lead, after)
        if after["company"].get("company_id") and any(c.startswith("company.") for c in changed):
            await uow.session.execute(sa.update(companies).where(
                companies.c.id == after["company"]["company_id"]).values(
                **{k: after["company"][k] for k in COMPANY_KEYS}, updated_at=now))
        if changed:
            after["version"] = lead["version"] + 1
        await uow.session.execute(sa.update(leads).where(leads.c.id == lead_id).values(
            **lead_columns(after), enrichment_next_at=None, updated_at=now))
        if changed:
            uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=changed, cause="enrichment"), org_id=org_id,
                        subject_id=lead_id, subject_version=after["version"])
        await uow.commit()


async def record_failure(context: ServiceContext, lead_id: str, attempts: int, error: str, now: datetime,
                         retry_in_s: float, count_attempt: bool = True) -> None:
    attempts = attempts + (1 if count_attempt else 0)
    give_up = attempts >= context.settings.enrichment_max_attempts
    async with context.uow() as uow:
        await uow.session.execute(sa.update(leads).where(leads.c.id == lead_id).values(
            enrichment_attempts=attempts, enrichment_status="failed" if give_up else "pending",
            enrichment_next_at=None if give_up else now + timedelta(seconds=retry_in_s)))
        await uow.commit()
    log.info("enrichment_failed", lead_id=lead_id, attempts=attempts, gave_up=give_up, error=error)


async def enrich_due(context: ServiceContext, client: EnrichmentClient) -> int:
    now = utcnow()
    rows = await claim_due(context, now)
    for row in rows:
        domain = (row.email or "").rpartition("@")[2]
        try:
            data = await client.lookup(row.email, domain)
        except CircuitOpen as exc:
            await record_failure(context, row.id, row.enrichment_attempts, str(exc), now,
                                 client.breaker.reset_after_s, count_attempt=False)
            continue
        except ProviderError as exc:
            await record_failure(context, row.id, row.enrichment_attempts, str(exc), now,
                                 min(300.0, 2.0 ** (row.enrichment_attempts + 1)))
            continue
        await apply_result(context, row.org_id, row.id, data, utcnow())
    return len(rows)


async def enrichment_worker(context: ServiceContext) -> None:
    client: EnrichmentClient | None = context.extras.get("enrichment_client")
    if client is None:
        return  # no provider configured: the bundled lists are all the enrichment there is
    await run_periodically(context, lambda: enrich_due(context, client), context.settings.enrichment_poll_interval_s,
                           wake_on_commit=True,
                           name="enrichment_worker")
