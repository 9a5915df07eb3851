"""Reading and writing the directory, rule sets, rotations and the lead projection (always org-scoped)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.clock import rfc3339
from salesflow_shared.db import array_params, rows_affected
from salesflow_shared.inbox import dialect_insert, dialect_name, per_dialect
from salesflow_shared.outbox_rows import OUTBOX_COLUMNS, insert_outbox_statement
from salesflow_shared.pagination import keyset_page
from salesflow_shared.uow import INSERT_OUTBOX

from ..domain.directory import Absence, PostcodeRange, Rep, Team, Territory, WorkingWindow, parse_hhmm
from ..domain.rules import RoutingConfig, Rule, RuleSet, load_rules
from ..domain.strategies import RotationState
from .orm import decisions, leads, removed_reps, reps, rotations, rule_sets, teams, territories

# The statements of routing a lead (a consumed LeadCreated and the events after it), built once with bind
# parameters: executing a prebuilt statement reuses its cache key and compiled form instead of building both again.
_ORG: sa.BindParameter[str] = sa.bindparam("org")
_TERRITORIES = sa.select(territories).where(territories.c.org_id == _ORG)
_TEAMS = sa.select(teams).where(teams.c.org_id == _ORG)
_REPS = sa.select(reps).where(reps.c.org_id == _ORG, reps.c.id.in_(sa.bindparam("ids", expanding=True))) \
    .order_by(reps.c.id)
_LOCK_REPS = _REPS.with_for_update()
_OPEN_LEAD_COUNTS = sa.select(leads.c.owner_id, sa.func.count()).where(
    leads.c.org_id == _ORG, leads.c.owner_id.in_(sa.bindparam("ids", expanding=True)), leads.c.open.is_(True),
).group_by(leads.c.owner_id)
# The org's routing configuration in one statement: the newest rule set, every territory and every team as typed
# rows of one UNION ALL (`kind` says which), read in one snapshot. Columns a kind does not use are NULL.
_NEWEST_VERSION = sa.select(sa.func.max(rule_sets.c.version)).where(rule_sets.c.org_id == _ORG).scalar_subquery()


def _unused(type_: Any) -> Any:
    return sa.type_coerce(sa.null(), type_)


_CONFIG_ROWS = (
    sa.select(sa.literal_column("'rule_set'", sa.String).label("kind"), _unused(sa.String).label("id"),
              rule_sets.c.version.label("version"), _unused(sa.String).label("name"),
              _unused(sa.String).label("lead_rep_id"), rule_sets.c.rules.label("list_1"),
              _unused(sa.JSON).label("list_2"), _unused(sa.JSON).label("list_3"), _unused(sa.JSON).label("list_4"))
    .where(rule_sets.c.org_id == _ORG, rule_sets.c.version == _NEWEST_VERSION),
    sa.select(sa.literal_column("'territory'", sa.String), territories.c.id, _unused(sa.Integer), territories.c.name,
              _unused(sa.String), territories.c.countries, territories.c.regions, territories.c.postcode_ranges,
              territories.c.rep_ids).where(territories.c.org_id == _ORG),
    sa.select(sa.literal_column("'team'", sa.String), teams.c.id, _unused(sa.Integer), teams.c.name,
              teams.c.lead_rep_id, teams.c.member_ids, _unused(sa.JSON), _unused(sa.JSON), _unused(sa.JSON))
    .where(teams.c.org_id == _ORG),
)
_ROUTING_CONFIG = sa.union_all(*_CONFIG_ROWS)
_RULE_SET = sa.select(rule_sets).where(rule_sets.c.org_id == _ORG, rule_sets.c.version == sa.bindparam("version"))
_NEWEST_RULE_SET = sa.select(rule_sets).where(rule_sets.c.org_id == _ORG).order_by(rule_sets.c.version.desc()) \
    .limit(1)


def _lock_rotation(insert: Any) -> Any:
    # Insert the rotation the first time, else "update" it to itself: either way the row is locked and returned
    # as it is now (an ON CONFLICT DO UPDATE that waited for another transaction's lock sees that transaction's
    # write), in one statement.
    statement = insert(rotations).values(org_id=_ORG, key=sa.bindparam("rotation_key"), position=0, credits={},
                                         updated_at=sa.bindparam("now"))
    return statement.on_conflict_do_update(index_elements=["org_id", "key"], set_={
        "position": rotations.c.position}).returning(rotations.c.position, rotations.c.credits)


_LOCK_ROTATION = per_dialect(_lock_rotation)
_LEAD_KEY = (leads.c.org_id == _ORG) & (leads.c.lead_id == sa.bindparam("lead"))
_LOCK_LEAD = sa.select(leads).where(_LEAD_KEY).with_for_update()
# The lead locked with the rules of the rule set that routed it (NULL before it is routed): a rule set's version is
# never changed once published, so reading it in the locking statement cannot see it stale.
_LOCK_LEAD_WITH_ROUTING_RULES = sa.select(leads, rule_sets.c.rules.label("routed_by_rules")).select_from(
    leads.outerjoin(rule_sets, (rule_sets.c.org_id == leads.c.org_id)
                    & (rule_sets.c.version == leads.c.rule_set_version)),
).where(_LEAD_KEY).with_for_update(of=leads)
# (The org as a parameter: SQLite writes the columns in RETURNING unqualified, and an unqualified `org_id` there is
# the rule set's; `version` is the rule set's and `rule_set_version` the updated row's, the names being unique.)
_ROUTED_BY_RULES = sa.select(rule_sets.c.rules).where(
    rule_sets.c.org_id == _ORG, rule_sets.c.version == leads.c.rule_set_version,
).scalar_subquery().label("routed_by_rules")
# A newer snapshot of a known lead that is not erased, written in one statement (the row lock taken by the update);
# the row as it is then, with the rules that routed it (as `_LOCK_LEAD_WITH_ROUTING_RULES`). By whether it also
# follows an owner set by hand in lead-service.
_TAKE_NEWER_SNAPSHOT = {
    follows_owner: sa.update(leads).where(
        _LEAD_KEY, leads.c.lead_version < sa.bindparam("new_lead_version"), leads.c.erased.is_(False),
    ).values(snapshot=sa.bindparam("new_snapshot", type_=sa.JSON), lead_version=sa.bindparam("new_lead_version"),
             open=sa.bindparam("new_open"), updated_at=sa.bindparam("now"),
             **({"owner_id": sa.bindparam("new_owner_id")} if follows_owner else {}),
             ).returning(*leads.c, _ROUTED_BY_RULES)
    for follows_owner in (False, True)
}
_ADD_LEAD = per_dialect(lambda insert: insert(leads).values(
    org_id=_ORG, lead_id=sa.bindparam("lead"), lead_version=sa.bindparam("new_lead_version"), pipeline_version=0,
    out_version=0, snapshot=sa.bindparam("new_snapshot", type_=sa.JSON), open=sa.bindparam("new_open"),
    erased=False, updated_at=sa.bindparam("now"),
).on_conflict_do_nothing(index_elements=["org_id", "lead_id"]).returning(*leads.c))
# PostgreSQL: a new lead's row added (a data-modifying CTE) and the org's routing configuration read, in one
# statement: the configuration's rows as in `_ROUTING_CONFIG`, and the added row (none when the lead was known) as
# a row of kind 'lead' carrying the lead's columns (NULL in the configuration's rows).
_ADDED_LEAD = _ADD_LEAD["postgresql"].cte("added_lead")
_ADD_LEAD_WITH_ROUTING_CONFIG = sa.union_all(
    # (NULLs cast to the lead's column types: a column that is NULL in every other branch would be text.)
    *(rows.add_columns(*(sa.cast(sa.null(), column.type).label(column.name) for column in leads.c))
      for rows in _CONFIG_ROWS),
    sa.select(sa.literal_column("'lead'", sa.String), _unused(sa.String), _unused(sa.Integer), _unused(sa.String),
              _unused(sa.String), _unused(sa.JSON), _unused(sa.JSON), _unused(sa.JSON), _unused(sa.JSON),
              *_ADDED_LEAD.c),
)
# PostgreSQL: the rotation row locked (as `_LOCK_ROTATION`) and then the candidate reps' rows locked in id order, in
# one statement. The reps' locking read depends on the rotation's (EXISTS), so the rotation is always locked first,
# as when they are two statements: decisions of one rotation queue on its row before they touch any rep's.
_LOCKED_ROTATION = _LOCK_ROTATION["postgresql"].cte("locked_rotation")
_LOCKED_REPS = _REPS.where(sa.exists(sa.select(_LOCKED_ROTATION.c.position))).with_for_update().cte("locked_reps")
_LOCK_ROTATION_AND_REPS = sa.select(
    _LOCKED_ROTATION.c.position.label("rotation_position"), _LOCKED_ROTATION.c.credits.label("rotation_credits"),
    *_LOCKED_REPS.c,
).select_from(_LOCKED_ROTATION.outerjoin(_LOCKED_REPS, sa.true())).order_by(_LOCKED_REPS.c.id)
_SEE_PIPELINE_VERSION = sa.update(leads).where(_LEAD_KEY, leads.c.pipeline_version < sa.bindparam("version")) \
    .values(pipeline_version=sa.bindparam("version")).returning(*leads.c)
_NEWEST_RULES = sa.select(rule_sets.c.rules).where(rule_sets.c.org_id == _ORG).order_by(rule_sets.c.version.desc()) \
    .limit(1).scalar_subquery().label("newest_rules")
# By (whether it sets `open`, whether it returns the newest rule set's rules).
_SEE_PIPELINE_VERSIONS = {
    (sets_open, with_rules): (_SEE_PIPELINE_VERSION.values(open=sa.bindparam("new_open", type_=sa.Boolean))
                              if sets_open else _SEE_PIPELINE_VERSION)
    .returning(*([_NEWEST_RULES] if with_rules else []))
    for sets_open in (False, True) for with_rules in (False, True)
}


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def rep_from_row(row: Any) -> Rep:
    # arg-type: parse_hhmm's None is for bad input, and stored hours were validated (HH:MM) when written
    windows = tuple(WorkingWindow(tuple(w["days"]), parse_hhmm(w["start"]), parse_hhmm(w["end"]))  # type: ignore[arg-type]
                    for w in row.working_hours or [])
    absences = tuple(Absence(_dt(a["start"]), _dt(a["end"])) for a in row.out_of_office or [])
    return Rep(id=row.id, name=row.name, email=row.email, active=row.active, tier=row.tier,
               product_lines=tuple(row.product_lines or ()), languages=tuple(row.languages or ()),
               capacity=row.capacity, timezone=row.timezone, working_hours=windows, out_of_office=absences)


def territory_from_row(row: Any) -> Territory:
    ranges = tuple(PostcodeRange(r["from"], r["to"], r.get("country")) for r in row.postcode_ranges or [])
    return Territory(id=row.id, name=row.name, countries=tuple(row.countries or ()),
                     regions=tuple(row.regions or ()), postcode_ranges=ranges, rep_ids=tuple(row.rep_ids or ()))


def team_from_row(row: Any) -> Team:
    return Team(id=row.id, name=row.name, member_ids=tuple(row.member_ids or ()), lead_rep_id=row.lead_rep_id)


async def get_row(session: AsyncSession, table: sa.Table, org_id: str, row_id: str, *,
                  for_update: bool = False) -> Any:
    query = sa.select(table).where(table.c.org_id == org_id, table.c.id == row_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def remember_removed_rep(session: AsyncSession, org_id: str, rep_id: str, last_version: int,
                               now: datetime) -> None:
    insert = dialect_insert(session)
    values = {"last_version": last_version, "removed_at": now}
    await session.execute(insert(removed_reps).values(org_id=org_id, rep_id=rep_id, **values)
                          .on_conflict_do_update(index_elements=["org_id", "rep_id"], set_=values))


async def last_removed_version(session: AsyncSession, org_id: str, rep_id: str) -> int:
    """The last version published for the rep before it was removed; 0 when it never was."""
    found = await session.scalar(sa.select(removed_reps.c.last_version).where(
        removed_reps.c.org_id == org_id, removed_reps.c.rep_id == rep_id))
    return found or 0


async def existing_ids(session: AsyncSession, table: sa.Table, org_id: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = await session.execute(sa.select(table.c.id).where(table.c.org_id == org_id, table.c.id.in_(ids)))
    return {r.id for r in rows}


async def all_territories(session: AsyncSession, org_id: str) -> list[Territory]:
    rows = await session.execute(_TERRITORIES, {"org": org_id})
    return [territory_from_row(r) for r in rows]


async def all_teams(session: AsyncSession, org_id: str) -> dict[str, Team]:
    rows = await session.execute(_TEAMS, {"org": org_id})
    return {r.id: team_from_row(r) for r in rows}


async def reps_by_id(session: AsyncSession, org_id: str, ids: list[str], *,
                     lock: bool = False) -> dict[str, Any]:
    """Rep rows by id; with `lock`, rows are locked in id order (a fixed order: no deadlocks).

    Count their open leads with a separate, later statement: under READ COMMITTED a statement that waited
    for a row lock still sees the data as of its own start, so a count in the locking statement could be
    stale by the very assignment that held the lock.
    """
    if not ids:
        return {}
    return {r.id: r for r in await session.execute(_LOCK_REPS if lock else _REPS,
                                                   {"org": org_id, "ids": sorted(set(ids))})}


async def open_lead_counts(session: AsyncSession, org_id: str, rep_ids: list[str]) -> dict[str, int]:
    if not rep_ids:
        return {}
    rows = await session.execute(_OPEN_LEAD_COUNTS, {"org": org_id, "ids": list(rep_ids)})
    return {owner: int(count) for owner, count in rows}


# ------------------------------------------------------------------ rule sets
async def routing_config(session: AsyncSession, org_id: str) -> RoutingConfig:
    """The newest rule set (None before the first), the territories and the teams, read in one statement."""
    config, _ = _routing_config_of(await session.execute(_ROUTING_CONFIG, {"org": org_id}))
    return config


async def add_lead_with_routing_config(session: AsyncSession, org_id: str, lead_id: str, snapshot: dict[str, Any],
                                       now: datetime, *, lead_version: int,
                                       open_: bool) -> tuple[Any | None, RoutingConfig]:
    """`ensure_lead`'s insert and `routing_config`, in one statement on PostgreSQL: the added row (locked by its
    insert until commit; None when the lead was known already, and then nothing is locked) and the configuration."""
    values = {"org": org_id, "lead": lead_id, "new_lead_version": lead_version, "new_snapshot": snapshot,
              "new_open": open_, "now": now}
    if dialect_name(session) == "postgresql":
        config, added = _routing_config_of(await session.execute(_ADD_LEAD_WITH_ROUTING_CONFIG, values))
        return added, config
    added = (await session.execute(_ADD_LEAD["sqlite"], values)).one_or_none()
    return added, await routing_config(session, org_id)


def _routing_config_of(rows: Any) -> tuple[RoutingConfig, Any | None]:
    """The configuration in rows of `_ROUTING_CONFIG` (or `_ADD_LEAD_WITH_ROUTING_CONFIG`, with the added lead's row:
    returned too, else None)."""
    rule_set: RuleSet | None = None
    found_territories: list[Territory] = []
    found_teams: dict[str, Team] = {}
    added = None
    for row in rows:
        if row.kind == "rule_set":
            rule_set = RuleSet(row.version, load_rules(row.list_1))
        elif row.kind == "territory":
            found_territories.append(territory_from_row(SimpleNamespace(
                id=row.id, name=row.name, countries=row.list_1, regions=row.list_2, postcode_ranges=row.list_3,
                rep_ids=row.list_4)))
        elif row.kind == "team":
            found_teams[row.id] = team_from_row(SimpleNamespace(
                id=row.id, name=row.name, member_ids=row.list_1, lead_rep_id=row.lead_rep_id))
        else:
            added = row
    return RoutingConfig(rule_set, found_territories, found_teams), added


async def current_rule_set(session: AsyncSession, org_id: str, version: int | None = None) -> RuleSet | None:
    row = await rule_set_row(session, org_id, version)
    return RuleSet(row.version, load_rules(row.rules)) if row else None


# ------------------------------------------------------------------ rotations
async def lock_rotation(session: AsyncSession, org_id: str, key: str, now: datetime) -> RotationState:
    """Lock the rotation row until the transaction ends (one slot per decision), creating it the first time."""
    row = (await session.execute(_LOCK_ROTATION[dialect_name(session)],
                                 {"org": org_id, "rotation_key": key, "now": now})).one()
    return RotationState(int(row.position), dict(row.credits or {}))


async def lock_rotation_and_reps(session: AsyncSession, org_id: str, key: str, rep_ids: list[str],
                                 now: datetime) -> tuple[RotationState, dict[str, Any]]:
    """`lock_rotation`, then `reps_by_id(..., lock=True)`: in one statement on PostgreSQL (locking in that order)."""
    if not rep_ids or dialect_name(session) != "postgresql":
        return await lock_rotation(session, org_id, key, now), await reps_by_id(session, org_id, rep_ids, lock=True)
    rows = (await session.execute(_LOCK_ROTATION_AND_REPS, {
        "org": org_id, "rotation_key": key, "now": now, "ids": sorted(set(rep_ids))})).all()
    state = RotationState(int(rows[0].rotation_position), dict(rows[0].rotation_credits or {}))
    return state, {r.id: r for r in rows if r.id is not None}


async def peek_rotation(session: AsyncSession, org_id: str, key: str) -> RotationState:
    row = (await session.execute(sa.select(rotations).where(
        rotations.c.org_id == org_id, rotations.c.key == key))).one_or_none()
    return RotationState(int(row.position), dict(row.credits or {})) if row else RotationState()


# ------------------------------------------------------------------ lead projection
async def lock_lead(session: AsyncSession, org_id: str, lead_id: str) -> Any:
    return (await session.execute(_LOCK_LEAD, {"org": org_id, "lead": lead_id})).one_or_none()


async def lock_lead_with_routing_rules(session: AsyncSession, org_id: str, lead_id: str) -> Any:
    """`lock_lead`, with the rules of the rule set that routed the lead read in the same statement
    (`routed_by(row)` makes them a rule set, when they are needed)."""
    return (await session.execute(_LOCK_LEAD_WITH_ROUTING_RULES, {"org": org_id, "lead": lead_id})).one_or_none()


def routed_by(row: Any) -> RuleSet | None:
    """The rule set that routed the lead, from a row of `lock_lead_with_routing_rules`; None before it is routed."""
    return RuleSet(row.rule_set_version, load_rules(row.routed_by_rules)) if row.routed_by_rules is not None else None


async def ensure_lead(session: AsyncSession, org_id: str, lead_id: str, snapshot: dict[str, Any],
                      now: datetime, *, lead_version: int = 0, open_: bool = True) -> tuple[Any, bool]:
    """Insert the projection row if it is new, else lock the existing one; say whether it was inserted.

    A row this transaction inserted is locked by the insert itself until commit.
    """
    inserted = (await session.execute(_ADD_LEAD[dialect_name(session)], {
        "org": org_id, "lead": lead_id, "new_lead_version": lead_version, "new_snapshot": snapshot,
        "new_open": open_, "now": now})).one_or_none()
    if inserted is not None:
        return inserted, True
    return await lock_lead(session, org_id, lead_id), False


async def take_newer_snapshot(session: AsyncSession, org_id: str, lead_id: str, snapshot: dict[str, Any],
                              now: datetime, *, lead_version: int, open_: bool, follows_owner: bool = False,
                              owner_id: str | None = None) -> Any:
    """Write a newer snapshot of a known lead that is not erased (with `follows_owner`, `owner_id` as its owner
    too), in one statement; the row as it is now (locked, with `routed_by_rules` as `lock_lead_with_routing_rules`),
    or None when nothing was written: the lead is not known, is erased, or has this version or a newer one."""
    values = {"org": org_id, "lead": lead_id, "new_snapshot": snapshot, "new_lead_version": lead_version,
              "new_open": open_, "now": now}
    if follows_owner:
        values["new_owner_id"] = owner_id
    return (await session.execute(_TAKE_NEWER_SNAPSHOT[follows_owner], values)).one_or_none()


async def update_lead(session: AsyncSession, org_id: str, lead_id: str, **values: Any) -> None:
    await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id)
                          .values(**values))


async def update_lead_returning(session: AsyncSession, org_id: str, lead_id: str, **values: Any) -> Any:
    """`update_lead`, returning the row as it is now (locked by the update): no second read."""
    return (await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id)
                                  .values(**values).returning(*leads.c))).one_or_none()


async def see_pipeline_version(session: AsyncSession, org_id: str, lead_id: str, version: int, *,
                               open_: bool | None = None, with_newest_rules: bool = False) -> Any:
    """Record a pipeline-service event's `subject_version` if it is newer than the last one seen (and with `open_`,
    whether the lead is open), in one statement; the row as it is now (locked), or None when the event is stale or
    the lead is not known (nothing written). With `with_newest_rules` the row has the org's newest rules too
    (`newest_rules`, None before the first rule set), for deciding whether a hand-off rule is worth the routing
    configuration's read."""
    values: dict[str, Any] = {"org": org_id, "lead": lead_id, "version": version}
    if open_ is not None:
        values["new_open"] = open_
    statement = _SEE_PIPELINE_VERSIONS[(open_ is not None, with_newest_rules)]
    return (await session.execute(statement, values)).one_or_none()


def rules_of(raw_rules: Any) -> tuple[Rule, ...]:
    """Stored rules (a rule set's `rules` column) as rules; none for None."""
    return load_rules(raw_rules) if raw_rules is not None else ()


# ------------------------------------------------------------------ directory rows (reps, teams, territories)
async def page_of_rows(session: AsyncSession, table: sa.Table, org_id: str, after: str | None, limit: int, *,
                       active: bool | None = None) -> list[Any]:
    """Up to `limit` rows of the org by id after `after` (reps: only active or inactive ones with `active`)."""
    query = sa.select(table).where(table.c.org_id == org_id,
                                   *([table.c.active.is_(active)] if active is not None else []))
    if after:
        query = query.where(table.c.id > after)
    return list(await session.execute(query.order_by(table.c.id).limit(limit)))


async def insert_row(session: AsyncSession, table: sa.Table, org_id: str, row_id: str, version: int,
                     now: datetime, values: Mapping[str, object]) -> None:
    await session.execute(sa.insert(table).values(org_id=org_id, id=row_id, row_version=version,
                                                  created_at=now, updated_at=now, **values))


async def update_row(session: AsyncSession, table: sa.Table, org_id: str, row_id: str, version: int,
                     now: datetime, changes: Mapping[str, object]) -> None:
    """Write the changes at `version`."""
    await session.execute(sa.update(table).where(table.c.org_id == org_id, table.c.id == row_id).values(
        row_version=version, updated_at=now, **changes))


async def bump_row(session: AsyncSession, table: sa.Table, org_id: str, row_id: str, now: datetime,
                   **changes: Any) -> bool:
    """Write the changes at the row's next version; False when there is no such row."""
    result = await session.execute(sa.update(table).where(table.c.org_id == org_id, table.c.id == row_id).values(
        row_version=table.c.row_version + 1, updated_at=now, **changes))
    return bool(rows_affected(result))


async def delete_row(session: AsyncSession, table: sa.Table, org_id: str, row_id: str) -> None:
    await session.execute(sa.delete(table).where(table.c.org_id == org_id, table.c.id == row_id))


async def rep_ids(session: AsyncSession, org_id: str) -> set[str]:
    return {r.id for r in await session.execute(sa.select(reps.c.id).where(reps.c.org_id == org_id))}


async def territory_ids(session: AsyncSession, org_id: str) -> set[str]:
    return {r.id for r in await session.execute(sa.select(territories.c.id).where(territories.c.org_id == org_id))}


# ------------------------------------------------------------------ rule set rows
async def rule_set_versions_page(session: AsyncSession, org_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Every published version of the org's rule set, newest first, as `{"items", "next_cursor"}`."""
    query = sa.select(rule_sets.c.version, rule_sets.c.created_by, rule_sets.c.created_at).where(
        rule_sets.c.org_id == org_id)
    return await keyset_page(session, query, [rule_sets.c.version], limit, cursor, lambda r: {
        "version": r.version, "created_by": r.created_by, "created_at": rfc3339(r.created_at)}, descending=True)


async def rule_set_row(session: AsyncSession, org_id: str, version: int | None = None) -> Any:
    """The stored rule set of that version (default: the newest), with who published it and when."""
    if version is None:
        return (await session.execute(_NEWEST_RULE_SET, {"org": org_id})).one_or_none()
    return (await session.execute(_RULE_SET, {"org": org_id, "version": version})).one_or_none()


async def latest_rule_set_version(session: AsyncSession, org_id: str) -> int:
    """The newest rule set version of the org; 0 before the first."""
    latest = (await session.execute(sa.select(sa.func.max(rule_sets.c.version)).where(
        rule_sets.c.org_id == org_id))).scalar_one_or_none()
    return int(latest or 0)


async def insert_rule_set(session: AsyncSession, org_id: str, version: int, rules: Sequence[Mapping[str, object]],
                          user_id: str, now: datetime) -> None:
    await session.execute(sa.insert(rule_sets).values(
        org_id=org_id, version=version, rules=rules, created_by=user_id, created_at=now))


# ------------------------------------------------------------------ decisions
async def record_decision(session: AsyncSession, org_id: str, lead_id: str, decision: Mapping[str, object],
                          lead_changes: Mapping[str, object], *, rotation: tuple[str, RotationState] | None,
                          assigned_rep_id: str | None, now: datetime | None,
                          outbox_rows: Sequence[Mapping[str, object]] = ()) -> None:
    """Write what a decision changes: the rotation's new state (if it took a slot), the decision, the rep's last
    assignment (if it got the lead), the lead's new values and the events it publishes (`outbox_rows`, taken from
    the unit of work: `UnitOfWork.take_outbox_rows`). Every row but the decision's and the events' is locked by
    this transaction already. On PostgreSQL one statement (the other writes as data-modifying CTEs, which all run
    to completion with it); SQLite has no such CTEs, so there it is one statement per table."""
    writes: list[Any] = []
    postgresql = dialect_name(session) == "postgresql"
    if rotation is not None:
        key, state = rotation
        writes.append(sa.update(rotations).where(rotations.c.org_id == org_id, rotations.c.key == key).values(
            position=state.position, credits=state.credits, updated_at=now))
    writes.append(sa.insert(decisions).values(**decision))
    if assigned_rep_id is not None:
        writes.append(sa.update(reps).where(reps.c.org_id == org_id, reps.c.id == assigned_rep_id).values(
            last_assigned_at=now))
    if outbox_rows and postgresql:
        # Inserted in the order given (their ids are the relay's publishing order), from one array per column: a
        # multi-row VALUES would make the statement one SQLAlchemy compiles again at every decision.
        writes.append(insert_outbox_statement("events"))
    lead_update = sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id).values(**lead_changes)
    if postgresql:
        await session.execute(lead_update.add_cte(*(write.cte(f"write_{n}") for n, write in enumerate(writes))),
                              array_params("events", OUTBOX_COLUMNS, outbox_rows) if outbox_rows else {})
        return
    for statement in (*writes, lead_update):
        await session.execute(statement)
    if outbox_rows:
        await session.execute(INSERT_OUTBOX, list(outbox_rows))


async def decisions_page(session: AsyncSession, org_id: str, *, lead_id: str | None, owner_id: str | None,
                         after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    """Up to `limit` decisions of the org by time and id after `after` (of one lead, or giving leads to one
    rep)."""
    query = sa.select(decisions).where(decisions.c.org_id == org_id)
    if lead_id is not None:
        query = query.where(decisions.c.lead_id == lead_id)
    if owner_id is not None:
        query = query.where(decisions.c.owner_id == owner_id)
    if after is not None:
        stamp, decision_id = after
        query = query.where(sa.or_(decisions.c.created_at > stamp,
                                   sa.and_(decisions.c.created_at == stamp, decisions.c.id > decision_id)))
    return list(await session.execute(query.order_by(decisions.c.created_at, decisions.c.id).limit(limit)))


async def get_decision(session: AsyncSession, org_id: str, decision_id: str) -> Any:
    return (await session.execute(sa.select(decisions).where(
        decisions.c.org_id == org_id, decisions.c.id == decision_id))).one_or_none()


async def ever_owned(session: AsyncSession, org_id: str, lead_id: str, rep_id: str) -> bool:
    row = (await session.execute(sa.select(decisions.c.id).where(
        decisions.c.org_id == org_id, decisions.c.lead_id == lead_id, decisions.c.owner_id == rep_id).limit(1))).first()
    return row is not None


async def decision_explanations(session: AsyncSession, org_id: str, lead_id: str) -> list[tuple[str, Any]]:
    """(decision id, explanation) of every decision about the lead."""
    rows = await session.execute(sa.select(decisions.c.id, decisions.c.explanation).where(
        decisions.c.org_id == org_id, decisions.c.lead_id == lead_id))
    return [(decision_id, explanation) for decision_id, explanation in rows]


async def set_explanation(session: AsyncSession, decision_id: str, explanation: Mapping[str, object]) -> None:
    await session.execute(sa.update(decisions).where(decisions.c.id == decision_id).values(explanation=explanation))


# ------------------------------------------------------------------ lead projection, continued
async def get_lead(session: AsyncSession, org_id: str, lead_id: str) -> Any:
    return (await session.execute(sa.select(leads).where(leads.c.org_id == org_id,
                                                         leads.c.lead_id == lead_id))).one_or_none()


async def open_leads_of(session: AsyncSession, org_id: str, rep_id: str) -> list[str]:
    """The ids of the open leads the rep owns, in id order."""
    return [r.lead_id for r in await session.execute(
        sa.select(leads.c.lead_id).where(leads.c.org_id == org_id, leads.c.owner_id == rep_id,
                                         leads.c.open.is_(True)).order_by(leads.c.lead_id))]
