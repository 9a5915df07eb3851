"""The directory's use cases: adding, changing and removing reps, teams and territories, with the rules that
reach beyond one row (the reps and teams named must exist, the current routing rules must not lose what they
name, a removed rep leaves its teams and territories) and the RepCreated / RepUpdated / RepDeactivated events
each change causes.

Each takes the unit of work and writes in its transaction without committing: the caller stores its
idempotent answer in the same transaction and commits. Adding and changing return the row as stored.
"""
from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa

from salesflow_shared.errors import Conflict, FieldError, NotFound, ValidationFailed
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..adapters.orm import reps, teams, territories
from .rep_events import RepChange, publish_rep, publish_rep_removed, publish_team_membership, team_people
from .rulesets import references_in_current_rules

REP_FIELDS = ("name", "email", "active", "tier", "timezone", "product_lines", "languages", "working_hours",
              "out_of_office")


async def _must_exist(uow: UnitOfWork, table: sa.Table, org_id: str, ids: list[str], field: str, what: str) -> None:
    found = await repo.existing_ids(uow.session, table, org_id, ids)
    errors = [FieldError(f"{field}[{i}]", f"no {what} '{v}' in this organization")
              for i, v in enumerate(ids) if v not in found]
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def _not_null(changes: Mapping[str, Any], keys: tuple[str, ...], message: str = "{key} cannot be null") -> None:
    for key in keys:
        if key in changes and changes[key] is None:
            raise ValidationFailed.single(key, message.format(key=key))


async def _insert(uow: UnitOfWork, table: sa.Table, org_id: str, row_id: str, values: Mapping[str, Any],
                  version: int = 1, on_saved: Callable[[], Awaitable[None]] | None = None) -> Any:
    await repo.insert_row(uow.session, table, org_id, row_id, version, uow.clock.now(), dict(values))
    if on_saved is not None:
        await on_saved()
    return await repo.get_row(uow.session, table, org_id, row_id)


async def _update(uow: UnitOfWork, table: sa.Table, row: Any, changes: Mapping[str, Any],
                  on_saved: Callable[[], Awaitable[None]] | None = None) -> Any:
    await repo.update_row(uow.session, table, row.org_id, row.id, row.row_version + 1, uow.clock.now(),
                          dict(changes))
    if on_saved is not None:
        await on_saved()
    return await repo.get_row(uow.session, table, row.org_id, row.id)


# ------------------------------------------------------------------ reps
async def add_rep(uow: UnitOfWork, org_id: str, rep_id: str, values: Mapping[str, Any]) -> Any:
    """A rep not in the directory yet (409 otherwise); RepCreated. A rep removed earlier and added again
    continues its versions: others hold its removal as the newest entry."""
    if await repo.get_row(uow.session, reps, org_id, rep_id):
        raise Conflict(f"rep '{rep_id}' is already in the directory")
    version = await repo.last_removed_version(uow.session, org_id, rep_id) + 1
    return await _insert(uow, reps, org_id, rep_id, values, version,
                         on_saved=lambda: publish_rep(uow, org_id, rep_id, "created"))


async def change_rep(uow: UnitOfWork, org_id: str, row: Any, changes: Mapping[str, Any]) -> Any:
    """Change the (locked) rep row; RepDeactivated when it stops being active, RepUpdated otherwise."""
    _not_null(changes, REP_FIELDS)
    change: RepChange = "deactivated" if row.active and changes.get("active") is False else "updated"
    return await _update(uow, reps, row, changes, on_saved=lambda: publish_rep(
        uow, org_id, row.id, change, changed=changes))


# ------------------------------------------------------------------ teams
async def _check_team_refs(uow: UnitOfWork, org_id: str, member_ids: list[str] | None,
                           lead_rep_id: str | None) -> None:
    if member_ids:
        await _must_exist(uow, reps, org_id, member_ids, "member_ids", "rep")
    if lead_rep_id and not await repo.existing_ids(uow.session, reps, org_id, [lead_rep_id]):
        raise ValidationFailed.single("lead_rep_id", f"no rep '{lead_rep_id}' in this organization")


async def add_team(uow: UnitOfWork, org_id: str, values: Mapping[str, Any]) -> Any:
    """A team of reps in the directory; its people's entries (team_ids) are published anew."""
    await _check_team_refs(uow, org_id, values.get("member_ids"), values.get("lead_rep_id"))
    return await _insert(uow, teams, org_id, str(uuid.uuid4()), values, on_saved=lambda: publish_team_membership(
        uow, org_id, team_people(values.get("member_ids"), values.get("lead_rep_id"))))


async def change_team(uow: UnitOfWork, org_id: str, row: Any, changes: Mapping[str, Any]) -> Any:
    """Change the (locked) team row. A member the current rules weight in this team stays (409); the entries
    of the reps who joined or left are published anew."""
    _not_null(changes, ("name", "member_ids"))
    await _check_team_refs(uow, org_id, changes.get("member_ids"), changes.get("lead_rep_id"))
    if "member_ids" in changes:
        refs = await references_in_current_rules(uow.session, org_id)
        for rep_id in refs.weighted_members.get(row.id, ()):
            if rep_id not in changes["member_ids"]:
                raise Conflict(f"the current routing rules weight rep '{rep_id}' in this team; change them first")
    before = team_people(row.member_ids, row.lead_rep_id)
    after = team_people(changes.get("member_ids", row.member_ids), changes.get("lead_rep_id", row.lead_rep_id))
    return await _update(uow, teams, row, changes, on_saved=lambda: publish_team_membership(
        uow, org_id, before ^ after))


# ------------------------------------------------------------------ territories
async def add_territory(uow: UnitOfWork, org_id: str, values: Mapping[str, Any]) -> Any:
    await _must_exist(uow, reps, org_id, values["rep_ids"], "rep_ids", "rep")
    return await _insert(uow, territories, org_id, str(uuid.uuid4()), values)


async def change_territory(uow: UnitOfWork, org_id: str, row: Any, changes: Mapping[str, Any]) -> Any:
    """Change the (locked) territory row; it still names at least one place (countries, regions or postcodes)."""
    _not_null(changes, tuple(changes))
    if changes.get("rep_ids"):
        await _must_exist(uow, reps, org_id, changes["rep_ids"], "rep_ids", "rep")
    merged = {k: changes.get(k, getattr(row, k)) for k in ("countries", "regions", "postcode_ranges")}
    if not any(merged.values()):
        raise ValidationFailed.single("countries", "a territory needs countries, regions or postcode_ranges")
    return await _update(uow, territories, row, changes)


async def remove_rep(uow: UnitOfWork, org_id: str, rep_id: str) -> None:
    """Remove a rep who owns no open lead and whom the current rules do not name: it leaves its teams (as member
    and lead) and territories, the removal is published, and its version is remembered so that the rep added
    again continues it."""
    row = await repo.get_row(uow.session, reps, org_id, rep_id, for_update=True)
    if row is None:
        raise NotFound(f"no rep {rep_id}")
    if (await repo.open_lead_counts(uow.session, org_id, [rep_id])).get(rep_id):
        raise Conflict("the rep still owns open leads; reassign them first (POST /v1/reps/{id}/reassign-open-leads)")
    refs = await references_in_current_rules(uow.session, org_id)
    if rep_id in refs.reps:
        raise Conflict("the current routing rules name this rep; change the rules first")
    for team in (await repo.all_teams(uow.session, org_id)).values():
        if rep_id in team.member_ids or team.lead_rep_id == rep_id:
            await repo.bump_row(uow.session, teams, org_id, team.id, uow.clock.now(),
                                member_ids=[m for m in team.member_ids if m != rep_id],
                                lead_rep_id=None if team.lead_rep_id == rep_id else team.lead_rep_id)
    for territory in await repo.all_territories(uow.session, org_id):
        if rep_id in territory.rep_ids:
            await repo.bump_row(uow.session, territories, org_id, territory.id, uow.clock.now(),
                                rep_ids=[r for r in territory.rep_ids if r != rep_id])
    await publish_rep_removed(uow, org_id, row)
    await repo.remember_removed_rep(uow.session, org_id, rep_id, row.row_version + 1, uow.clock.now())
    await repo.delete_row(uow.session, reps, org_id, rep_id)


async def remove_team(uow: UnitOfWork, org_id: str, team_id: str) -> None:
    """Delete a team the current rules do not use; its people's entries (team_ids) are published anew."""
    row = await repo.get_row(uow.session, teams, org_id, team_id, for_update=True)
    if row is None:
        raise NotFound(f"no team {team_id}")
    if team_id in (await references_in_current_rules(uow.session, org_id)).teams:
        raise Conflict("the current routing rules use this team; change the rules first")
    await repo.delete_row(uow.session, teams, org_id, team_id)
    await publish_team_membership(uow, org_id, team_people(row.member_ids, row.lead_rep_id))


async def remove_territory(uow: UnitOfWork, org_id: str, territory_id: str) -> None:
    """Delete a territory the current rules do not use."""
    if await repo.get_row(uow.session, territories, org_id, territory_id, for_update=True) is None:
        raise NotFound(f"no territory {territory_id}")
    if territory_id in (await references_in_current_rules(uow.session, org_id)).territories:
        raise Conflict("the current routing rules use this territory; change the rules first")
    await repo.delete_row(uow.session, territories, org_id, territory_id)
