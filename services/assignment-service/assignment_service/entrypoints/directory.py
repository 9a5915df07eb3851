"""/v1/reps, /v1/teams, /v1/territories: the directory (admins write, everyone in the org reads)."""
from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from salesflow_shared.app import UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal
from salesflow_shared.contract import etag_header
from salesflow_shared.errors import Conflict, FieldError, NotFound, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep
from salesflow_shared.pagination import CursorParam, LimitParam, Page, decode_cursor, page_from_rows
from salesflow_shared.preconditions import check_if_match as shared_check_if_match
from salesflow_shared.preconditions import strong_etag

from ..adapters import repository as repo
from ..adapters.orm import reps, teams, territories
from ..service_layer.rep_events import RepChange, publish_rep, publish_rep_removed, publish_team_membership
from ..service_layer.rulesets import references_in_current_rules
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


async def _must_exist(uow: Any, table: sa.Table, org_id: str, ids: list[str], field: str, what: str) -> None:
    found = await repo.existing_ids(uow.session, table, org_id, ids)
    errors = [FieldError(f"{field}[{i}]", f"no {what} '{v}' in this organization")
              for i, v in enumerate(ids) if v not in found]
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


async def _list(uow: Any, table: sa.Table, org_id: str, limit: int, cursor: str | None,
                active: bool | None = None) -> tuple[list[Any], str | None]:
    after = decode_cursor(cursor, 1)
    rows = await repo.page_of_rows(uow.session, table, org_id, str(after[0]) if after else None, limit + 1,
                                   active=active)
    page = page_from_rows(rows, limit, key=lambda r: [r.id])
    return page.items, page.next_cursor


def _json(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


async def _insert_and_respond(uow: Any, idem: Any, table: sa.Table, org_id: str, row_id: str,
                              values: dict[str, Any], out: Any, collection: str,
                              on_saved: Callable[[], Awaitable[None]] | None = None, version: int = 1) -> Any:
    """Insert a new directory row (at `version`, 1 unless it continues a removed row's), publish what it changed
    (`on_saved`), store the idempotent 201 response and commit."""
    now = uow.clock.now()
    await repo.insert_row(uow.session, table, org_id, row_id, version, now, values)
    if on_saved is not None:
        await on_saved()
    row = await repo.get_row(uow.session, table, org_id, row_id)
    resp = await idem.complete(uow.session, status_code=201, body=_json(out(row)), headers={
        "ETag": etag(version), "Location": f"/v1/{collection}/{quote(row_id, safe='')}"})
    await uow.commit()
    return resp


async def _locked_for_patch(uow: Any, request: Request, table: sa.Table, org_id: str, row_id: str,
                            what: str) -> Any:
    row = await repo.get_row(uow.session, table, org_id, row_id, for_update=True)
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    check_if_match(request, row.row_version)
    return row


async def _save_patch(uow: Any, table: sa.Table, row: Any, changes: dict[str, Any], response: Response,
                      on_saved: Callable[[], Awaitable[None]] | None = None) -> Any:
    """Apply the changes with the next version, publish what they changed (`on_saved`), commit, and return the
    row as stored (ETag set)."""
    await repo.update_row(uow.session, table, row.org_id, row.id, row.row_version + 1, uow.clock.now(), changes)
    if on_saved is not None:
        await on_saved()
    saved = await repo.get_row(uow.session, table, row.org_id, row.id)
    await uow.commit()
    response.headers["ETag"] = etag(saved.row_version)
    return saved


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
    if await repo.get_row(uow.session, reps, principal.org_id, body.user_id):
        raise Conflict(f"rep '{body.user_id}' is already in the directory")
    values = {k: v for k, v in payload.items() if k != "user_id"}
    # A rep removed earlier and added again continues its versions: others hold its removal as the newest entry.
    version = await repo.last_removed_version(uow.session, principal.org_id, body.user_id) + 1
    return await _insert_and_respond(uow, idem, reps, principal.org_id, body.user_id, values, rep_out, "reps",
                                     on_saved=lambda: publish_rep(uow, principal.org_id, body.user_id, "created"),
                                     version=version)


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
    changes = body.model_dump(mode="json", exclude_unset=True)
    for key in ("name", "email", "active", "tier", "timezone", "product_lines", "languages", "working_hours",
                "out_of_office"):
        if key in changes and changes[key] is None:
            raise ValidationFailed.single(key, f"{key} cannot be null")
    change: RepChange = "deactivated" if row.active and changes.get("active") is False else "updated"
    row = await _save_patch(uow, reps, row, changes, response, on_saved=lambda: publish_rep(
        uow, principal.org_id, rep_id, change, changed=changes))
    counts = await repo.open_lead_counts(uow.session, principal.org_id, [rep_id])
    return rep_out(row, counts.get(rep_id, 0))


@router.delete("/reps/{rep_id}", status_code=204, summary="Remove a rep (no open leads, not named by a rule)")
async def delete_rep(rep_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    org = principal.org_id
    row = await repo.get_row(uow.session, reps, org, rep_id, for_update=True)
    if row is None:
        raise NotFound(f"no rep {rep_id}")
    if (await repo.open_lead_counts(uow.session, org, [rep_id])).get(rep_id):
        raise Conflict("the rep still owns open leads; reassign them first (POST /v1/reps/{id}/reassign-open-leads)")
    refs = await references_in_current_rules(uow.session, org)
    if rep_id in refs.reps:
        raise Conflict("the current routing rules name this rep; change the rules first")
    for team in (await repo.all_teams(uow.session, org)).values():
        if rep_id in team.member_ids or team.lead_rep_id == rep_id:
            await repo.bump_row(uow.session, teams, org, team.id, uow.clock.now(),
                                member_ids=[m for m in team.member_ids if m != rep_id],
                                lead_rep_id=None if team.lead_rep_id == rep_id else team.lead_rep_id)
    for territory in await repo.all_territories(uow.session, org):
        if rep_id in territory.rep_ids:
            await repo.bump_row(uow.session, territories, org, territory.id, uow.clock.now(),
                                rep_ids=[r for r in territory.rep_ids if r != rep_id])
    await publish_rep_removed(uow, org, row)
    await repo.remember_removed_rep(uow.session, org, rep_id, row.row_version + 1, uow.clock.now())
    await repo.delete_row(uow.session, reps, org, rep_id)
    await uow.commit()
    return Response(status_code=204)


# ------------------------------------------------------------------ teams
def team_out(row: Any) -> TeamOut:
    return TeamOut(id=row.id, name=row.name, member_ids=row.member_ids, lead_rep_id=row.lead_rep_id,
                   version=row.row_version, created_at=row.created_at, updated_at=row.updated_at)


def _people(member_ids: list[str] | None, lead_rep_id: str | None) -> set[str]:
    """The reps a team counts in their entries' team_ids: its members and its lead."""
    return set(member_ids or ()) | ({lead_rep_id} if lead_rep_id else set())


async def _check_team_refs(uow: Any, org_id: str, member_ids: list[str] | None, lead_rep_id: str | None) -> None:
    if member_ids:
        await _must_exist(uow, reps, org_id, member_ids, "member_ids", "rep")
    if lead_rep_id and not await repo.existing_ids(uow.session, reps, org_id, [lead_rep_id]):
        raise ValidationFailed.single("lead_rep_id", f"no rep '{lead_rep_id}' in this organization")


@router.post("/teams", status_code=201, response_model=TeamOut,
             **etag_header(201, checked_beyond_schema=TEAM_CHECKED),
             summary="Create a team")
async def create_team(body: TeamCreate, uow: UowDep, principal: AdminPrincipal, idem: IdempotencyDep) -> Any:
    payload = _json(body)
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="teams", payload=payload)
    if replay is not None:
        return replay
    await _check_team_refs(uow, principal.org_id, body.member_ids, body.lead_rep_id)
    return await _insert_and_respond(uow, idem, teams, principal.org_id, str(uuid.uuid4()), payload, team_out,
                                     "teams", on_saved=lambda: publish_team_membership(
                                         uow, principal.org_id, _people(body.member_ids, body.lead_rep_id)))


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
    if "name" in changes and changes["name"] is None:
        raise ValidationFailed.single("name", "name cannot be null")
    if "member_ids" in changes and changes["member_ids"] is None:
        raise ValidationFailed.single("member_ids", "member_ids cannot be null")
    await _check_team_refs(uow, principal.org_id, changes.get("member_ids"), changes.get("lead_rep_id"))
    if "member_ids" in changes:
        refs = await references_in_current_rules(uow.session, principal.org_id)
        for rep_id in refs.weighted_members.get(team_id, ()):
            if rep_id not in changes["member_ids"]:
                raise Conflict(f"the current routing rules weight rep '{rep_id}' in this team; change them first")
    before = _people(row.member_ids, row.lead_rep_id)
    after = _people(changes.get("member_ids", row.member_ids), changes.get("lead_rep_id", row.lead_rep_id))
    return team_out(await _save_patch(uow, teams, row, changes, response, on_saved=lambda: publish_team_membership(
        uow, principal.org_id, before ^ after)))


@router.delete("/teams/{team_id}", status_code=204, summary="Delete a team not named by the current rules")
async def delete_team(team_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    row = await repo.get_row(uow.session, teams, principal.org_id, team_id, for_update=True)
    if row is None:
        raise NotFound(f"no team {team_id}")
    if team_id in (await references_in_current_rules(uow.session, principal.org_id)).teams:
        raise Conflict("the current routing rules use this team; change the rules first")
    await repo.delete_row(uow.session, teams, principal.org_id, team_id)
    await publish_team_membership(uow, principal.org_id, _people(row.member_ids, row.lead_rep_id))
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
    await _must_exist(uow, reps, principal.org_id, body.rep_ids, "rep_ids", "rep")
    return await _insert_and_respond(uow, idem, territories, principal.org_id, str(uuid.uuid4()), payload,
                                     territory_out, "territories")


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
    for key, value in changes.items():
        if value is None:
            raise ValidationFailed.single(key, f"{key} cannot be null")
    if changes.get("rep_ids"):
        await _must_exist(uow, reps, principal.org_id, changes["rep_ids"], "rep_ids", "rep")
    merged = {k: changes.get(k, getattr(row, k)) for k in ("countries", "regions", "postcode_ranges")}
    if not any(merged.values()):
        raise ValidationFailed.single("countries", "a territory needs countries, regions or postcode_ranges")
    return territory_out(await _save_patch(uow, territories, row, changes, response))


@router.delete("/territories/{territory_id}", status_code=204,
               summary="Delete a territory not named by the current rules")
async def delete_territory(territory_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    org = principal.org_id
    if await repo.get_row(uow.session, territories, org, territory_id, for_update=True) is None:
        raise NotFound(f"no territory {territory_id}")
    if territory_id in (await references_in_current_rules(uow.session, org)).territories:
        raise Conflict("the current routing rules use this territory; change the rules first")
    await repo.delete_row(uow.session, territories, org, territory_id)
    await uow.commit()
    return Response(status_code=204)
