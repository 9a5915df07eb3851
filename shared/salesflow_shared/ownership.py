"""Who owned a lead before: the `lead_past_owners` table and the read / write rule for reps.

A rep reads the leads it owns and the ones it owned before (the closer keeps the deal it won after the
hand-over to account management), and changes only the ones it owns now; admins and managers see the whole
org (docs/access.md). Each service that learns a lead's owner (from LeadAssigned) records the owner it
replaces with `remember_past_owner`, so "owned before" is a lookup in its own database.

The shape is defined once here: a service's metadata gets the table through `add_past_owners_table(metadata)`
and its migration creates it through `create_past_owners_table(op)`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import Principal
from .inbox import dialect_insert

TABLE_NAME = "lead_past_owners"


def _columns() -> list[Any]:
    return [
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("lead_id", sa.String(100), primary_key=True),
        sa.Column("rep_id", sa.String(100), primary_key=True),
        # when the rep stopped owning the lead (the first time, if it owned it twice)
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    ]


def add_past_owners_table(metadata: sa.MetaData) -> sa.Table:
    table = sa.Table(TABLE_NAME, metadata, *_columns())
    sa.Index("ix_lead_past_owners_rep", table.c.org_id, table.c.rep_id, table.c.lead_id)
    return table


def create_past_owners_table(op: Any) -> None:
    op.create_table(TABLE_NAME, *_columns())
    op.create_index("ix_lead_past_owners_rep", TABLE_NAME, ["org_id", "rep_id", "lead_id"])


def drop_past_owners_table(op: Any) -> None:
    op.drop_index("ix_lead_past_owners_rep", table_name=TABLE_NAME)
    op.drop_table(TABLE_NAME)


async def remember_past_owner(session: AsyncSession, table: sa.Table, org_id: str, lead_id: str,
                              before: str | None, after: str | None, at: datetime) -> None:
    """The lead passes from `before` to `after`: `before` keeps read access (a redelivery adds nothing)."""
    if not before or before == after:
        return
    insert = dialect_insert(session)
    await session.execute(insert(table).values(org_id=org_id, lead_id=lead_id, rep_id=before, until=at)
                          .on_conflict_do_nothing(index_elements=["org_id", "lead_id", "rep_id"]))


def owned_or_owned_before(table: sa.Table, principal: Principal, lead_id: Any, owner_id: Any) -> Any:
    """SQL condition: the lead (`lead_id`, `owner_id` columns of the caller's query) is owned by the rep now
    or was before. Org scoping is the caller's own condition."""
    before = sa.select(table.c.lead_id).where(table.c.org_id == principal.org_id,
                                              table.c.rep_id == principal.user_id)
    return sa.or_(owner_id == principal.user_id, lead_id.in_(before))


async def owned_before(session: AsyncSession, table: sa.Table, principal: Principal, lead_id: str) -> bool:
    row = (await session.execute(sa.select(table.c.lead_id).where(
        table.c.org_id == principal.org_id, table.c.lead_id == lead_id,
        table.c.rep_id == principal.user_id))).first()
    return row is not None
