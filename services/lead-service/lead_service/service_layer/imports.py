"""CSV import: the upload is streamed into staged rows (never the whole file in memory), then a worker
ingests them in batches with the same mapping, scoring and de-duplication as web forms, recording a
per-row error report and progress counts."""
from __future__ import annotations

import codecs
import csv
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import structlog

from salesflow_shared.app import ServiceContext, run_periodically
from salesflow_shared.errors import ValidationFailed
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import imports as import_repo
from ..adapters.repository.imports import ImportJob, ImportRow, ImportSpec, RowResult
from ..adapters.repository.leads import open_leads_by_email
from ..config import Settings
from ..domain.dedup import someone_elses_lead
from ..domain.forms import Form
from ..domain.lead import is_valid_target
from ..domain.mapping import FormSpec, map_payload
from ..domain.times import iso
from .ingest import Candidate, OrgSetup, ingest

log = structlog.get_logger(__name__)
STAGE_BATCH = 1000
MAX_COLUMNS = 200
MAX_FIELD = 10_000
BAD_WIDTH = "__bad_width__"
IMPORT_WORKER = "import_worker"

ALIASES = {
    "email": "contact.email", "e_mail": "contact.email", "email_address": "contact.email",
    "first_name": "contact.first_name", "firstname": "contact.first_name", "given_name": "contact.first_name",
    "last_name": "contact.last_name", "lastname": "contact.last_name", "surname": "contact.last_name",
    "family_name": "contact.last_name", "name": "contact.full_name", "full_name": "contact.full_name",
    "phone": "contact.phone", "phone_number": "contact.phone", "mobile": "contact.phone",
    "title": "contact.title", "job_title": "contact.title", "position": "contact.title",
    "company": "company.name", "company_name": "company.name", "organization": "company.name",
    "domain": "company.domain", "website": "company.domain", "company_domain": "company.domain",
    "company_size": "company.size", "size": "company.size", "employees": "company.size",
    "industry": "company.industry", "state": "region", "zip": "postcode", "zip_code": "postcode",
    "postal_code": "postcode", "product": "product_line", "amount": "value", "deal_value": "value",
    "utm_source": "utm.source", "utm_medium": "utm.medium", "utm_campaign": "utm.campaign",
    "utm_term": "utm.term", "utm_content": "utm.content",
}


def normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def default_mapping(headers: list[str]) -> dict[str, str]:
    mapping = {}
    for header in headers:
        key = normalise_header(header)
        target = ALIASES.get(key) or (key if is_valid_target(key) else None)
        if target is not None:
            mapping[header] = target
    return mapping


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Text lines (with their line endings) from a byte stream, decoded incrementally as UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    pending = ""
    async for chunk in chunks:
        try:
            pending += decoder.decode(chunk)
        except UnicodeDecodeError:
            raise ValidationFailed.single("body", "the CSV file is not UTF-8") from None
        *complete, pending = pending.splitlines(keepends=True) or [""]
        if pending and pending[-1:] in ("\n", "\r"):
            complete.append(pending)
            pending = ""
        for line in complete:
            yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


async def csv_rows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    """Parse CSV records from a byte stream; quoted fields may span lines. Memory: one record at a time."""
    buffer: list[str] = []
    async for line in _lines(chunks):
        buffer.append(line)
        text = "".join(buffer)
        if text.count('"') % 2:  # inside a quoted field: the record continues on the next line
            if len(text) > MAX_FIELD * 10:
                raise ValidationFailed.single("body", "a quoted field never ends")
            continue
        buffer.clear()
        for record in csv.reader([text]):
            yield record
    if buffer:
        for record in csv.reader(["".join(buffer)]):
            yield record


def spec_for(form: Form | None, headers: list[str]) -> FormSpec:
    if form is not None:
        return FormSpec(mapping=form.mapping, defaults={**form.defaults, "source": "import"},
                        required=tuple(form.required))
    return FormSpec(mapping=default_mapping(headers), defaults={"source": "import"})


async def stage_upload(context: ServiceContext, *, org_id: str, user_id: str, chunks: AsyncIterator[bytes],
                       filename: str | None, form: Form | None, import_id: str,
                       owner_id: str | None = None, queue: bool = True) -> dict[str, Any]:
    """Stream the CSV into staged rows in batches; return the import as queued. With `owner_id` (a rep's own
    import) every lead it creates is that rep's. With `queue=False` the import stays "uploading" (nothing
    processes it) until the caller queues it (`imports.queue_import`) in its own transaction."""
    records = csv_rows(chunks)
    try:
        headers = await records.__anext__()
    except StopAsyncIteration:
        raise ValidationFailed.single("body", "the CSV file is empty") from None
    headers = [h.strip() for h in headers]
    if len(headers) > MAX_COLUMNS:
        raise ValidationFailed.single("header", f"at most {MAX_COLUMNS} columns")
    if len(set(headers)) != len(headers) or "" in headers:
        raise ValidationFailed.single("header", "column names must be present and distinct")
    spec = spec_for(form, headers)
    if form is None and not any(t.startswith("contact.") for t in spec.mapping.values()):
        raise ValidationFailed.single("header", "no column maps to a contact field (e.g. 'email', 'first_name')")
    now = context.clock.now()
    async with context.uow() as uow:
        await import_repo.create_import(
            uow.session, org_id, import_id, filename=(filename or "")[:300] or None,
            form_id=form.id if form is not None else None,
            spec=ImportSpec(spec, owner_id),
            created_by=user_id, now=now)
        await uow.commit()
    total = 0
    batch: list[tuple[int, dict[str, str]]] = []

    async def flush() -> None:
        async with context.uow() as uow:
            await import_repo.stage_rows(uow.session, org_id, import_id, batch, total)
            await uow.commit()
        batch.clear()

    async for record in records:
        if not any(cell.strip() for cell in record):
            continue  # blank line
        total += 1
        # Not strict: a row of another width is kept, cut or padded to the header, and flagged just below.
        data: dict[str, str] = dict(zip(headers, (cell[:MAX_FIELD] for cell in record), strict=False))
        if len(record) != len(headers):
            data[BAD_WIDTH] = f"{len(record)} cells where the header has {len(headers)}"
        batch.append((total + 1, data))
        if len(batch) >= STAGE_BATCH:
            await flush()
    if batch:
        await flush()
    if queue:
        async with context.uow() as uow:
            await import_repo.queue_import(uow.session, org_id, import_id, total)
            await uow.commit()
        import_queued(context)
    return {"id": import_id, "status": "queued", "total_rows": total}


def import_to_dict(job: ImportJob) -> dict[str, Any]:
    """The import as the API shows it."""
    return {"id": job.id, "status": job.status, "filename": job.filename, "form_id": job.form_id,
            "total_rows": job.total_rows, "processed_rows": job.processed_rows,
            "created": job.created_count, "updated": job.updated_count, "failed": job.failed_count,
            "mapping": job.spec.form.mapping, "created_by": job.created_by,
            "created_at": iso(job.created_at), "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at)}


async def process_batch(context: ServiceContext, batch_size: int) -> bool:
    """Ingest the next batch of one import; False when there was nothing to do."""
    from ..entrypoints.common import org_setup

    async with context.uow() as uow:
        job = await import_repo.claim_next(uow.session)
        if job is None:
            return False
        now = context.clock.now()
        rows = await import_repo.pending_rows(uow.session, job, batch_size)
        if not rows:
            await import_repo.finish_import(uow.session, job, now)
            await uow.commit()
            log.info("import_done", import_id=job.id, rows=job.total_rows)
            return True
        setup = await org_setup(context, uow.session, job.org_id)
        results = _mapped(job, rows, setup)
        candidates = [(number, candidate) for number, candidate in results.items()
                      if isinstance(candidate, Candidate)]
        failed = {number: r for number, r in results.items() if isinstance(r, RowResult)}
        if job.spec.owner_id:
            candidates = await _not_someone_elses(uow, job.org_id, job.spec.owner_id, candidates, failed)
        ingested = await _ingest_rows(uow, job.org_id, candidates, setup, now)
        await import_repo.record_batch(uow.session, job, {**failed, **ingested}, now)
        await uow.commit()
    return True


def _mapped(job: ImportJob, rows: list[ImportRow], setup: OrgSetup) -> dict[int, Candidate | RowResult]:
    """Each row's candidate lead, or why it failed, by row number (in file order)."""
    results: dict[int, Candidate | RowResult] = {}
    for row in rows:
        if BAD_WIDTH in row.data:
            results[row.row_number] = RowResult("failed", errors=[{"field": "row", "message": row.data[BAD_WIDTH]}])
            continue
        mapped = map_payload(row.data, job.spec.form, setup.custom_defs)
        if mapped.lead is None:
            results[row.row_number] = RowResult("failed", errors=[{"field": p.field, "message": p.message}
                                                                   for p in mapped.errors])
            continue
        lead = mapped.lead
        if job.spec.owner_id:
            lead = lead.model_copy(update={"owner_id": job.spec.owner_id})
        results[row.row_number] = Candidate(lead, origin="import", import_id=job.id)
    return results


async def _not_someone_elses(uow: UnitOfWork, org_id: str, rep_id: str, candidates: list[tuple[int, Candidate]],
                             failed: dict[int, RowResult]) -> list[tuple[int, Candidate]]:
    """A rep's import does not take over another rep's open leads (ownership changes only through assignment):
    those rows fail, naming the lead and its owner, as the API's 409 does."""
    emails = sorted({c.lead.contact.email for _, c in candidates if c.lead.contact.email})
    taken = {email: lead for email, lead in (await open_leads_by_email(uow.session, org_id, emails,
                                                                       for_update=False)).items()
             if lead.owner_id != rep_id}
    kept = []
    for number, candidate in candidates:
        lead = taken.get(candidate.lead.contact.email or "")
        if lead is None:
            kept.append((number, candidate))
            continue
        failed[number] = RowResult("failed", errors=[{
            "field": "contact.email", "message": someone_elses_lead(lead.id, lead.owner_id)}])
    return kept


async def _ingest_rows(uow: UnitOfWork, org_id: str, candidates: list[tuple[int, Candidate]], setup: OrgSetup,
                       now: datetime) -> dict[int, RowResult]:
    """Ingest the rows' leads together; when that fails, row by row (one bad row must not sink the batch)."""
    if not candidates:
        return {}
    results: dict[int, RowResult] = {}
    try:
        async with uow.session.begin_nested():
            outcomes = await ingest(uow, org_id, [c for _, c in candidates], setup, now)
    except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch: go row by row
        log.warning("import_batch_fallback", error=str(exc)[:300])
        uow._outgoing.clear()  # the rolled-back savepoint's events
        for number, candidate in candidates:
            mark = len(uow._outgoing)
            try:
                async with uow.session.begin_nested():
                    [outcome] = await ingest(uow, org_id, [candidate], setup, now)
            except Exception as row_exc:  # noqa: BLE001 - whatever failed the row is its recorded error
                del uow._outgoing[mark:]
                results[number] = RowResult("failed", errors=[{"field": "row",
                                                               "message": str(row_exc).splitlines()[0][:300]}])
                continue
            results[number] = RowResult("created" if outcome.created else "updated", outcome.lead.id)
        return results
    seen: set[str] = set()
    for (number, _), outcome in zip(candidates, outcomes, strict=True):
        created = outcome.created and outcome.lead.id not in seen
        seen.add(outcome.lead.id)
        results[number] = RowResult("created" if created else "updated", outcome.lead.id)
    return results


async def import_worker(context: ServiceContext) -> None:
    batch_size = context.settings_as(Settings).import_batch_size
    # Woken by the commit that queues an import (`import_queued`), not by every commit of the service.
    await run_periodically(context, lambda: process_batch(context, batch_size), 0.5, name=IMPORT_WORKER,
                           wake_when_told=True)


def import_queued(context: ServiceContext) -> None:
    """After the commit that queued an import: the import worker starts on it."""
    context.commits.tell(IMPORT_WORKER)
