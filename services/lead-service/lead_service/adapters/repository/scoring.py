"""An org's scoring rules and custom field definitions (what scoring and intake read of its setup)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ...domain.custom_fields import CustomFieldDef
from ...domain.scoring import RULE_CONFIG, ScoringRule
from ..orm import custom_field_defs, scoring_rules
from . import Page, keyset


@dataclass(frozen=True)
class StoredRule:
    """A scoring rule as the API shows and edits it (`ScoringRule` is the enabled rule scoring applies)."""
    id: str
    name: str
    points: int
    enabled: bool
    config: dict[str, Any]  # as validated by RULE_CONFIG
    created_at: datetime
    updated_at: datetime


_RULE_FIELDS = tuple(StoredRule.__dataclass_fields__)


def _rule(row: Any) -> StoredRule:
    m = row._mapping
    return StoredRule(**{k: m[k] for k in _RULE_FIELDS})


_ENABLED_RULES = sa.select(scoring_rules).where(
    scoring_rules.c.org_id == sa.bindparam("org_id"), scoring_rules.c.enabled.is_(True)).order_by(
    scoring_rules.c.created_at, scoring_rules.c.id)
_CUSTOM_DEFS = sa.select(custom_field_defs).where(custom_field_defs.c.org_id == sa.bindparam("org_id"))


async def enabled_rules(session: AsyncSession, org_id: str) -> list[ScoringRule]:
    """The rules scoring applies, in the order they were made."""
    rows = (await session.execute(_ENABLED_RULES, {"org_id": org_id})).all()
    return [ScoringRule(r.id, r.name, r.points, RULE_CONFIG.validate_python(r.config)) for r in rows]


async def insert_rule(session: AsyncSession, org_id: str, rule_id: str, *, name: str, points: int,
                      config: dict[str, Any], enabled: bool, now: datetime) -> None:
    await session.execute(sa.insert(scoring_rules).values(
        id=rule_id, org_id=org_id, name=name, points=points, config=config, enabled=enabled, created_at=now,
        updated_at=now))


async def find_rule(session: AsyncSession, org_id: str, rule_id: str) -> StoredRule | None:
    row = (await session.execute(sa.select(scoring_rules).where(
        scoring_rules.c.id == rule_id, scoring_rules.c.org_id == org_id))).first()
    return _rule(row) if row is not None else None


async def rules_page(session: AsyncSession, org_id: str, *, limit: int, cursor: str | None) -> Page[StoredRule]:
    return await keyset(session, sa.select(scoring_rules).where(scoring_rules.c.org_id == org_id),
                        [scoring_rules.c.created_at, scoring_rules.c.id], limit, cursor, _rule)


async def update_rule(session: AsyncSession, org_id: str, rule_id: str, now: datetime, **values: Any) -> None:
    await session.execute(sa.update(scoring_rules).where(
        scoring_rules.c.org_id == org_id, scoring_rules.c.id == rule_id).values(**values, updated_at=now))


async def delete_rule(session: AsyncSession, org_id: str, rule_id: str) -> None:
    await session.execute(sa.delete(scoring_rules).where(
        scoring_rules.c.org_id == org_id, scoring_rules.c.id == rule_id))


# ------------------------------------------------------------------ custom fields
@dataclass(frozen=True)
class StoredCustomField:
    key: str
    label: str | None
    type: str  # string, number, boolean, date, choice
    options: list[str]
    required: bool
    created_at: datetime


def _custom_field(row: Any) -> StoredCustomField:
    return StoredCustomField(row.key, row.label, row.type, list(row.options or []), row.required, row.created_at)


async def custom_field_defs_of(session: AsyncSession, org_id: str) -> dict[str, CustomFieldDef]:
    """The org's custom fields as intake checks them, by key."""
    rows = (await session.execute(_CUSTOM_DEFS, {"org_id": org_id})).all()
    return {d.key: CustomFieldDef(d.key, d.type, tuple(d.options or ()), d.required) for d in rows}


async def insert_custom_field(session: AsyncSession, org_id: str, *, key: str, label: str | None, type_: str,
                              options: list[str], required: bool, now: datetime) -> StoredCustomField:
    """Define the field (IntegrityError when the org has one with this key)."""
    await session.execute(sa.insert(custom_field_defs).values(
        org_id=org_id, key=key, label=label, type=type_, options=options, required=required, created_at=now))
    row = (await session.execute(sa.select(custom_field_defs).where(
        custom_field_defs.c.org_id == org_id, custom_field_defs.c.key == key))).one()
    return _custom_field(row)


async def custom_fields_page(session: AsyncSession, org_id: str, *, limit: int,
                             cursor: str | None) -> Page[StoredCustomField]:
    return await keyset(session, sa.select(custom_field_defs).where(custom_field_defs.c.org_id == org_id),
                        [custom_field_defs.c.key], limit, cursor, _custom_field)
