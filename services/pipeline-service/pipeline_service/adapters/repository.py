"""Reading and writing pipeline-service's tables (the business calendar has its own module, calendars.py): every
query of the service is here, org-scoped except the workers' claims of due rows, which span orgs. Rows come
back as the typed records below; a lead's position is the one mutable record, changed by the engine and
written back whole with `save_position`.

The statements every event about a lead runs (lock its position, read its pipeline's stages, its activities
and its required tasks, write it back) are built once, with bind parameters: executing a prebuilt statement
reuses its cache key and compiled form instead of building both again. They also read and write as much as one
statement can: the lock brings the current stage and the lead's activities along (a goal is judged on them
without another read), a visit is numbered in its own insert and a stage's tasks are inserted with it.

A lock that had to wait sees the lead's activities as they were when its statement began: an activity another
transaction added while it held the lock would be missing (two replicas logging a lead's two activities at once
would each judge the goal on one). On PostgreSQL an activity's insert therefore writes the position row again
(a new row version) in the same statement, and the lock reads the row's version twice: as locked (the newest) and
as its statement's snapshot saw it. When they differ, the activities are read again after the lock.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.db import (
    array_params,
    cte_parameters,
    first_record,
    insert_from_arrays,
    prefixed,
    reads_outside_a_transaction,
    records,
    row_values,
    rows_affected,
)
from salesflow_shared.inbox import dialect_name, per_dialect
from salesflow_shared.ownership import owned_before, owned_or_owned_before
from salesflow_shared.ownership import remember_past_owner as remember_owner

from . import calendars
from .orm import activities, business_calendars, lead_past_owners, pipelines, positions, stage_history, stages, tasks


# ====================================================================== records
@dataclass(frozen=True)
class PipelineRecord:
    id: str
    org_id: str
    name: str
    description: str
    lost_reasons: list[str]
    nurture_days: int
    template_key: str | None
    archived: bool
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StageRecord:
    id: str
    org_id: str
    pipeline_id: str
    name: str
    position: int
    guidance: str
    win_probability: Decimal
    is_ask_stage: bool
    goal: dict[str, Any] | None
    task_templates: list[dict[str, Any]]
    deleted: bool
    created_at: datetime


@dataclass(frozen=True)
class TaskRecord:
    id: str
    org_id: str
    lead_id: str
    pipeline_id: str | None
    stage_id: str | None
    visit_id: str | None
    title: str
    task_type: str
    required: bool
    assignee_kind: str
    assignee_id: str | None
    team_id: str | None
    due_at: datetime
    status: str
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    skip_reason: str | None
    overdue_at: datetime | None
    version: int


@dataclass(frozen=True)
class StageVisit:
    """One stay of a lead in a stage (`stage_history`)."""
    id: str
    org_id: str
    lead_id: str
    pipeline_id: str
    stage_id: str
    stage_name: str
    entered_at: datetime
    entry_reason: str
    triggering_event_id: str | None
    moved_by: str | None
    note: str | None
    exited_at: datetime | None
    exit_reason: str | None
    seq: int


@dataclass(frozen=True)
class Activity:
    kind: str
    occurred_at: datetime


@dataclass
class Position:
    """A lead's position (its `positions` row): what pipeline-service knows of the lead, the stage it is in and
    the versions of the event streams about it. The engine changes it in place; `save_position` writes it."""
    org_id: str
    lead_id: str
    lead: dict[str, Any]  # the latest LeadSnapshot (JSON), {} until LeadCreated; replaced whole, never changed in place
    lead_version: int
    owner_id: str | None
    owner_timezone: str | None
    team_id: str | None
    assigned_version: int
    routed_version: int
    status: str
    pipeline_id: str | None
    stage_id: str | None
    stage_entered_at: datetime | None
    visit_id: str | None
    reengage_at: datetime | None
    lost_reason: str | None
    closed_at: datetime | None
    won_value: Decimal | None
    won_currency: str | None
    event_version: int
    cycle_started_at: datetime | None
    goal_held: bool
    updated_at: datetime
    # Not columns: read with the row by `lock_position` (None when not read), so that judging the stage's goal
    # needs no further statement. The engine keeps them current as it changes the lead in the transaction.
    stage: StageRecord | None = field(default=None, compare=False, repr=False)  # the current stage
    activities: list[Activity] | None = field(default=None, compare=False, repr=False)  # all the lead's
    # Its columns as `lock_position` read them: `save_position` writes nothing when none changed.
    read_as: dict[str, Any] | None = field(default=None, compare=False, repr=False)


def _after(key: Any, id_column: Any, after: tuple[datetime, str]) -> Any:
    """Rows after `after` in (key, id) order: where a keyset page resumes."""
    return sa.or_(key > after[0], sa.and_(key == after[0], id_column > after[1]))


# ====================================================================== statements built once
_POSITION_KEY = (positions.c.org_id == sa.bindparam("org")) & (positions.c.lead_id == sa.bindparam("lead_id_"))
_NEW_POSITION = {"org_id": sa.bindparam("org"), "lead_id": sa.bindparam("lead_id_"), "lead": {}, "status": "unrouted",
                 "updated_at": sa.bindparam("now")}
_ADD_POSITION = per_dialect(lambda insert: insert(positions).values(_NEW_POSITION).on_conflict_do_nothing(
    index_elements=["org_id", "lead_id"]))
# A lead's first snapshot (LeadCreated) as its new row, when it has none yet (RETURNING: the row, if it was new).
_ADD_POSITION_WITH_SNAPSHOT = per_dialect(lambda insert: insert(positions).values({
    **_NEW_POSITION, "lead": sa.bindparam("new_lead", type_=sa.JSON), "lead_version": sa.bindparam("new_lead_version"),
    "owner_id": sa.bindparam("new_owner_id"), "team_id": sa.bindparam("new_team_id"),
}).on_conflict_do_nothing(index_elements=["org_id", "lead_id"]).returning(*positions.columns))
_CURRENT_STAGE_PREFIX = "current_stage__"  # its columns beside the position's (both have `id`, `org_id`, ...)
_CURRENT_STAGE = [c.label(_CURRENT_STAGE_PREFIX + c.name) for c in stages.columns]
_LEAD_ACTIVITIES = (activities.c.org_id == positions.c.org_id) & (activities.c.lead_id == positions.c.lead_id)


def _lock_position_in_context(dialect: str, agg: Any, pair: Any, along_pipeline: bool) -> sa.Select[Any]:
    """The lead's row, locked, with its current stage (not deleted, of its pipeline) and its activities as one
    JSON array of [kind, occurred_at] (`agg`/`pair`: the dialect's JSON aggregate and array functions); on
    PostgreSQL also the row's version as locked and as the statement's snapshot saw it (see the module's
    docstring). `along_pipeline`: also, a row per stage, what `live_pipeline_stages` reads of the pipeline
    `pipeline` (a routing names the pipeline the lead enters)."""
    known_activities = sa.type_coerce(
        sa.select(agg(pair(activities.c.kind, activities.c.occurred_at))).where(_LEAD_ACTIVITIES)
        .correlate(positions).scalar_subquery(), sa.JSON)
    versions: list[Any] = []
    if dialect == "postgresql":
        seen = positions.alias("seen_position")
        versions = [sa.literal_column("positions.xmin::text").label("locked_version"),
                    sa.select(sa.literal_column("seen_position.xmin::text"))
                    .where(seen.c.org_id == positions.c.org_id, seen.c.lead_id == positions.c.lead_id)
                    .correlate(positions).scalar_subquery().label("seen_version")]
    current_stage = positions.outerjoin(stages, (stages.c.org_id == positions.c.org_id)
                                        & (stages.c.id == positions.c.stage_id)
                                        & (stages.c.pipeline_id == positions.c.pipeline_id)
                                        & stages.c.deleted.is_(False))
    query = sa.select(*positions.columns, *_CURRENT_STAGE, known_activities.label("known_activities"), *versions)
    if along_pipeline:
        live = _live_pipeline(_PIPELINE_STAGE)
        query = (query.add_columns(*_columns_of(_PIPELINE_STAGE)).order_by(_PIPELINE_STAGE.c.position)
                 .select_from(current_stage.outerjoin(live, (pipelines.c.org_id == positions.c.org_id)
                                                      & (pipelines.c.id == sa.bindparam("pipeline"))
                                                      & pipelines.c.archived.is_(False))))
    else:
        query = query.select_from(current_stage)
    return query.where(_POSITION_KEY).with_for_update(of=positions)


def _live_pipeline(stage: Any) -> Any:
    """A pipeline joined with its stages (`stage`: the stages table or an alias of it; not deleted) and its org's
    business calendar (entering a stage dates its tasks): the join `_columns_of` reads."""
    return (pipelines.outerjoin(stage, (stage.c.org_id == pipelines.c.org_id) & (stage.c.pipeline_id == pipelines.c.id)
                                & stage.c.deleted.is_(False))
            .outerjoin(business_calendars, business_calendars.c.org_id == pipelines.c.org_id))


def _columns_of(stage: Any) -> list[Any]:
    """What `_live_pipeline_of` reads from a `_live_pipeline(stage)` join: the pipeline's id, each stage's columns
    (named as `_current_stage` reads them) and the calendar's."""
    return [pipelines.c.id.label("live_pipeline_id"),
            *[c.label(_PIPELINE_STAGE_PREFIX + c.name) for c in stage.columns], *calendars.READ_ALONG]


_PIPELINE_STAGE_PREFIX = "pipeline_stage__"
_PIPELINE_STAGE = stages.alias("pipeline_stage")
_LOCK_POSITION = {(dialect, along_pipeline): _lock_position_in_context(dialect, agg, pair, along_pipeline)
                  for dialect, (agg, pair) in {"postgresql": (sa.func.json_agg, sa.func.json_build_array),
                                               "sqlite": (sa.func.json_group_array, sa.func.json_array)}.items()
                  for along_pipeline in (False, True)}
_POSITION_COLUMNS = [c.name for c in positions.columns if c.name not in ("org_id", "lead_id")]
_CHANGEABLE_COLUMNS = [name for name in _POSITION_COLUMNS if name != "updated_at"]
_SAVE_POSITION = sa.update(positions).where(_POSITION_KEY).values(
    {name: sa.bindparam(f"new_{name}") for name in _POSITION_COLUMNS})
_PIPELINE_STAGES = (sa.select(stages).where(stages.c.org_id == sa.bindparam("org"),
                                            stages.c.pipeline_id == sa.bindparam("pipeline"),
                                            stages.c.deleted.is_(False)).order_by(stages.c.position))
# A live (not archived) pipeline and its stages in one statement: no row, no such pipeline; one row without a
# stage, a pipeline without stages. The org's business calendar comes along: entering a stage dates its tasks.
_LIVE_PIPELINE_STAGES = (
    sa.select(*_columns_of(_PIPELINE_STAGE)).select_from(_live_pipeline(_PIPELINE_STAGE))
    .where(pipelines.c.org_id == sa.bindparam("org"), pipelines.c.id == sa.bindparam("pipeline"),
           pipelines.c.archived.is_(False)).order_by(_PIPELINE_STAGE.c.position))
_ACTIVITIES = sa.select(activities.c.kind, activities.c.occurred_at).where(
    activities.c.org_id == sa.bindparam("org"), activities.c.lead_id == sa.bindparam("lead_id_"))
_REQUIRED_TASK_STATUSES = sa.select(tasks.c.status).where(
    tasks.c.org_id == sa.bindparam("org"), tasks.c.visit_id == sa.bindparam("visit"), tasks.c.required.is_(True))
# The visit's number is counted in the insert itself (the lead's position is locked: no other visit meanwhile).
_ADD_VISIT = sa.insert(stage_history).values({
    **{name: sa.bindparam(f"new_{name}") for name in [c.name for c in stage_history.columns]
       if name not in ("exited_at", "exit_reason", "seq")},
    "seq": sa.select(sa.func.count() + 1).select_from(stage_history).where(
        stage_history.c.org_id == sa.bindparam("new_org_id"), stage_history.c.lead_id == sa.bindparam("new_lead_id"),
    ).scalar_subquery()})
_ADD_TASKS = sa.insert(tasks)  # executed with a list of rows: one statement for all of a stage's tasks
_LOCK_OPEN_OWNER_TASKS = sa.select(tasks).where(
    tasks.c.org_id == sa.bindparam("org"), tasks.c.lead_id == sa.bindparam("lead_id_"), tasks.c.status == "open",
    tasks.c.assignee_kind == "owner").order_by(tasks.c.created_at, tasks.c.id).with_for_update()
_REASSIGN_TASK = sa.update(tasks).where(tasks.c.id == sa.bindparam("task_id")).values(
    assignee_kind=sa.bindparam("new_assignee_kind"), assignee_id=sa.bindparam("new_assignee_id"),
    team_id=sa.bindparam("new_team_id"), version=sa.bindparam("new_version"))

_LOCKED_POSITIONS = "locked_positions"  # per session: its current transaction and the positions it locked
_LIVE_READ = "live_pipelines"  # per session: `live_pipeline_stages`' answers, by (org, pipeline)
_STAGES_READ = "pipeline_stages"  # per session (one handler transaction or one request): read once per pipeline


def _current_stage(row: Any, prefix: str = _CURRENT_STAGE_PREFIX) -> StageRecord | None:
    """The stage of a row carrying `_CURRENT_STAGE`'s columns (or a stage's columns named with `prefix`), or None
    when the join found none."""
    if row[prefix + "id"] is None:
        return None
    return StageRecord(**{c.name: row[prefix + c.name] for c in stages.columns})


def _live_pipeline_of(session: AsyncSession, org_id: str, pipeline_id: str,
                      rows: Sequence[Any]) -> list[StageRecord] | None:
    """The pipeline's stages from rows read with `_columns_of` (None: no such pipeline, or archived), then known
    to `live_pipeline_stages` and `pipeline_stages` for the rest of the session, and the org's calendar too."""
    if not rows or rows[0]["live_pipeline_id"] is None:
        seq = None
    else:
        seq = [stage for stage in (_current_stage(row, _PIPELINE_STAGE_PREFIX) for row in rows) if stage is not None]
        _stages_read(session)[(org_id, pipeline_id)] = seq
        calendars.remember_read(session, org_id, rows[0])
    session.info.setdefault(_LIVE_READ, {})[(org_id, pipeline_id)] = seq
    return seq


def _activities_of(value: Any) -> list[Activity]:
    """`known_activities` (a JSON array of [kind, occurred_at], or NULL for none) as activities. The times come
    as ISO 8601 text (PostgreSQL: with their offset; SQLite: naive UTC, as SQLite keeps them)."""
    return [Activity(kind=kind, occurred_at=datetime.fromisoformat(occurred_at)) for kind, occurred_at in value or []]


# ====================================================================== positions
async def add_position(session: AsyncSession, org_id: str, lead_id: str, now: datetime, *, lead: dict[str, Any],
                       lead_version: int, owner_id: str | None, team_id: str | None) -> bool:
    """A lead no event has named yet, `unrouted`, with its first snapshot and owner; False (and nothing written)
    when it has a row. The new row is held by this transaction: the next event about the lead in it (a batch)
    takes it as locked without reading it."""
    added = (await session.execute(_ADD_POSITION_WITH_SNAPSHOT[dialect_name(session)], {
        "org": org_id, "lead_id_": lead_id, "now": now, "new_lead": lead, "new_lead_version": lead_version,
        "new_owner_id": owner_id, "new_team_id": team_id})).mappings().first()
    if added is None:
        return False
    _remember_locked(session, Position(**added), stage=None, activities=[])  # a new lead: no stage, no activity
    return True


async def lock_position(session: AsyncSession, org_id: str, lead_id: str, now: datetime, *,
                        create: bool = True, along_pipeline: str | None = None) -> Position | None:
    """The lead's row, locked for this transaction, with its current stage and activities (see `Position`);
    created (partial, `unrouted`) when missing and `create`. Read once per transaction: a batch of events about
    the lead gets the position the one before left (written back, and still locked). With `along_pipeline`, that
    pipeline's stages are read by the same statement (see `live_pipeline_stages`)."""
    known = _locked_positions(session).get((org_id, lead_id))
    if known is not None and _changeable_columns(known) == known.read_as:  # nothing left unwritten in it
        return known
    key = {"org": org_id, "lead_id_": lead_id, "pipeline": along_pipeline}
    dialect = dialect_name(session)
    lock = _LOCK_POSITION[dialect, along_pipeline is not None]
    rows = (await session.execute(lock, key)).mappings().all()
    if not rows and create:
        await session.execute(_ADD_POSITION[dialect], {**key, "now": now})
        rows = (await session.execute(lock, key)).mappings().all()
    if not rows:
        return None
    row = rows[0]
    if along_pipeline is not None:
        _live_pipeline_of(session, org_id, along_pipeline, rows)
    # A row newer than the statement's snapshot: its activities are read again after the lock (`lead_facts`).
    current = row.get("locked_version") == row.get("seen_version")
    return _remember_locked(session, Position(**{c.name: row[c.name] for c in positions.columns}),
                            stage=_current_stage(row),
                            activities=_activities_of(row["known_activities"]) if current else None)


def _remember_locked(session: AsyncSession, position: Position, *, stage: StageRecord | None,
                     activities: list[Activity] | None) -> Position:
    """The position as locked by the session's transaction, with what it was read with (see `Position`)."""
    position.stage, position.activities = stage, activities
    position.read_as = _changeable_columns(position)
    _locked_positions(session)[(position.org_id, position.lead_id)] = position
    return position


def _locked_positions(session: AsyncSession) -> dict[tuple[str, str], Position]:
    """The positions the session's current transaction locked, by (org, lead) (none once it ended: a session that
    commits and goes on locks them again)."""
    transaction = session.sync_session.get_transaction()
    held: tuple[Any, dict[tuple[str, str], Position]] | None = session.info.get(_LOCKED_POSITIONS)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        if transaction is not None:
            session.info[_LOCKED_POSITIONS] = held
    return held[1]


def _changeable_columns(pos: Position) -> dict[str, Any]:
    """What an event may change of a position (`updated_at` follows the others: alone it is no change). A shallow
    copy is enough: every column's value is immutable (text, numbers, times) but `lead`, a JSON object that the
    engine replaces whole with each newer snapshot and never changes in place."""
    return {name: getattr(pos, name) for name in _CHANGEABLE_COLUMNS}


async def save_position(session: AsyncSession, pos: Position) -> None:
    """Write the position back, unless nothing changed since it was read (an event that moved nothing)."""
    changeable = _changeable_columns(pos)
    if changeable == pos.read_as:
        return
    await session.execute(_SAVE_POSITION, {"org": pos.org_id, "lead_id_": pos.lead_id,
                                           **{f"new_{name}": getattr(pos, name) for name in _POSITION_COLUMNS}})
    pos.read_as = changeable


# Built once, executed with a parameter dict (statement, cache key and compiled form reused): the reads of a
# lead's position (GET /v1/positions/{lead_id}), the pipeline's most frequent request.
_POSITION = sa.select(positions).where(positions.c.org_id == sa.bindparam("org_id"),
                                       positions.c.lead_id == sa.bindparam("lead_id"))


async def visible_position(session: AsyncSession, principal: Principal, lead_id: str) -> Position | None:
    """The lead's position if the principal may read it (see `readable_by`)."""
    if principal.sees_whole_org:
        result = await session.execute(_POSITION, {"org_id": principal.org_id, "lead_id": lead_id})
    else:
        result = await session.execute(sa.select(positions).where(
            positions.c.org_id == principal.org_id, positions.c.lead_id == lead_id, _readable_by(principal)))
    return first_record(Position, result)


@dataclass(frozen=True)
class PositionView:
    """What GET /v1/positions/{lead_id} shows of a lead, read by one statement: its position, the stage it is in
    (whatever became of it), its pipeline's name (None without one), its open tasks by due time and its visits."""
    position: Position
    stage: StageRecord | None
    pipeline_name: str | None
    open_tasks: list[TaskRecord]
    history: list[StageVisit]


def _rows_as_json(agg: Any, pair: Any, table: sa.Table, *where: Any) -> Any:
    """The table's rows matching `where` (correlated to `positions`) as one JSON array of arrays, a value per
    column in the table's order (NULL for none)."""
    return sa.type_coerce(sa.select(agg(pair(*table.columns))).where(*where).correlate(positions).scalar_subquery(),
                          sa.JSON)


def _position_view(agg: Any, pair: Any, readable: Any) -> sa.Select[Any]:
    """The lead's position with what `PositionView` shows (`agg`/`pair`: the dialect's JSON aggregate and array
    functions; `readable`: who may read it)."""
    view_stage = stages.alias("view_stage")
    open_tasks = _rows_as_json(agg, pair, tasks, tasks.c.org_id == positions.c.org_id,
                               tasks.c.lead_id == positions.c.lead_id, tasks.c.status == "open")
    visits = _rows_as_json(agg, pair, stage_history, stage_history.c.org_id == positions.c.org_id,
                           stage_history.c.lead_id == positions.c.lead_id)
    joined = (positions.outerjoin(view_stage, (view_stage.c.org_id == positions.c.org_id)
                                  & (view_stage.c.id == positions.c.stage_id))
              .outerjoin(pipelines, (pipelines.c.org_id == positions.c.org_id)
                         & (pipelines.c.id == positions.c.pipeline_id)))
    return (sa.select(*positions.columns, *[c.label(_CURRENT_STAGE_PREFIX + c.name) for c in view_stage.columns],
                      pipelines.c.name.label("pipeline_name"), open_tasks.label("open_tasks"),
                      visits.label("visits"))
            .select_from(joined).where(positions.c.org_id == sa.bindparam("org_id"),
                                       positions.c.lead_id == sa.bindparam("lead_id"), readable))


_JSON_FUNCTIONS = {"postgresql": (sa.func.json_agg, sa.func.json_build_array),
                   "sqlite": (sa.func.json_group_array, sa.func.json_array)}
# Built once for those who see the whole org (a rep's reads name the rep: built per request).
_POSITION_VIEW = {dialect: _position_view(agg, pair, sa.true()) for dialect, (agg, pair) in _JSON_FUNCTIONS.items()}


def _from_json_rows(cls: type[Any], table: sa.Table, value: Any) -> list[Any]:
    """`_rows_as_json`'s array as records. In JSON the times are ISO 8601 text (PostgreSQL: with the session's
    offset, given back in UTC; SQLite: naive UTC, as it keeps them) and SQLite's booleans are 0 and 1."""
    converters = [_json_time if isinstance(c.type, sa.DateTime) else bool if isinstance(c.type, sa.Boolean) else None
                  for c in table.columns]
    names = [c.name for c in table.columns]
    return [cls(**{name: (convert(v) if convert is not None and v is not None else v)
                   for name, convert, v in zip(names, converters, row, strict=True)}) for row in value or []]


def _json_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is None else value.astimezone(UTC)



async def position_view(session: AsyncSession, principal: Principal, lead_id: str) -> PositionView | None:
    """The lead's `PositionView` if the principal may read its position (see `readable_by`), in one statement."""
    # A read alone in its request opens no transaction; after a change (move, won, lost) it reads in the change's.
    await reads_outside_a_transaction(session)
    dialect = dialect_name(session)
    if principal.sees_whole_org:
        statement = _POSITION_VIEW[dialect]
    else:
        statement = _position_view(*_JSON_FUNCTIONS[dialect], _readable_by(principal))
    row = (await session.execute(statement, {"org_id": principal.org_id, "lead_id": lead_id})).mappings().first()
    if row is None:
        return None
    open_tasks = sorted(_from_json_rows(TaskRecord, tasks, row["open_tasks"]), key=lambda t: (_utc(t.due_at), t.id))
    history = sorted(_from_json_rows(StageVisit, stage_history, row["visits"]), key=lambda v: v.seq)
    return PositionView(position=Position(**{c.name: row[c.name] for c in positions.columns}),
                        stage=_current_stage(row), pipeline_name=row["pipeline_name"], open_tasks=open_tasks,
                        history=history)


def _utc(value: datetime) -> datetime:
    """SQLite's naive times as UTC (for ordering them with PostgreSQL's aware ones alike)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _readable_by(principal: Principal) -> Any:
    """Admins and managers see the whole org; a rep the leads it owns or owned before (docs/access.md)."""
    if principal.sees_whole_org:
        return sa.true()
    return owned_or_owned_before(lead_past_owners, principal, positions.c.lead_id, positions.c.owner_id)


async def positions_page(session: AsyncSession, principal: Principal, filters: dict[str, str | None],
                         after_lead_id: str | None, limit: int) -> list[Position]:
    """The positions the principal may read (not erased), by lead id, matching `filters` (column → value);
    `limit` + 1 rows tell whether more follow."""
    query = sa.select(positions).where(positions.c.org_id == principal.org_id, positions.c.status != "erased",
                                       _readable_by(principal))
    for name, value in filters.items():
        if value is not None:
            query = query.where(positions.c[name] == value)
    if after_lead_id is not None:
        query = query.where(positions.c.lead_id > after_lead_id)
    rows = await session.execute(query.order_by(positions.c.lead_id).limit(limit + 1))
    return records(Position, rows.mappings())


async def owner_of(session: AsyncSession, org_id: str, lead_id: str) -> str | None:
    return (await session.execute(sa.select(positions.c.owner_id).where(
        positions.c.org_id == org_id, positions.c.lead_id == lead_id))).scalar_one_or_none()


async def leads_in_stage(session: AsyncSession, org_id: str, stage_id: str) -> list[str]:
    """The leads active in the stage, by id."""
    return list((await session.execute(sa.select(positions.c.lead_id).where(
        positions.c.org_id == org_id, positions.c.stage_id == stage_id, positions.c.status == "active",
    ).order_by(positions.c.lead_id))).scalars())


async def leads_held_by_pipeline(session: AsyncSession, org_id: str, pipeline_id: str) -> int:
    """How many leads are in the pipeline or nurtured by it."""
    return int((await session.execute(sa.select(sa.func.count()).select_from(positions).where(
        positions.c.org_id == org_id, positions.c.pipeline_id == pipeline_id,
        positions.c.status.in_(("active", "nurturing"))))).scalar_one())


async def claim_leads_due_to_reopen(session: AsyncSession, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(org, lead) of nurtured leads whose re-engage date has come, locked (SKIP LOCKED: replicas share them)."""
    rows = await session.execute(
        sa.select(positions.c.org_id, positions.c.lead_id)
        .where(positions.c.status == "nurturing", positions.c.reengage_at <= now)
        .order_by(positions.c.reengage_at).limit(limit).with_for_update(skip_locked=True))
    return [(r.org_id, r.lead_id) for r in rows]


async def remember_past_owner(session: AsyncSession, org_id: str, lead_id: str, previous_owner_id: str | None,
                              owner_id: str | None, now: datetime) -> None:
    """The lead's former owner keeps read access to its position."""
    await remember_owner(session, lead_past_owners, org_id, lead_id, previous_owner_id, owner_id, now)


async def owned_lead_before(session: AsyncSession, principal: Principal, lead_id: str) -> bool:
    return await owned_before(session, lead_past_owners, principal, lead_id)


# ====================================================================== pipelines and stages
def _pipeline_query(lock: bool, archived_too: bool) -> sa.Select[Any]:
    query = sa.select(pipelines).where(pipelines.c.org_id == sa.bindparam("org_id"),
                                       pipelines.c.id == sa.bindparam("pipeline_id"))
    if not archived_too:
        query = query.where(pipelines.c.archived.is_(False))
    return query.with_for_update() if lock else query


_PIPELINE = {(lock, archived_too): _pipeline_query(lock, archived_too)
             for lock in (False, True) for archived_too in (False, True)}


async def get_pipeline(session: AsyncSession, org_id: str, pipeline_id: str, *, lock: bool = False,
                       archived_too: bool = False) -> PipelineRecord | None:
    return first_record(PipelineRecord, await session.execute(
        _PIPELINE[lock, archived_too], {"org_id": org_id, "pipeline_id": pipeline_id}))


async def add_pipeline(session: AsyncSession, pipeline: PipelineRecord) -> None:
    await session.execute(sa.insert(pipelines).values(**row_values(pipeline)))
    _forget_stages_read(session)


async def bump_pipeline(session: AsyncSession, org_id: str, pipeline_id: str, now: datetime,
                        values: dict[str, Any]) -> None:
    """Write `values` (possibly none) and the pipeline's next version."""
    await session.execute(sa.update(pipelines).where(pipelines.c.org_id == org_id, pipelines.c.id == pipeline_id)
                          .values(version=pipelines.c.version + 1, updated_at=now, **values))
    _forget_stages_read(session)


async def pipelines_page(session: AsyncSession, org_id: str, after: tuple[datetime, str] | None,
                         limit: int) -> list[PipelineRecord]:
    """The org's pipelines (not archived), oldest first; `limit` + 1 rows tell whether more follow."""
    query = sa.select(pipelines).where(pipelines.c.org_id == org_id, pipelines.c.archived.is_(False))
    if after:
        query = query.where(_after(pipelines.c.created_at, pipelines.c.id, after))
    rows = await session.execute(query.order_by(pipelines.c.created_at, pipelines.c.id).limit(limit + 1))
    return records(PipelineRecord, rows.mappings())


def _stages_read(session: AsyncSession) -> dict[tuple[str, str], list[StageRecord]]:
    """The pipelines' stages this session read, by (org, pipeline); forgotten whenever it writes a pipeline or a
    stage, so a read after a write sees the write."""
    stages_read: dict[tuple[str, str], list[StageRecord]] = session.info.setdefault(_STAGES_READ, {})
    return stages_read


def _forget_stages_read(session: AsyncSession) -> None:
    session.info.pop(_STAGES_READ, None)
    session.info.pop(_LIVE_READ, None)


async def pipeline_stages(session: AsyncSession, org_id: str, pipeline_id: str) -> list[StageRecord]:
    """The pipeline's stages (not deleted) in order (read once per session: a handler asks several times)."""
    stages_read = _stages_read(session)
    if (org_id, pipeline_id) not in stages_read:
        rows = await session.execute(_PIPELINE_STAGES, {"org": org_id, "pipeline": pipeline_id})
        stages_read[(org_id, pipeline_id)] = records(StageRecord, rows.mappings())
    return stages_read[(org_id, pipeline_id)]


async def live_pipeline_stages(session: AsyncSession, org_id: str, pipeline_id: str) -> list[StageRecord] | None:
    """The stages (not deleted, in order) of the pipeline if it exists and is not archived, else None; in one
    statement, once per session (and then known to `pipeline_stages` too)."""
    live_read: dict[tuple[str, str], list[StageRecord] | None] = session.info.get(_LIVE_READ, {})
    if (org_id, pipeline_id) in live_read:
        return live_read[(org_id, pipeline_id)]
    rows = (await session.execute(_LIVE_PIPELINE_STAGES, {"org": org_id, "pipeline": pipeline_id})).mappings().all()
    return _live_pipeline_of(session, org_id, pipeline_id, rows)


_STAGE = sa.select(stages).where(stages.c.org_id == sa.bindparam("org_id"), stages.c.id == sa.bindparam("stage_id"))


async def get_stage(session: AsyncSession, org_id: str, stage_id: str) -> StageRecord | None:
    return first_record(StageRecord, await session.execute(_STAGE, {"org_id": org_id, "stage_id": stage_id}))


async def stage_position(session: AsyncSession, org_id: str, stage_id: str) -> int | None:
    return (await session.execute(sa.select(stages.c.position).where(
        stages.c.org_id == org_id, stages.c.id == stage_id))).scalar()


async def add_stage(session: AsyncSession, stage: StageRecord) -> None:
    await session.execute(sa.insert(stages).values(**row_values(stage)))
    _forget_stages_read(session)


async def update_stage(session: AsyncSession, org_id: str, stage_id: str, values: dict[str, Any]) -> None:
    await session.execute(sa.update(stages).where(stages.c.org_id == org_id, stages.c.id == stage_id)
                          .values(**values))
    _forget_stages_read(session)


# ====================================================================== activities
_ADD_ACTIVITY_SQLITE = sqlite.insert(activities).on_conflict_do_nothing(index_elements=["org_id", "activity_id"])


# PostgreSQL: the insert in a WITH, and the lead's position row written again (a new row version, its columns
# unchanged) when the activity is new, in one statement (see the module's docstring). The insert's parameters are
# `cte_parameters`: named like a column of `positions` they would be taken into the UPDATE's SET.
_ADDED_ACTIVITY = (postgresql.insert(activities).values(cte_parameters(activities, "activity"))
    .on_conflict_do_nothing(index_elements=["org_id", "activity_id"]).returning(activities.c.activity_id)
    .cte("added_activity"))
_ADD_ACTIVITY_MOVING_POSITION = sa.update(positions).where(
    positions.c.org_id == sa.bindparam("activity_org_id"), positions.c.lead_id == sa.bindparam("activity_lead_id"),
    sa.exists(sa.select(_ADDED_ACTIVITY.c.activity_id))).values(updated_at=positions.c.updated_at)


async def add_activity(session: AsyncSession, org_id: str, activity_id: str, lead_id: str, kind: str,
                       occurred_at: datetime, now: datetime) -> bool:
    """False when the activity is known already (the same activity under another event id). The lead's position
    is locked by this transaction (its row is written again on PostgreSQL when the activity is new)."""
    values = {"org_id": org_id, "activity_id": activity_id, "lead_id": lead_id, "kind": kind,
              "occurred_at": occurred_at, "received_at": now}
    if dialect_name(session) == "postgresql":
        result = await session.execute(_ADD_ACTIVITY_MOVING_POSITION, prefixed("activity", values))
    else:
        result = await session.execute(_ADD_ACTIVITY_SQLITE, values)
    return rows_affected(result) == 1


async def activities_of(session: AsyncSession, org_id: str, lead_id: str) -> list[Activity]:
    rows = await session.execute(_ACTIVITIES, {"org": org_id, "lead_id_": lead_id})
    return [Activity(kind=r.kind, occurred_at=r.occurred_at) for r in rows]


async def forget_activities(session: AsyncSession, org_id: str, lead_id: str) -> None:
    await session.execute(sa.delete(activities).where(activities.c.org_id == org_id, activities.c.lead_id == lead_id))


# ====================================================================== stage history
async def add_visit(session: AsyncSession, *, visit_id: str, org_id: str, lead_id: str, pipeline_id: str,
                    stage: StageRecord, now: datetime, reason: str, triggering_event_id: str | None,
                    moved_by: str | None, note: str | None, new_tasks: Sequence[TaskRecord] = ()) -> None:
    """The lead enters the stage: its next visit, numbered after those before, and the visit's new tasks; in one
    statement on PostgreSQL (SQLite has no INSERT inside a WITH: there, the tasks in a second one)."""
    visit = {f"new_{name}": value for name, value in {
        "id": visit_id, "org_id": org_id, "lead_id": lead_id, "pipeline_id": pipeline_id, "stage_id": stage.id,
        "stage_name": stage.name, "entered_at": now, "entry_reason": reason,
        "triggering_event_id": triggering_event_id, "moved_by": moved_by, "note": note}.items()}
    if not new_tasks or dialect_name(session) == "sqlite":
        await session.execute(_ADD_VISIT, visit)
        await add_tasks(session, new_tasks)
        return
    await session.execute(_ADD_VISIT_AND_TASKS, {
        **visit, **array_params("new_tasks", _TASK_COLUMNS, [row_values(task) for task in new_tasks])})


_TASK_COLUMNS = tuple(c.name for c in tasks.columns)
# PostgreSQL: `_ADD_VISIT` and the visit's tasks in one statement (the visit's insert in a WITH), the tasks passed
# as one array per column: the same statement, compiled once, whatever their number.
_ADD_VISIT_AND_TASKS = insert_from_arrays(tasks, "new_tasks", _TASK_COLUMNS).add_cte(_ADD_VISIT.cte("entered_visit"))


async def close_visit(session: AsyncSession, visit_id: str, exit_reason: str, now: datetime) -> None:
    await session.execute(sa.update(stage_history).where(stage_history.c.id == visit_id).values(
        exited_at=now, exit_reason=exit_reason))


_VISITS = sa.select(stage_history).where(
    stage_history.c.org_id == sa.bindparam("org_id"), stage_history.c.lead_id == sa.bindparam("lead_id"),
).order_by(stage_history.c.seq)


async def visits_of(session: AsyncSession, org_id: str, lead_id: str) -> list[StageVisit]:
    rows = await session.execute(_VISITS, {"org_id": org_id, "lead_id": lead_id})
    return records(StageVisit, rows.mappings())


async def forget_visit_notes(session: AsyncSession, org_id: str, lead_id: str) -> None:
    await session.execute(sa.update(stage_history).where(
        stage_history.c.org_id == org_id, stage_history.c.lead_id == lead_id).values(note=None))


# ====================================================================== tasks
async def add_tasks(session: AsyncSession, new_tasks: Sequence[TaskRecord]) -> None:
    """Insert the tasks, all in one statement."""
    if new_tasks:
        await session.execute(_ADD_TASKS, [row_values(task) for task in new_tasks])


async def get_task(session: AsyncSession, org_id: str, task_id: str, *, lock: bool = False) -> TaskRecord | None:
    query = sa.select(tasks).where(tasks.c.org_id == org_id, tasks.c.id == task_id)
    return first_record(TaskRecord, await session.execute(query.with_for_update() if lock else query))


async def required_task_statuses(session: AsyncSession, org_id: str, visit_id: str | None) -> list[str]:
    """The statuses of the required tasks of one stage visit."""
    rows = await session.execute(_REQUIRED_TASK_STATUSES, {"org": org_id, "visit": visit_id})
    return [r.status for r in rows]


async def lock_open_tasks(session: AsyncSession, org_id: str, lead_id: str, *, visit_id: str | None = None,
                          visit_only: bool = False, owner_tasks_only: bool = False) -> list[TaskRecord]:
    """The lead's open tasks, locked: of one stage visit (`visit_only`), or those following the owner
    (`owner_tasks_only`, oldest first)."""
    if owner_tasks_only and not visit_only:
        rows = await session.execute(_LOCK_OPEN_OWNER_TASKS, {"org": org_id, "lead_id_": lead_id})
        return records(TaskRecord, rows.mappings())
    query = sa.select(tasks).where(tasks.c.org_id == org_id, tasks.c.lead_id == lead_id, tasks.c.status == "open")
    if visit_only:
        query = query.where(tasks.c.visit_id == visit_id)
    if owner_tasks_only:
        query = query.where(tasks.c.assignee_kind == "owner").order_by(tasks.c.created_at, tasks.c.id)
    return records(TaskRecord, (await session.execute(query.with_for_update())).mappings())


_OPEN_TASKS = sa.select(tasks).where(
    tasks.c.org_id == sa.bindparam("org_id"), tasks.c.lead_id == sa.bindparam("lead_id"), tasks.c.status == "open",
).order_by(tasks.c.due_at, tasks.c.id)


async def open_tasks_of(session: AsyncSession, org_id: str, lead_id: str) -> list[TaskRecord]:
    """The lead's open tasks by due time."""
    rows = await session.execute(_OPEN_TASKS, {"org_id": org_id, "lead_id": lead_id})
    return records(TaskRecord, rows.mappings())


async def reassign_tasks(session: AsyncSession, reassigned: list[TaskRecord], *, assignee_kind: str,
                         assignee_id: str | None, team_id: str | None) -> None:
    """The tasks (their locked rows) go to another assignee, each at its next version, in one statement."""
    if reassigned:
        await session.execute(_REASSIGN_TASK, [
            {"task_id": task.id, "new_assignee_kind": assignee_kind, "new_assignee_id": assignee_id,
             "new_team_id": team_id, "new_version": task.version + 1} for task in reassigned])


async def skip_task(session: AsyncSession, task: TaskRecord, reason: str) -> None:
    await session.execute(sa.update(tasks).where(tasks.c.id == task.id).values(
        status="skipped", skip_reason=reason, version=task.version + 1))


async def complete_task(session: AsyncSession, task: TaskRecord, by: str, now: datetime) -> None:
    await session.execute(sa.update(tasks).where(tasks.c.id == task.id).values(
        status="done", completed_at=now, completed_by=by, version=task.version + 1))


async def tasks_page(session: AsyncSession, org_id: str, *, assignee_id: str | None, team_id: str | None,
                     status: str | None, lead_id: str | None, after: tuple[datetime, str] | None,
                     limit: int) -> list[TaskRecord]:
    """The org's tasks matching the filters given, by due time (overdue ones, the earliest, first);
    `limit` + 1 rows tell whether more follow."""
    query = sa.select(tasks).where(tasks.c.org_id == org_id)
    for column, value in ((tasks.c.assignee_id, assignee_id), (tasks.c.team_id, team_id),
                          (tasks.c.status, status), (tasks.c.lead_id, lead_id)):
        if value:
            query = query.where(column == value)
    if after:
        query = query.where(_after(tasks.c.due_at, tasks.c.id, after))
    rows = await session.execute(query.order_by(tasks.c.due_at, tasks.c.id).limit(limit + 1))
    return records(TaskRecord, rows.mappings())


async def claim_overdue_tasks(session: AsyncSession, now: datetime, limit: int) -> list[TaskRecord]:
    """Open tasks past due with no TaskOverdue yet, locked (SKIP LOCKED: replicas share them)."""
    rows = await session.execute(
        sa.select(tasks).where(tasks.c.status == "open", tasks.c.overdue_at.is_(None), tasks.c.due_at <= now)
        .order_by(tasks.c.due_at, tasks.c.id).limit(limit).with_for_update(skip_locked=True))
    return records(TaskRecord, rows.mappings())


async def mark_overdue(session: AsyncSession, task_id: str, now: datetime) -> bool:
    """False when the task was closed or marked meanwhile."""
    result = await session.execute(sa.update(tasks).where(
        tasks.c.id == task_id, tasks.c.overdue_at.is_(None), tasks.c.status == "open",
    ).values(overdue_at=now, version=tasks.c.version + 1))
    return rows_affected(result) == 1
