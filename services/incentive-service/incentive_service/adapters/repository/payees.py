"""Payees as the API shows them: the rep directory's copy plus the currency each is paid in and their role."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.inbox import dialect_insert

from ..orm import payees


@dataclass(frozen=True)
class PayeeRow:
    participant_id: str
    name: str | None
    email: str | None
    team_ids: list[str]
    active: bool
    currency: str | None
    role: str | None


def _payee(row: Any) -> PayeeRow:
    return PayeeRow(row.participant_id, row.name, row.email, list(row.team_ids or []), row.active, row.currency,
                    row.role)


async def payee_rows(session: AsyncSession, org_id: str, limit: int) -> list[PayeeRow]:
    """The first `limit` payees by participant id."""
    rows = (await session.execute(sa.select(payees).where(payees.c.org_id == org_id)
                                  .order_by(payees.c.participant_id).limit(limit))).all()
    return [_payee(r) for r in rows]


async def payee_row(session: AsyncSession, org_id: str, participant_id: str,
                    for_update: bool = False) -> PayeeRow | None:
    query = sa.select(payees).where(payees.c.org_id == org_id, payees.c.participant_id == participant_id)
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    return None if row is None else _payee(row)


async def set_payee(session: AsyncSession, org_id: str, participant_id: str, values: Mapping[str, Any]) -> None:
    """Set these columns of the payee, creating it (with no teams unless given) if the directory has not named it
    yet."""
    insert = dialect_insert(session)
    await session.execute(insert(payees).values(
        {"team_ids": [], **values, "org_id": org_id, "participant_id": participant_id},
    ).on_conflict_do_update(index_elements=["org_id", "participant_id"], set_=dict(values)))
