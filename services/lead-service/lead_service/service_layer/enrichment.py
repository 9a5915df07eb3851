"""Enrichment by the HTTP provider, in the background: intake never waits for it; results land later as
LeadUpdated(cause="enrichment"). Failures retry with growing delays; an open circuit pauses the calls."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from salesflow_shared.app import ServiceContext, run_periodically
from salesflow_shared.errors import NotFound
from salesflow_shared.events import LeadUpdatedV1
from salesflow_shared.retries import backoff_s

from ..adapters.enrichment_client import EnrichmentClient, ProviderError
from ..adapters.repository import enrichment as queue
from ..adapters.repository import leads as lead_repo
from ..adapters.repository.enrichment import LeasedLead
from ..collaborators import collaborators
from ..config import Settings
from ..domain.dedup import changed_fields
from ..domain.enrichment import CircuitOpen, clean_provider_answer
from ..domain.stored_lead import StoredLead
from ..domain.times import iso
from .views import load_lead, snapshot

log = structlog.get_logger(__name__)
LEASE_S = 60
COMPANY_KEYS = ("name", "size", "industry")
ATTEMPTS_AGAINST_CONCURRENT_CHANGES = 5
LOCATION_KEYS = ("country", "region")


async def claim_due(context: ServiceContext, now: datetime, limit: int = 20) -> list[LeasedLead]:
    """Lease due leads of every org, so replicas never call twice at once (`enrichment.lease`: the attempt
    counts from here)."""
    async with context.uow() as uow:
        leased, written = await queue.lease_due(uow.session, now, limit=limit, lease_s=LEASE_S,
                                                max_attempts=context.settings_as(Settings).enrichment_max_attempts)
        if written:
            await uow.commit()
    return leased


def merge_provider_data(lead: StoredLead, data: dict[str, Any]) -> StoredLead:
    """Fill only what the lead does not have: a provider never overwrites what a person entered. `data` is a
    cleaned answer (`clean_provider_answer`: known fields, bounded printable strings)."""
    company = data.get("company") or {}
    location = data.get("location") or {}
    return replace(
        lead, company=replace(lead.company, **{key: company[key] for key in COMPANY_KEYS
                                               if company.get(key) and not getattr(lead.company, key)}),
        **{key: location[key] for key in LOCATION_KEYS if location.get(key) and not getattr(lead, key)})


async def apply_result(context: ServiceContext, org_id: str, lead_id: str, data: dict[str, Any] | None,
                       now: datetime) -> None:
    # A few tries: a lead changed by another transaction between the read and the write (an assignment, an
    # edit) is read again, so the provider's answer never writes back columns as they were before that change.
    for _attempt in range(ATTEMPTS_AGAINST_CONCURRENT_CHANGES):
        if await _apply_result_once(context, org_id, lead_id, data, now):
            return
    log.warning("enrichment_result_dropped_after_concurrent_changes", lead_id=lead_id)


async def _apply_result_once(context: ServiceContext, org_id: str, lead_id: str, data: dict[str, Any] | None,
                             now: datetime) -> bool:
    """Apply the answer in one transaction; False when the lead changed after it was read (nothing written)."""
    async with context.uow() as uow:
        try:
            stored = await load_lead(uow.session, org_id, lead_id, for_update=True)
        except NotFound:
            return True
        if stored.enrichment_status != "pending" or stored.erased_at is not None:
            return True  # erased (or re-run elsewhere) while the provider was answering: the answer is dropped
        answer = clean_provider_answer(data)
        after = replace(merge_provider_data(stored, answer), enrichment_status="done", enrichment={
            **stored.enrichment, "provider": answer or None, "enriched_at": iso(now)})
        changed = changed_fields(stored, after)
        if after.company.company_id and any(c.startswith("company.") for c in changed):
            await lead_repo.update_company(uow.session, org_id, after.company.company_id, now,
                                           **{k: getattr(after.company, k) for k in COMPANY_KEYS})
        if changed:
            after = replace(after, version=stored.version + 1)
        if not await lead_repo.save_lead_read_at(uow.session, org_id, after, stored.version, now,
                                                 enrichment_next_at=None, enrichment_error=None):
            return False  # rolled back on leaving the unit of work, company included
        if changed:
            uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=changed, cause="enrichment"), org_id=org_id,
                        subject_id=lead_id, subject_version=after.version)
        await uow.commit()
        return True


async def record_failure(context: ServiceContext, lead: LeasedLead, error: str, now: datetime, retry_in_s: float,
                         count_attempt: bool = True) -> None:
    """A failed attempt (already counted by `claim_due`); `count_attempt=False` gives it back (no call was
    made: the circuit was open). Only a lead still pending is touched: an erased one stays as erasure left it."""
    attempts = lead.enrichment_attempts if count_attempt else max(0, lead.enrichment_attempts - 1)
    give_up = attempts >= context.settings_as(Settings).enrichment_max_attempts
    async with context.uow() as uow:
        await queue.record_failure(uow.session, lead.org_id, lead.id, attempts=attempts, give_up=give_up,
                                   error=error, now=now, retry_at=now + timedelta(seconds=retry_in_s))
        await uow.commit()
    log.info("enrichment_failed", lead_id=lead.id, attempts=attempts, gave_up=give_up, error=error)


def retry_delay_s(attempts: int) -> float:
    """After the provider failed on attempt number `attempts` (counted from 1): 2 s, 4 s, 8 s... at most 5 minutes."""
    return backoff_s(attempts, base_s=2.0, max_s=300.0)


async def enrich_one(context: ServiceContext, client: EnrichmentClient, row: LeasedLead, now: datetime) -> None:
    domain = (row.email or "").rpartition("@")[2]
    try:
        data = await client.lookup(row.email, domain)
    except CircuitOpen as exc:
        await record_failure(context, row, str(exc), now, client.breaker.reset_after_s, count_attempt=False)
        return
    except ProviderError as exc:
        await record_failure(context, row, str(exc), now, retry_delay_s(row.enrichment_attempts))
        return
    await apply_result(context, row.org_id, row.id, data, context.clock.now())


async def enrich_due(context: ServiceContext, client: EnrichmentClient) -> int:
    now = context.clock.now()
    rows = await claim_due(context, now)
    for row in rows:
        try:
            await enrich_one(context, client, row, now)
        except Exception as exc:  # one lead's failure (e.g. a write the database refuses) never stops the others
            log.exception("enrichment_attempt_crashed", lead_id=row.id)
            await record_failure(context, row, f"{type(exc).__name__}: {exc}", now,
                                 retry_delay_s(row.enrichment_attempts))
    return len(rows)


async def retry_failed(uow: Any, org_id: str, now: datetime, *, failed_from: datetime | None = None,
                       failed_to: datetime | None = None, created_from: datetime | None = None,
                       created_to: datetime | None = None, lead_ids: list[str] | None = None) -> int:
    """Queue the org's failed enrichments again (e.g. the leads of a provider outage), with fresh attempts;
    returns how many. Erased and deleted leads are never re-enriched."""
    return await queue.requeue_failed(uow.session, org_id, now, failed_from=failed_from, failed_to=failed_to,
                                      created_from=created_from, created_to=created_to, lead_ids=lead_ids)


async def enrichment_worker(context: ServiceContext) -> None:
    client = collaborators(context).enrichment_client
    if client is None:
        return  # no provider configured: the bundled lists are all the enrichment there is
    poll_interval_s = context.settings_as(Settings).enrichment_poll_interval_s
    await run_periodically(context, lambda: enrich_due(context, client), poll_interval_s,
                           wake_on_commit=True,
                           name="enrichment_worker")
