"""The enrichment queue kept on the leads table: which leads wait for the provider, their attempts and
failures (the worker leases leads of every org; an admin's retry is the org's own)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected

from ..orm import leads


@dataclass(frozen=True)
class LeasedLead:
    id: str
    org_id: str
    email: str  # pending enrichment is for a business email address (erasure ends it)
    enrichment_attempts: int  # counting the attempt just leased


def _due(now: Any) -> sa.Select[Any]:
    return sa.select(leads.c.id).where(
        leads.c.enrichment_status == "pending",
        sa.or_(leads.c.enrichment_next_at.is_(None), leads.c.enrichment_next_at <= now),
    ).order_by(leads.c.enrichment_next_at).limit(sa.bindparam("limit", type_=sa.Integer))


def _lease_statement(dialect: str) -> sa.Update:
    now = sa.bindparam("now", type_=leads.c.enrichment_failed_at.type)
    lease_until = sa.bindparam("lease_until", type_=leads.c.enrichment_next_at.type)
    due = _due(now)
    if dialect == "postgresql":  # locked, skipping those another replica leases
        due = due.with_for_update(skip_locked=True)
    used_up = leads.c.enrichment_attempts >= sa.bindparam("max_attempts", type_=sa.Integer)
    # (every right-hand side reads the row as it was before this update)
    return sa.update(leads).where(leads.c.id.in_(due)).values(
        enrichment_status=sa.case((used_up, "failed"), else_=leads.c.enrichment_status),
        enrichment_attempts=sa.case((used_up, leads.c.enrichment_attempts), else_=leads.c.enrichment_attempts + 1),
        enrichment_next_at=sa.case((used_up, sa.null()), else_=lease_until),
        enrichment_failed_at=sa.case((used_up, now), else_=leads.c.enrichment_failed_at),
        enrichment_error=sa.case((used_up, sa.func.coalesce(leads.c.enrichment_error, "no attempts left")),
                                 else_=leads.c.enrichment_error),
    ).returning(leads.c.id, leads.c.org_id, leads.c.email, leads.c.enrichment_attempts, leads.c.enrichment_status)


# Built once (the worker's every tick with due leads).
_LEASE = {dialect: _lease_statement(dialect) for dialect in ("postgresql", "sqlite")}
# SQLite: an UPDATE takes the database's write lock even when it matches nothing, so an idle tick only reads.
_ANY_DUE_SQLITE = _due(sa.bindparam("now", type_=leads.c.enrichment_next_at.type))


async def lease_due(session: AsyncSession, now: datetime, *, limit: int, max_attempts: int,
                    lease_s: float) -> tuple[list[LeasedLead], bool]:
    """Lease the leads of every org whose enrichment is due (pushing their next attempt past the lease), so
    replicas never call twice at once, in one statement; returns the leased leads, and whether anything was
    written (a lead that had used up its attempts failed, and is not leased).

    The attempt is counted here, before the call: an attempt that crashes the worker or fails in an
    unforeseen way still counts, so no lead is retried forever."""
    dialect = "postgresql" if session.bind is not None and session.bind.dialect.name == "postgresql" else "sqlite"
    if dialect == "sqlite" and (await session.execute(_ANY_DUE_SQLITE, {"now": now, "limit": 1})).first() is None:
        return [], False
    rows = (await session.execute(_LEASE[dialect], {
        "now": now, "limit": limit, "max_attempts": max_attempts,
        "lease_until": now + timedelta(seconds=lease_s)})).all()
    return [LeasedLead(r.id, r.org_id, r.email, r.enrichment_attempts) for r in rows
            if r.enrichment_status == "pending"], bool(rows)


async def record_failure(session: AsyncSession, org_id: str, lead_id: str, *, attempts: int, give_up: bool,
                         error: str, now: datetime, retry_at: datetime) -> None:
    """A failed attempt. Only a lead still pending is touched: an erased one stays as erasure left it."""
    await session.execute(sa.update(leads).where(
        leads.c.org_id == org_id, leads.c.id == lead_id, leads.c.enrichment_status == "pending",
        leads.c.erased_at.is_(None)).values(
        enrichment_attempts=attempts, enrichment_status="failed" if give_up else "pending",
        enrichment_next_at=None if give_up else retry_at, enrichment_failed_at=now, enrichment_error=error[:500]))


async def requeue_failed(session: AsyncSession, org_id: str, now: datetime, *, failed_from: datetime | None,
                         failed_to: datetime | None, created_from: datetime | None, created_to: datetime | None,
                         lead_ids: list[str] | None) -> int:
    """Queue the org's failed enrichments again with fresh attempts; how many. Erased and deleted leads stay."""
    condition = [leads.c.org_id == org_id, leads.c.enrichment_status == "failed", leads.c.erased_at.is_(None),
                 leads.c.deleted_at.is_(None)]
    if failed_from is not None:
        condition.append(leads.c.enrichment_failed_at >= failed_from)
    if failed_to is not None:
        condition.append(leads.c.enrichment_failed_at < failed_to)
    if created_from is not None:
        condition.append(leads.c.created_at >= created_from)
    if created_to is not None:
        condition.append(leads.c.created_at < created_to)
    if lead_ids:
        condition.append(leads.c.id.in_(lead_ids))
    result = await session.execute(sa.update(leads).where(*condition).values(
        enrichment_status="pending", enrichment_attempts=0, enrichment_next_at=now))
    return rows_affected(result)
