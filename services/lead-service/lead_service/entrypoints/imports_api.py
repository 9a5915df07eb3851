"""/v1/imports: CSV upload (streamed), progress, per-row error report."""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import CurrentPrincipal, Principal
from salesflow_shared.contract import LOCATION, returns
from salesflow_shared.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep
from salesflow_shared.pagination import CursorParam, LimitParam

from ..adapters.repository import imports as import_repo
from ..adapters.repository.forms import find_form
from ..adapters.repository.imports import ImportJob
from ..config import Settings
from ..service_layer.imports import import_queued, import_to_dict, stage_upload
from . import responses as R
from .common import page_body

router = APIRouter(prefix="/v1/imports", tags=["imports"])


@router.post("", status_code=202, summary="Upload a CSV of leads (body: text/csv); processed in the background",
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}},
                                            "required": True}},
             operation_id="createImport", **returns(R.ImportQueued, status=202, headers=LOCATION,
                                                    checked_beyond_schema=("body", "header", "form_id")))
async def upload(request: Request, context: ContextDep, uow: UowDep, principal: CurrentPrincipal,
                 idem: IdempotencyDep, form_id: str | None = None, filename: str | None = None) -> JSONResponse:
    """Managers and admins import for the org; a rep imports their own call list: the leads are theirs (routing
    rules may still move them), and a row naming another rep's open lead fails, naming it and its owner.

    Idempotency-Key: the file streams in (it is not held in memory), so its digest is known only once staged.
    The staged import is queued in the same transaction that stores the key and the answer; a retry of an
    accepted upload (same key, same file) discards what it staged and gets the first answer, the same key with
    another file 409, and neither is ever processed."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/csv", "text/plain"):
        raise UnsupportedMediaType("send the file as the request body with Content-Type: text/csv")
    form = None
    if form_id is not None:
        form = await find_form(uow.session, form_id, principal.org_id)
        if form is None:
            raise ValidationFailed.single("form_id", "no such form in your organization")
    limit = context.settings_as(Settings).max_import_bytes

    digest = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"an import may have at most {limit} bytes")
            digest.update(chunk)
            yield chunk

    import_id = str(uuid.uuid4())
    try:
        result = await stage_upload(context, org_id=principal.org_id, user_id=principal.user_id, chunks=chunks(),
                                    filename=filename, form=form, import_id=import_id,
                                    owner_id=None if principal.sees_whole_org else principal.user_id,
                                    queue=False)
    except (PayloadTooLarge, ValidationFailed):
        async with context.uow() as cleanup:  # no half-staged import is left behind
            await import_repo.delete_import(cleanup.session, principal.org_id, import_id)
            await cleanup.commit()
        raise
    payload = {"form_id": form_id, "filename": filename, "csv_sha256": digest.hexdigest()}
    try:
        replay = await idem.begin(uow.session, org_id=principal.org_id, scope="imports", payload=payload)
    except Exception:  # the key was used with another file (409): this upload is never processed
        await uow.rollback()
        async with context.uow() as cleanup:
            await import_repo.delete_import(cleanup.session, principal.org_id, import_id)
            await cleanup.commit()
        raise
    if replay is not None:  # a retry of an accepted upload: the first import stands, this copy goes
        await import_repo.delete_import(uow.session, principal.org_id, import_id)
        await uow.commit()
        return replay
    await import_repo.queue_import(uow.session, principal.org_id, import_id, result["total_rows"])
    response = await idem.complete(uow.session, status_code=202,
                                   body={**result, "progress_url": f"/v1/imports/{import_id}"},
                                   headers={"Location": f"/v1/imports/{import_id}"})
    await uow.commit()
    import_queued(context)
    return response


async def _job(uow: Any, principal: Principal, import_id: str) -> ImportJob:
    job = await import_repo.find_import(uow.session, principal, import_id)
    if job is None:
        raise NotFound(f"no import {import_id}")
    return job


@router.get("", summary="The org's imports, newest first (a rep: its own)", operation_id="listImports",
            **returns(R.ImportPage))
async def list_imports(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                       cursor: CursorParam = None) -> dict[str, Any]:
    page = await import_repo.imports_page(uow.session, principal, limit=limit, cursor=cursor)
    return page_body(page, import_to_dict)


@router.get("/{import_id}", summary="Progress of an import: status and counts",
            operation_id="getImport", **returns(R.ImportOut))
async def get_import(import_id: str, uow: UowDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return import_to_dict(await _job(uow, principal, import_id))


@router.get("/{import_id}/errors", summary="The rows that failed, with their errors (cursor pagination)",
            operation_id="listImportErrors", **returns(R.ImportRowErrorPage))
async def import_errors(import_id: str, uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 100,
                        cursor: CursorParam = None) -> dict[str, Any]:
    page = await import_repo.failed_rows_page(uow.session, await _job(uow, principal, import_id), limit=limit,
                                              cursor=cursor)
    return page_body(page, lambda r: {"row": r.row_number, "errors": r.errors or [],
                                      "data": {k: v for k, v in r.data.items() if not k.startswith("__")}})
