"""Statements and their lines: reading them as `StatementRow`s, their workflow's updates, and storing
recomputed ones.

An org's statements of a quarter are ~200 rows and ~100,000 lines, written together: one statement for all new
statements, one for all changed ones, one DELETE of their old lines and one COPY of all lines (PostgreSQL; an
INSERT of many rows on SQLite).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected

from ...domain.commissions import Line
from ..orm import statement_lines, statements
from .sources import StatementRow, chunks, statement_row


async def _statement_rows(session: AsyncSession, query: sa.Select[Any]) -> list[StatementRow]:
    return [statement_row(r) for r in (await session.execute(query)).all()]


async def statement_of(session: AsyncSession, org_id: str, statement_id: str) -> StatementRow | None:
    found = await _statement_rows(session, sa.select(statements).where(
        statements.c.org_id == org_id, statements.c.statement_id == statement_id))
    return found[0] if found else None


async def statement_version(session: AsyncSession, org_id: str, participant_id: str, start: date,
                            version: int) -> StatementRow:
    found = await _statement_rows(session, sa.select(statements).where(
        statements.c.org_id == org_id, statements.c.participant_id == participant_id,
        statements.c.period_start == start, statements.c.version == version))
    if len(found) != 1:
        raise LookupError(f"no version {version} of {participant_id}'s statement of {start}")
    return found[0]


async def statements_of(session: AsyncSession, org_id: str, *, participant_id: str | None = None,
                        period_start: date | None = None, approved_only: bool = False) -> list[StatementRow]:
    """Every version of the org's statements (of one participant, one period), by period, participant and
    version; `approved_only`: the versions that were approved at some point (what a rep may see)."""
    query = sa.select(statements).where(statements.c.org_id == org_id)
    if participant_id is not None:
        query = query.where(statements.c.participant_id == participant_id)
    if period_start is not None:
        query = query.where(statements.c.period_start == period_start)
    if approved_only:
        query = query.where(statements.c.approved_at.is_not(None))
    return await _statement_rows(session, query.order_by(statements.c.period_start, statements.c.participant_id,
                                                         statements.c.version))


async def open_statement_periods(session: AsyncSession, org_id: str, open_statuses: Sequence[str],
                                 ending_after: date) -> set[tuple[str, date]]:
    """(participant, period start) of every statement in one of `open_statuses` whose period ends after the
    date."""
    rows = (await session.execute(sa.select(statements.c.participant_id, statements.c.period_start).where(
        statements.c.org_id == org_id, statements.c.status.in_(open_statuses),
        statements.c.period_end > ending_after))).tuples().all()
    return set(rows)


async def move_statement(session: AsyncSession, org_id: str, statement_id: str, from_status: str,
                         values: Mapping[str, Any]) -> bool:
    """Set these values on the statement if it is still in `from_status`; whether it was."""
    result = await session.execute(sa.update(statements).where(
        statements.c.org_id == org_id, statements.c.statement_id == statement_id,
        statements.c.status == from_status).values(**values))
    return rows_affected(result) == 1


LINE_COLUMNS = ("org_id", "line_id", "statement_id", "seq", "kind", "key", "lead_id", "plan_id", "plan_version",
                "rule", "amount", "description", "steps", "reason", "author")
# Above this many lines, PostgreSQL gets them by COPY (several times faster than INSERTs of thousands of rows).
COPY_FROM = 20


def new_line_ids(count: int) -> list[str]:
    """`count` ids for the lines written together, in ascending order: a random prefix of the batch, then a
    counter from a random start, then random bits (an RFC 9562 version 8 UUID: custom layout). In order, the
    batch's lines join the primary key's index at one place instead of at 100,000 random ones (the COPY of an
    org's quarter is about a third faster); the random prefix keeps batches apart as version 4 ids did."""
    prefix = os.urandom(6).hex()  # 48 bits, shared by the batch
    start = int.from_bytes(os.urandom(6), "big") >> 7  # 41 bits: room for the counter to grow
    tail = os.urandom(4 * count).hex()  # 32 random bits each
    head = f"{prefix[:8]}-{prefix[8:]}-8"
    ids = []
    for i in range(count):
        counter = start + i  # 42 bits: 12 in rand_a, 30 in rand_b after the variant bits
        ids.append(f"{head}{counter >> 30:03x}-{0x8000 | (counter >> 16) & 0x3FFF:04x}-{counter & 0xFFFF:04x}"
                   f"{tail[8 * i:8 * i + 8]}")
    return ids


async def replace_lines(session: AsyncSession, org_id: str, lines_by_statement: Mapping[str, Sequence[Line]]) -> None:
    """Replace the lines of these statements: one DELETE, and one COPY (or INSERT) for all of them, numbered in
    the order given."""
    for chunk in chunks(list(lines_by_statement)):
        await session.execute(sa.delete(statement_lines).where(statement_lines.c.org_id == org_id,
                                                               statement_lines.c.statement_id.in_(chunk)))
    count = sum(len(lines) for lines in lines_by_statement.values())
    if not count:
        return
    line_ids = iter(new_line_ids(count))
    if session.get_bind().dialect.name == "postgresql" and count > COPY_FROM:
        dumps = orjson.dumps
        records = [(org_id, next(line_ids), statement_id, seq, line.kind, line.key[:300], line.lead_id,
                    line.plan_id, line.plan_version, line.rule, line.amount, line.description,
                    dumps(line.steps).decode(), line.reason, line.author)
                   for statement_id, lines in lines_by_statement.items() for seq, line in enumerate(lines)]
        connection = await (await session.connection()).get_raw_connection()
        # union-attr: a connection checked out of the pool always has its asyncpg connection
        await connection.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            "statement_lines", columns=LINE_COLUMNS, records=records)
        return
    await session.execute(sa.insert(statement_lines), [
        {"org_id": org_id, "line_id": next(line_ids), "statement_id": statement_id, "seq": seq, "kind": line.kind,
         "key": line.key[:300], "lead_id": line.lead_id, "plan_id": line.plan_id, "plan_version": line.plan_version,
         "rule": line.rule, "amount": line.amount, "description": line.description, "steps": list(line.steps),
         "reason": line.reason, "author": line.author}
        for statement_id, lines in lines_by_statement.items() for seq, line in enumerate(lines)])


@dataclass(frozen=True)
class NewStatement:
    """A statement row to insert (a participant's first version of a period, or a new version)."""

    statement_id: str
    participant_id: str
    period_start: Any
    period_end: Any
    version: int
    values: Mapping[str, Any]  # status, currencies, totals, summary, fingerprint, reason, computed_at


@dataclass(frozen=True)
class StatementChange:
    """New values for a statement row, with the revision it moves to."""

    statement_id: str
    revision: int
    values: Mapping[str, Any]


_UPDATE_STATEMENT = sa.update(statements).where(
    statements.c.org_id == sa.bindparam("b_org_id"), statements.c.statement_id == sa.bindparam("b_statement_id"))


async def insert_statements(session: AsyncSession, org_id: str, new: Iterable[NewStatement]) -> None:
    rows = [{"org_id": org_id, "statement_id": s.statement_id, "participant_id": s.participant_id,
             "period_start": s.period_start, "period_end": s.period_end, "version": s.version, "revision": 1,
             **s.values} for s in new]
    if rows:
        await session.execute(sa.insert(statements), rows)


async def update_statements(session: AsyncSession, org_id: str, changes: Sequence[StatementChange]) -> None:
    """Set each statement's values and revision (one statement per set of columns changed together)."""
    by_columns: dict[tuple[str, ...], list[StatementChange]] = {}
    for change in changes:
        by_columns.setdefault(tuple(change.values), []).append(change)
    for columns, same in by_columns.items():
        await session.execute(_UPDATE_STATEMENT.values(
            revision=sa.bindparam("b_revision"), **{k: sa.bindparam(f"b_{k}") for k in columns}), [
            {"b_org_id": org_id, "b_statement_id": c.statement_id, "b_revision": c.revision,
             **{f"b_{k}": v for k, v in c.values.items()}} for c in same])
