"""Adjustments and disputes of statement lines: their rows, as `DisputeRow`s."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ..orm import adjustments, disputes, statement_lines


@dataclass(frozen=True)
class DisputeRow:
    org_id: str
    dispute_id: str
    statement_id: str
    line_id: str
    participant_id: str
    comment: str
    opened_by: str
    opened_at: datetime
    status: str  # open, accepted, rejected
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    adjustment_id: str | None


_DISPUTE_FIELDS = tuple(f.name for f in fields(DisputeRow))


async def _dispute_rows(session: AsyncSession, query: sa.Select[Any]) -> list[DisputeRow]:
    return [DisputeRow(*(getattr(r, name) for name in _DISPUTE_FIELDS)) for r in (await session.execute(query)).all()]


async def dispute_of(session: AsyncSession, org_id: str, dispute_id: str) -> DisputeRow | None:
    found = await _dispute_rows(session, sa.select(disputes).where(disputes.c.org_id == org_id,
                                                                   disputes.c.dispute_id == dispute_id))
    return found[0] if found else None


async def disputes_of(session: AsyncSession, org_id: str, *, statement_id: str | None = None,
                      participant_id: str | None = None, status: str | None = None,
                      limit: int | None = None) -> list[DisputeRow]:
    """Disputes (of one statement, of one participant, in one status), oldest first."""
    query = sa.select(disputes).where(disputes.c.org_id == org_id)
    if statement_id is not None:
        query = query.where(disputes.c.statement_id == statement_id)
    if participant_id is not None:
        query = query.where(disputes.c.participant_id == participant_id)
    if status is not None:
        query = query.where(disputes.c.status == status)
    return await _dispute_rows(session, query.order_by(disputes.c.opened_at).limit(limit))


async def insert_dispute(session: AsyncSession, org_id: str, dispute_id: str, statement_id: str, line_id: str,
                         participant_id: str, comment: str, opened_by: str, opened_at: datetime) -> None:
    await session.execute(sa.insert(disputes).values(
        org_id=org_id, dispute_id=dispute_id, statement_id=statement_id, line_id=line_id,
        participant_id=participant_id, comment=comment, opened_by=opened_by, opened_at=opened_at, status="open"))


async def resolve_dispute_row(session: AsyncSession, org_id: str, dispute_id: str, status: str, resolution: str,
                              resolved_by: str, resolved_at: datetime, adjustment_id: str | None) -> None:
    await session.execute(sa.update(disputes).where(disputes.c.org_id == org_id,
                                                    disputes.c.dispute_id == dispute_id).values(
        status=status, resolution=resolution, resolved_by=resolved_by, resolved_at=resolved_at,
        adjustment_id=adjustment_id))


async def statement_has_line(session: AsyncSession, org_id: str, statement_id: str, line_id: str) -> bool:
    return (await session.execute(sa.select(statement_lines.c.line_id).where(
        statement_lines.c.org_id == org_id, statement_lines.c.statement_id == statement_id,
        statement_lines.c.line_id == line_id))).first() is not None


async def insert_adjustment(session: AsyncSession, values: Mapping[str, Any]) -> None:
    """`values`: the `adjustments` row's columns."""
    await session.execute(sa.insert(adjustments).values(**values))
