"""Contacts and companies are shared between leads; rescoring applies the org's scoring rules to its open leads
again. Either way the leads that change get a new version and LeadUpdated."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any

from salesflow_shared.events import LeadUpdatedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import leads as lead_repo
from ..adapters.repository import records as record_repo
from ..adapters.repository.records import RecordKind
from .ingest import OrgSetup, scored
from .views import snapshot

RESCORE_BATCH = 200


async def edit_shared_record(uow: UnitOfWork, org_id: str, kind: RecordKind, record_id: str,
                             values: dict[str, Any]) -> None:
    """Change a contact or company; it is part of every lead that links it, so those leads change too (new
    version, LeadUpdated naming `<kind>.<field>`), and their de-duplication email and search text follow.
    An email or domain another record of the org has fails at the write or the commit (IntegrityError)."""
    await record_repo.update_record(uow.session, kind, org_id, record_id, values, uow.clock.now())
    linking = await lead_repo.lock_leads_linking(uow.session, org_id, **{f"{kind}_id": record_id})
    stamp = uow.clock.now()
    for lead in linking:
        after = replace(lead, version=lead.version + 1)
        await lead_repo.save_lead(uow.session, org_id, after, stamp)
        uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=sorted(f"{kind}.{f}" for f in values),
                                  cause="edit"), org_id=org_id, subject_id=after.id, subject_version=after.version)


async def rescore_open_leads(new_uow: Callable[[], AbstractAsyncContextManager[UnitOfWork]], org_id: str,
                             setup_of: Callable[[Any], Awaitable[OrgSetup]],
                             now: Callable[[], datetime]) -> dict[str, int]:
    """Score every open lead of the org again, in batches each committed in its own unit of work (a lead's
    change never waits for the whole org); only a lead whose score changed gets a new version and LeadUpdated
    (cause `rescoring`). Returns how many were rescored and how many changed."""
    rescored = changed = 0
    last_id = ""
    while True:
        async with new_uow() as uow:
            setup = await setup_of(uow.session)
            batch = await lead_repo.lock_open_leads(uow.session, org_id, after_id=last_id, limit=RESCORE_BATCH)
            if not batch:
                break
            stamp = now()
            for lead in batch:
                score, breakdown = scored(lead, setup)
                rescored += 1
                if score != lead.score:
                    changed += 1
                    after = replace(lead, score=score, score_breakdown=breakdown, version=lead.version + 1)
                    await lead_repo.save_lead(uow.session, org_id, after, stamp)
                    uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=["score"], cause="rescoring"),
                                org_id=org_id, subject_id=after.id, subject_version=after.version)
            await uow.commit()
            last_id = batch[-1].id
    return {"rescored": rescored, "changed": changed}
