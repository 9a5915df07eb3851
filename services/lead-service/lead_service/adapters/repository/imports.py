"""CSV imports and their staged rows (org-scoped; the import worker claims the next import of any org)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.errors import ValidationFailed
from salesflow_shared.pagination import decode_cursor, encode_cursor

from ...domain.mapping import FormSpec
from ..orm import import_rows, imports
from . import Page, keyset


@dataclass(frozen=True)
class ImportSpec:
    """How an import's columns become lead fields, and the rep whose own import it is (its leads are theirs)."""
    form: FormSpec
    owner_id: str | None = None


@dataclass(frozen=True)
class ImportJob:
    id: str
    org_id: str
    status: str  # uploading, queued, processing, done
    filename: str | None
    form_id: str | None
    spec: ImportSpec
    total_rows: int
    processed_rows: int
    created_count: int
    updated_count: int
    failed_count: int
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


_JOB_FIELDS = tuple(ImportJob.__dataclass_fields__)


def _job(row: Any) -> ImportJob:
    m = row._mapping
    spec = m["spec"] or {}
    return ImportJob(**{k: m[k] for k in _JOB_FIELDS if k != "spec"}, spec=ImportSpec(
        FormSpec(mapping=spec.get("mapping", {}), defaults=spec.get("defaults", {}),
                 required=tuple(spec.get("required", ()))), spec.get("owner_id")))


@dataclass(frozen=True)
class ImportRow:
    row_number: int
    data: dict[str, str]  # the CSV cells by header
    errors: list[dict[str, str]] | None


async def create_import(session: AsyncSession, org_id: str, import_id: str, *, filename: str | None,
                        form_id: str | None, spec: ImportSpec, created_by: str, now: datetime) -> None:
    """A new import, "uploading" (nothing processes it) until it is queued."""
    await session.execute(sa.insert(imports).values(
        id=import_id, org_id=org_id, status="uploading", filename=filename, form_id=form_id,
        spec={"mapping": spec.form.mapping, "defaults": spec.form.defaults, "required": list(spec.form.required),
              "owner_id": spec.owner_id},
        created_by=created_by, created_at=now))


_INSERT_ROWS = sa.insert(import_rows)


async def stage_rows(session: AsyncSession, org_id: str, import_id: str, rows: list[tuple[int, dict[str, str]]],
                     total_rows: int) -> None:
    """Stage a batch of (row number, cells) pending, and the count so far."""
    await session.execute(_INSERT_ROWS, [{"import_id": import_id, "row_number": number, "org_id": org_id,
                                          "data": data, "status": "pending"} for number, data in rows])
    await session.execute(sa.update(imports).where(imports.c.org_id == org_id, imports.c.id == import_id)
                          .values(total_rows=total_rows))


async def queue_import(session: AsyncSession, org_id: str, import_id: str, total_rows: int) -> None:
    """Hand a fully staged import to the import worker."""
    await session.execute(sa.update(imports).where(imports.c.org_id == org_id, imports.c.id == import_id).values(
        status="queued", total_rows=total_rows))


async def delete_import(session: AsyncSession, org_id: str, import_id: str) -> None:
    await session.execute(sa.delete(import_rows).where(import_rows.c.org_id == org_id,
                                                       import_rows.c.import_id == import_id))
    await session.execute(sa.delete(imports).where(imports.c.org_id == org_id, imports.c.id == import_id))


async def claim_next(session: AsyncSession) -> ImportJob | None:
    """The oldest import of any org waiting for the worker (PostgreSQL: locked, skipping those another replica
    works on)."""
    claim = sa.select(imports).where(imports.c.status.in_(("queued", "processing"))) \
        .order_by(imports.c.created_at).limit(1)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        claim = claim.with_for_update(skip_locked=True)
    row = (await session.execute(claim)).first()
    return _job(row) if row is not None else None


async def pending_rows(session: AsyncSession, job: ImportJob, limit: int) -> list[ImportRow]:
    rows = (await session.execute(sa.select(import_rows).where(
        import_rows.c.org_id == job.org_id, import_rows.c.import_id == job.id, import_rows.c.status == "pending")
        .order_by(import_rows.c.row_number).limit(limit))).all()
    return [ImportRow(r.row_number, dict(r.data), r.errors) for r in rows]


async def finish_import(session: AsyncSession, job: ImportJob, now: datetime) -> None:
    await session.execute(sa.update(imports).where(imports.c.org_id == job.org_id, imports.c.id == job.id).values(
        status="done", finished_at=now, started_at=sa.func.coalesce(imports.c.started_at, now)))


_RECORD_ROW = sa.update(import_rows).where(
    import_rows.c.import_id == sa.bindparam("b_import"), import_rows.c.row_number == sa.bindparam("b_row")) \
    .values(status=sa.bindparam("b_status"), errors=sa.bindparam("b_errors"), lead_id=sa.bindparam("b_lead"))


@dataclass(frozen=True)
class RowResult:
    status: str  # created, updated, failed
    lead_id: str | None = None
    errors: list[dict[str, str]] | None = None


async def record_batch(session: AsyncSession, job: ImportJob, results: dict[int, RowResult],
                       now: datetime) -> None:
    """What became of each row of a batch, and the import's progress counts."""
    await session.execute(_RECORD_ROW, [
        {"b_import": job.id, "b_row": n, "b_status": r.status, "b_errors": r.errors, "b_lead": r.lead_id}
        for n, r in results.items()], execution_options={"synchronize_session": False})
    counts = {s: sum(1 for r in results.values() if r.status == s) for s in ("created", "updated", "failed")}
    await session.execute(sa.update(imports).where(imports.c.org_id == job.org_id, imports.c.id == job.id).values(
        status="processing", started_at=sa.func.coalesce(imports.c.started_at, now),
        processed_rows=imports.c.processed_rows + len(results),
        created_count=imports.c.created_count + counts["created"],
        updated_count=imports.c.updated_count + counts["updated"],
        failed_count=imports.c.failed_count + counts["failed"]))


def _visible(principal: Principal) -> sa.Select[Any]:
    """The org's imports; a rep's own only."""
    query = sa.select(imports).where(imports.c.org_id == principal.org_id)
    return query if principal.sees_whole_org else query.where(imports.c.created_by == principal.user_id)


async def find_import(session: AsyncSession, principal: Principal, import_id: str) -> ImportJob | None:
    row = (await session.execute(_visible(principal).where(imports.c.id == import_id))).first()
    return _job(row) if row is not None else None


async def imports_page(session: AsyncSession, principal: Principal, *, limit: int,
                       cursor: str | None) -> Page[ImportJob]:
    """The imports `principal` sees, newest first."""
    return await keyset(session, _visible(principal), [imports.c.created_at, imports.c.id], limit, cursor, _job,
                        descending=True)


async def failed_rows_page(session: AsyncSession, job: ImportJob, *, limit: int,
                           cursor: str | None) -> Page[ImportRow]:
    """The rows of the import that failed, in file order."""
    query = sa.select(import_rows).where(import_rows.c.org_id == job.org_id, import_rows.c.import_id == job.id,
                                         import_rows.c.status == "failed")
    values = decode_cursor(cursor, 1)
    if values is not None:
        if not isinstance(values[0], int):
            raise ValidationFailed.single("cursor", "not a cursor this API issued")
        query = query.where(import_rows.c.row_number > values[0])
    rows = (await session.execute(query.order_by(import_rows.c.row_number).limit(limit + 1))).all()
    items = [ImportRow(r.row_number, dict(r.data or {}), r.errors) for r in rows[:limit]]
    return Page(items=items, next_cursor=encode_cursor([items[-1].row_number]) if len(rows) > limit else None)
