"""/v1/reps, /v1/teams, /v1/territories: the directory (admins write, everyone in the org reads)."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from salesflow_shared.app import UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal
from salesflow_shared.contract import etag_header
from salesflow_shared.errors import NotFound
from salesflow_shared.idempotency import IdempotencyDep
from salesflow_shared.pagination import CursorParam, LimitParam, Page, decode_cursor, page_from_rows
from salesflow_shared.preconditions import check_if_match as shared_check_if_match
from salesflow_shared.preconditions import strong_etag

from ..adapters import repository as repo
from ..adapters.orm import reps, teams, territories
from ..service_layer import directory
from .schemas import (
    RepCreate,
    RepOut,
    RepPage,
    RepPatch,
    TeamCreate,
    TeamOut,
    TeamPage,
    TeamPatch,
    TerritoryCreate,
    TerritoryOut,
    TerritoryPage,
    TerritoryPatch,
)

router = APIRouter()


# ------------------------------------------------------------------ helpers
def etag(version: int) -> str:
    return strong_etag(version)


def check_if_match(request: Request, version: int) -> None:
    """Every PATCH and PUT needs the ETag read (428 without it, 412 when stale or weak)."""
    shared_check_if_match(request.headers.get("if-match"), etag(version))


async def _list(uow: Any, table: sa.Table, org_id: str, limit: int, cursor: str | None,
                active: bool | None = None) -> tuple[list[Any], str | None]:
    after = decode_cursor(cursor, 1)
    rows = await repo.page_of_rows(uow.session, table, org_id, str(after[0]) if after else None, limit + 1,
                                   active=active)
    page = page_from_rows(rows, limit, key=lambda r: [r.id])
    return page.items, page.next_cursor


def _json(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


async def _created(uow: Any, idem: Any, row: Any, out: Any, collection: str) -> Any:
    """Store the idempotent 201 answer for the new directory row and commit."""
    resp = await idem.complete(uow.session, status_code=201, body=_json(out(row)), headers={
        "ETag": etag(row.row_version), "Location": f"/v1/{collection}/{quote(row.id, safe='')}"})
    await uow.commit()
    return resp


async def _locked_for_patch(uow: Any, request: Request, table: sa.Table, org_id: str, row_id: str,
                            what: str) -> Any:
    row = await repo.get_row(uow.session, table, org_id, row_id, for_update=True)
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    check_if_match(request, row.row_version)
    return row


async def _saved(uow: Any, row: Any, response: Response) -> Any:
    """Commit the change and answer the row as stored (ETag set)."""
    await uow.commit()
    response.headers["ETag"] = etag(row.row_version)
    return row


async def _read(uow: Any, table: sa.Table, org_id: str, row_id: str, what: str, response: Response) -> Any:
    row = await repo.get_row(uow.session, table, org_id, row_id)
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    response.headers["ETag"] = etag(row.row_version)
    return row


# ------------------------------------------------------------------ reps
def rep_out(row: Any, open_leads: int = 0) -> RepOut:
    return RepOut(id=row.id, user_id=row.id, name=row.name, email=row.email, active=row.active, tier=row.tier,
                  product_lines=row.product_lines, languages=row.languages, capacity=row.capacity,
                  timezone=row.timezone, working_hours=row.working_hours, out_of_office=row.out_of_office,
                  open_leads=open_leads, last_assigned_at=row.last_assigned_at, version=row.row_version,
                  created_at=row.created_at, updated_at=row.updated_at)



# What each resource's writes check beyond their schema (named by a 422): a real time zone, windows and
# absences that make sense, reps and teams that exist, a territory that names at least one place.
REP_CHECKED = ("email", "timezone", "working_hours", "out_of_office")
TEAM_CHECKED = ("member_ids", "lead_rep_id")
TERRITORY_CHECKED = ("body", "countries", "regions", "postcode_ranges", "rep_ids")

@router.post("/reps", status_code=201, response_model=RepOut,
             **etag_header(201, checked_beyond_schema=REP_CHECKED),
             summary="Add a rep to the directory")
async def create_rep(body: RepCreate, uow: UowDep, principal: AdminPrincipal, idem: IdempotencyDep) -> Any:
    payload = _json(body)
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="reps", payload=payload)
    if replay is not None:
        return replay
    values = {k: v for k, v in payload.items() if k != "user_id"}
    row = await directory.add_rep(uow, principal.org_id, body.user_id, values)
    return await _created(uow, idem, row, rep_out, "reps")


@router.get("/reps", response_model=RepPage, summary="List reps (filter by active)")
async def list_reps(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50, cursor: CursorParam = None,
                    active: bool | None = Query(default=None)) -> Any:
    rows, next_cursor = await _list(uow, reps, principal.org_id, limit, cursor, active)
    counts = await repo.open_lead_counts(uow.session, principal.org_id, [r.id for r in rows])
    return Page(items=[rep_out(r, counts.get(r.id, 0)) for r in rows], next_cursor=next_cursor)


@router.get("/reps/{rep_id}", response_model=RepOut, **etag_header(), summary="A rep, with its open-lead count")
async def get_rep(rep_id: str, uow: UowDep, principal: CurrentPrincipal, response: Response) -> Any:
    row = await _read(uow, reps, principal.org_id, rep_id, "rep", response)
    counts = await repo.open_lead_counts(uow.session, principal.org_id, [rep_id])
    return rep_out(row, counts.get(rep_id, 0))


@router.patch("/reps/{rep_id}", response_model=RepOut, **etag_header(checked_beyond_schema=REP_CHECKED),
              summary="Change a rep (If-Match with its ETag)")
async def patch_rep(rep_id: str, body: RepPatch, request: Request, response: Response, uow: UowDep,
                    principal: AdminPrincipal) -> Any:
    row = await _locked_for_patch(uow, request, reps, principal.org_id, rep_id, "rep")
    row = await directory.change_rep(uow, principal.org_id, row, body.model_dump(mode="json", exclude_unset=True))
    row = await _saved(uow, row, response)
    counts = await repo.open_lead_counts(uow.session, principal.org_id, [rep_id])
    return rep_out(row, counts.get(rep_id, 0))


@router.delete("/reps/{rep_id}", status_code=204, summary="Remove a rep (no open leads, not named by a rule)")
async def delete_rep(rep_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    await directory.remove_rep(uow, principal.org_id, rep_id)
    await uow.commit()
    return Response(status_code=204)


# ------------------------------------------------------------------ teams
def team_out(row: Any) -> TeamOut:
    return TeamOut(id=row.id, name=row.name, member_ids=row.member_ids, lead_rep_id=row.lead_rep_id,
                   version=row.row_version, created_at=row.created_at, updated_at=row.updated_at)


@router.post("/teams", status_code=201, response_model=TeamOut,
             **etag_header(201, checked_beyond_schema=TEAM_CHECKED),
             summary="Create a team")
async def create_team(body: TeamCreate, uow: UowDep, principal: AdminPrincipal, idem: IdempotencyDep) -> Any:
    payload = _json(body)
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="teams", payload=payload)
    if replay is not None:
        return replay
    return await _created(uow, idem, await directory.add_team(uow, principal.org_id, payload), team_out, "teams")


@router.get("/teams", response_model=TeamPage, summary="List teams")
async def list_teams(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                     cursor: CursorParam = None) -> Any:
    rows, next_cursor = await _list(uow, teams, principal.org_id, limit, cursor)
    return Page(items=[team_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/teams/{team_id}", response_model=TeamOut, **etag_header(), summary="A team")
async def get_team(team_id: str, uow: UowDep, principal: CurrentPrincipal, response: Response) -> Any:
    return team_out(await _read(uow, teams, principal.org_id, team_id, "team", response))


@router.patch("/teams/{team_id}", response_model=TeamOut, **etag_header(checked_beyond_schema=TEAM_CHECKED),
              summary="Change a team (If-Match with its ETag)")
async def patch_team(team_id: str, body: TeamPatch, request: Request, response: Response, uow: UowDep,
                     principal: AdminPrincipal) -> Any:
    row = await _locked_for_patch(uow, request, teams, principal.org_id, team_id, "team")
    changes = body.model_dump(mode="json", exclude_unset=True)
    return team_out(await _saved(uow, await directory.change_team(uow, principal.org_id, row, changes), response))


@router.delete("/teams/{team_id}", status_code=204, summary="Delete a team not named by the current rules")
async def delete_team(team_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    await directory.remove_team(uow, principal.org_id, team_id)
    await uow.commit()
    return Response(status_code=204)


# ------------------------------------------------------------------ territories
def territory_out(row: Any) -> TerritoryOut:
    return TerritoryOut(id=row.id, name=row.name, countries=row.countries, regions=row.regions,
                        postcode_ranges=row.postcode_ranges, rep_ids=row.rep_ids, version=row.row_version,
                        created_at=row.created_at, updated_at=row.updated_at)


@router.post("/territories", status_code=201, response_model=TerritoryOut,
             **etag_header(201, checked_beyond_schema=TERRITORY_CHECKED),
             summary="Create a territory")
async def create_territory(body: TerritoryCreate, uow: UowDep, principal: AdminPrincipal,
                           idem: IdempotencyDep) -> Any:
    payload = _json(body)
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="territories", payload=payload)
    if replay is not None:
        return replay
    row = await directory.add_territory(uow, principal.org_id, payload)
    return await _created(uow, idem, row, territory_out, "territories")


@router.get("/territories", response_model=TerritoryPage, summary="List territories")
async def list_territories(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                           cursor: CursorParam = None) -> Any:
    rows, next_cursor = await _list(uow, territories, principal.org_id, limit, cursor)
    return Page(items=[territory_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/territories/{territory_id}", response_model=TerritoryOut, **etag_header(), summary="A territory")
async def get_territory(territory_id: str, uow: UowDep, principal: CurrentPrincipal, response: Response) -> Any:
    return territory_out(await _read(uow, territories, principal.org_id, territory_id, "territory", response))


@router.patch("/territories/{territory_id}", response_model=TerritoryOut,
              **etag_header(checked_beyond_schema=TERRITORY_CHECKED),
              summary="Change a territory (If-Match with its ETag)")
async def patch_territory(territory_id: str, body: TerritoryPatch, request: Request, response: Response,
                          uow: UowDep, principal: AdminPrincipal) -> Any:
    row = await _locked_for_patch(uow, request, territories, principal.org_id, territory_id, "territory")
    changes = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return territory_out(await _saved(uow, await directory.change_territory(uow, principal.org_id, row, changes),
                                      response))


@router.delete("/territories/{territory_id}", status_code=204,
               summary="Delete a territory not named by the current rules")
async def delete_territory(territory_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    await directory.remove_territory(uow, principal.org_id, territory_id)
    await uow.commit()
    return Response(status_code=204)
