"""The audit log's rows: written with every change, read newest first."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ..orm import audit_log


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: Any
    after: Any


async def insert_audit_entry(session: AsyncSession, org_id: str, entry: AuditEntry) -> None:
    await session.execute(sa.insert(audit_log).values(
        org_id=org_id, at=entry.at, actor=entry.actor, action=entry.action, entity=entry.entity,
        entity_id=entry.entity_id, before=entry.before, after=entry.after))


async def audit_entries(session: AsyncSession, org_id: str, limit: int, entity: str | None = None,
                        entity_id: str | None = None) -> list[AuditEntry]:
    """The newest `limit` entries (about one kind of entity, one entity)."""
    query = sa.select(audit_log).where(audit_log.c.org_id == org_id)
    if entity:
        query = query.where(audit_log.c.entity == entity)
    if entity_id:
        query = query.where(audit_log.c.entity_id == entity_id)
    rows = (await session.execute(query.order_by(audit_log.c.id.desc()).limit(limit))).all()
    return [AuditEntry(r.at, r.actor, r.action, r.entity, r.entity_id, r.before, r.after) for r in rows]
