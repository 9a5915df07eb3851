"""Rebuild every read model from the event log.

The log is replayed in event-id order (a random order, unrelated to arrival), which also checks that the
projections do not depend on order: the result must equal what the consumer built incrementally.
Quotas and forecast snapshots are not read models (they are this service's own data) and are kept.
"""
from __future__ import annotations

import sqlalchemy as sa

from salesflow_shared.db import Database
from salesflow_shared.events import Envelope, parse_data

from ..adapters.orm import READ_MODELS, event_log
from .projections import project, recompute_lead

BATCH = 2000


async def rebuild_read_models(database: Database, org_id: str | None = None) -> dict[str, int]:
    """Delete the read models (of one org, or all) and replay the log into them, in one transaction."""
    replayed = 0
    leads: set[tuple[str, str]] = set()
    async with database.session() as session:
        for table in READ_MODELS:
            stmt = sa.delete(table)
            if org_id is not None:
                stmt = stmt.where(table.c.org_id == org_id)
            await session.execute(stmt)
        last = ""
        while True:
            query = sa.select(event_log).where(event_log.c.event_id > last).order_by(event_log.c.event_id).limit(BATCH)
            if org_id is not None:
                query = query.where(event_log.c.org_id == org_id)
            rows = (await session.execute(query)).all()
            if not rows:
                break
            for row in rows:
                envelope = Envelope(
                    id=row.event_id, type=row.event_type, version=row.event_version, org_id=row.org_id,
                    occurred_at=row.occurred_at, producer=row.producer, subject_id=row.subject_id,
                    subject_version=row.subject_version, correlation_id=row.correlation_id,
                    causation_id=row.causation_id, data=row.data)
                touched = await project(session, envelope, parse_data(envelope), recompute=False)
                leads.update((row.org_id, lead_id) for lead_id in touched)
                replayed += 1
            last = rows[-1].event_id
        for org, lead_id in sorted(leads):
            await recompute_lead(session, org, lead_id)
        await session.commit()
    return {"events_replayed": replayed, "leads_recomputed": len(leads)}
