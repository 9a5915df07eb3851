"""The rep directory as events: every change to a rep's entry (created, changed, joined or left a team,
deactivated, removed) is published through the outbox in the change's own transaction, as RepCreated /
RepUpdated / RepDeactivated carrying the whole entry. The rep row's `row_version` is the event's
`subject_version`, so consumers keep the newest entry whatever order the events arrive in."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from salesflow_shared.events import RepCreatedV1, RepDeactivatedV1, RepSnapshot, RepUpdatedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..adapters.orm import reps

RepChange = Literal["created", "updated", "deactivated"]


def rep_snapshot(row: Any, team_ids: list[str], *, active: bool | None = None) -> RepSnapshot:
    return RepSnapshot(rep_id=row.id, name=row.name, email=row.email,
                       active=row.active if active is None else active, team_ids=team_ids, timezone=row.timezone,
                       working_hours={"windows": list(row.working_hours or [])},
                       language=(row.languages or [None])[0])


async def team_ids_of(uow: UnitOfWork, org_id: str, rep_id: str) -> list[str]:
    teams = await repo.all_teams(uow.session, org_id)
    return sorted(t.id for t in teams.values() if rep_id in t.member_ids or t.lead_rep_id == rep_id)


async def publish_rep(uow: UnitOfWork, org_id: str, rep_id: str, change: RepChange,
                      changed: Iterable[str] = ()) -> None:
    """Publish the rep's entry as it is now in this transaction (call after the change is written)."""
    row = await repo.get_row(uow.session, reps, org_id, rep_id)
    assert row is not None
    snapshot = rep_snapshot(row, await team_ids_of(uow, org_id, rep_id))
    data: Any
    if change == "created":
        data = RepCreatedV1(rep=snapshot)
    elif change == "deactivated":
        data = RepDeactivatedV1(rep=snapshot)
    else:
        data = RepUpdatedV1(rep=snapshot, changed=sorted(changed))
    uow.publish(data, org_id=org_id, subject_id=rep_id, subject_version=row.row_version)


async def publish_rep_removed(uow: UnitOfWork, org_id: str, row: Any) -> None:
    """A rep removed from the directory is, for everyone else, deactivated for good (published before the row
    goes, with the version the removal would have had)."""
    uow.publish(RepDeactivatedV1(rep=rep_snapshot(row, [], active=False)), org_id=org_id, subject_id=row.id,
                subject_version=row.row_version + 1)


async def publish_team_membership(uow: UnitOfWork, org_id: str, rep_ids: Iterable[str]) -> None:
    """Reps who joined or left a team: their entries (team_ids) changed, so each gets a new version and a
    RepUpdated (call after the team change is written)."""
    for rep_id in sorted(set(rep_ids)):
        if await repo.bump_row(uow.session, reps, org_id, rep_id, uow.clock.now()):
            await publish_rep(uow, org_id, rep_id, "updated", changed=["team_ids"])
