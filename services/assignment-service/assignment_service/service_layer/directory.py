"""Directory changes with rules beyond one row: what may be removed, and what a removal changes elsewhere.

Each takes the unit of work and writes in its transaction; the caller commits."""
from __future__ import annotations

from salesflow_shared.errors import Conflict, NotFound
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..adapters.orm import reps, teams, territories
from .rep_events import publish_rep_removed, publish_team_membership, team_people
from .rulesets import references_in_current_rules


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
