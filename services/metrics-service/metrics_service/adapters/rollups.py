"""The monthly rollups (m_closed_months, m_exit_months, …, ROLLUPS): kept by the projector, read by the reports.

Maintenance is a difference: before a batch is written, the rollup rows of the leads it touches are read
from m_leads / m_timeline (`contributions`), again after, and `after − before` is added per key; keys that
fall to zero are deleted. A lead's contribution only depends on its read-model rows, so the rollups equal a
GROUP BY over those tables whatever the batches, their order or a rebuild (`fill` computes that GROUP BY,
for a migration or a bulk load).

Reports read a period [from, to) as the whole months inside it from a rollup plus the rows of the partial
months at its edges from the read model (`edges`).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain import formulas
from ..domain.periods import month_number
from .orm import (
    among,
    built,
    event_log,
    m_closed_months,
    m_cohort_months,
    m_created_months,
    m_decided_months,
    m_exit_months,
    m_leads,
    m_reach_months,
    m_stay_months,
    m_timeline,
    m_won_months,
    tagged_union,
)
from .read_models import Timelines, copy_statements, timeline_branches
from .repository import CONNECTION_LOST, REPORT_CONNECTION

CHUNK = 400
EXIT_KINDS = ("stage", "won", "lost", "disqualified")
Contributions = dict[sa.Table, dict[tuple[Any, ...], list[Any]]]
ROLLUPS = (m_closed_months, m_exit_months, m_stay_months, m_cohort_months, m_created_months, m_reach_months,
           m_won_months, m_decided_months)
DURATION_COLUMNS = {"durations", "cycle_durations", "ask_durations"}
LIST_COLUMNS = {*DURATION_COLUMNS, "won_values"}  # multisets, kept sorted
PACKED_COLUMNS = DURATION_COLUMNS  # stored as packed doubles (`pack`)


def _by_org(leads: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for org, lead_id in sorted(set(leads)):
        out[org].append(lead_id)
    return out


def _key(value: str | None) -> str:
    return value or ""


LEAD_COLUMNS = ("closed_ts", "outcome", "credit_owner_id", "credit_team_id", "first_owner_id", "first_team_id",
                "pipeline_id", "won_value", "value", "created_ts", "first_owner_activity_ts", "pipeline_entered_ts",
                "max_position", "won_currency", "currency", "ask_entered_ts")
STAY_COLUMNS = ("lead_id", "at_ts", "next_ts", "owner_id", "team_id", "lead_pipeline_id", "cohort_ts", "pipeline_id",
                "stage_id", "position", "next_kind", "next_position", "next_reason", "tasks_done")
_COLUMN_TYPES = {**{name: m_leads.c[name].type for name in LEAD_COLUMNS},
                 **{name: m_timeline.c[name].type for name in STAY_COLUMNS}}


def _contributing_rows(with_erasures: bool, with_timelines: bool) -> sa.CompoundSelect:
    """PostgreSQL: what `contributions` reads of some leads of an org, in one round trip: their m_leads rows
    (source "lead") and their ended stays (m_timeline stage rows with a successor, source "stay"); and
    `with_erasures`, the leads among `erased_ids` whose LeadErased is logged (source "erased"); and
    `with_timelines`, the timelines of the leads among `timeline_ids` (read_models.timeline_branches)."""
    lead, t = m_leads.c, m_timeline.c
    org: Any = sa.bindparam("org_id")
    branches: dict[str, tuple[Any, ...]] = {
        "lead": ({"lead_id": lead.lead_id, **{name: lead[name] for name in LEAD_COLUMNS}}, lead.org_id == org,
                 among(lead.lead_id, "lead_ids", "postgresql")),
        "stay": ({name: t[name] for name in STAY_COLUMNS}, t.org_id == org,
                 among(t.lead_id, "lead_ids", "postgresql"), t.kind == "stage", t.next_ts.is_not(None))}
    if with_erasures:
        log = event_log.c
        branches["erased"] = ({"lead_id": log.subject_id}, log.org_id == org, log.event_type == "LeadErased",
                              among(log.subject_id, "erased_ids", "postgresql"))
    columns = dict(_COLUMN_TYPES)
    if with_timelines:
        timeline_columns, timeline_sources = timeline_branches("postgresql", "timeline_ids")
        columns = {**timeline_columns, **columns}
        branches.update(timeline_sources)
    return tagged_union(columns, branches)


def _copy_returning_contributing_rows() -> sa.CompoundSelect:
    """PostgreSQL: `read_models.copy_lead_attributes`' two updates (of the leads `lead_ids` of the org `org`),
    returning what `_contributing_rows` reads of those leads, as they are after the updates: the updated m_leads
    rows and the ended stays among the updated timeline rows (the update writes every row of the leads, so these
    are all of them). The copy is the last write of a batch to both tables, so this is the batch's "after" with
    no read of its own."""
    rows, leads_of_rows = copy_statements("postgresql")
    stays = rows.returning(*(m_timeline.c[name] for name in (*STAY_COLUMNS, "kind"))).cte("timeline_rows")
    leads = leads_of_rows.returning(*(m_leads.c[name] for name in LEAD_COLUMNS)).cte("lead_rows")
    return tagged_union(_COLUMN_TYPES, {
        "lead": ({name: leads.c[name] for name in LEAD_COLUMNS},),
        "stay": ({name: stays.c[name] for name in STAY_COLUMNS}, stays.c.kind == "stage",
                 stays.c.next_ts.is_not(None))})


# Built once: read before every projected batch (with the erasure check of the batch's leads, or without), and
# the copy that returns the "after".
_CONTRIBUTING_ROWS = {(with_erasures, with_timelines): _contributing_rows(with_erasures, with_timelines)
                      for with_erasures in (False, True) for with_timelines in (False, True)}
_COPY_RETURNING_CONTRIBUTING_ROWS = _copy_returning_contributing_rows()


class _Adder:
    """Contributions of leads, added up from their `_contributing_rows` (of one org at a time)."""

    def __init__(self) -> None:
        self.closed: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
        self.exits: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0])
        self.stays: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, []])
        self.cohorts: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, set(), []])
        self.created: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, []])
        self.reach: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0])
        self.won: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, []])
        self.decided: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, [], []])

    def add(self, org: str, rows: Sequence[Any]) -> None:
        closed, exits, stays, cohorts = self.closed, self.exits, self.stays, self.cohorts
        created, reach, won, decided = self.created, self.reach, self.won, self.decided
        for r in rows:
            if r.source != "lead":
                continue
            # closes are credited to the owner at the close, creation cohorts to the owner at creation
            lead_keys = (_key(r.credit_owner_id), _key(r.credit_team_id), _key(r.pipeline_id))
            first_keys = (_key(r.first_owner_id), _key(r.first_team_id), _key(r.pipeline_id))
            if r.outcome != "open" and r.closed_ts is not None:
                measures = closed[(org, month_number(r.closed_ts), *lead_keys, r.outcome)]
                measures[0] += 1
                value = r.won_value if r.won_value is not None else r.value
                measures[1] += Decimal(value) if value is not None else Decimal(0)
                if r.outcome == "won" and value is not None:
                    currency = r.won_currency if r.won_currency is not None else r.currency
                    measures = won[(org, month_number(r.closed_ts), *lead_keys, currency or "")]
                    measures[0] += 1
                    measures[1].append(Decimal(value))
            if r.outcome in ("won", "lost") and r.closed_ts is not None:
                measures = decided[(org, month_number(r.closed_ts), *lead_keys, r.outcome)]
                measures[0] += 1
                if r.outcome == "won" and r.created_ts is not None:
                    measures[1].append(r.closed_ts - r.created_ts)
                if r.ask_entered_ts is not None:
                    measures[2].append(r.closed_ts - r.ask_entered_ts)
            if r.created_ts is not None:  # leads nobody owned at creation too, as owner '' (production)
                measures = created[(org, month_number(r.created_ts), *first_keys)]
                measures[0] += 1
                if r.first_owner_activity_ts is not None:
                    measures[1].append(r.first_owner_activity_ts - r.created_ts)
            if r.pipeline_entered_ts is not None and r.max_position is not None and r.pipeline_id is not None:
                reach[(org, month_number(r.pipeline_entered_ts), *first_keys, r.max_position)][0] += 1
        for r in rows:
            if r.source != "stay":
                continue
            lead_keys = (_key(r.owner_id), _key(r.team_id), _key(r.lead_pipeline_id))
            if r.next_kind in EXIT_KINDS:
                measures = exits[(org, month_number(r.next_ts), *lead_keys)]
                measures[0] += 1
                measures[1] += int((r.next_kind == "stage" and r.next_reason == "goal_met") or bool(r.tasks_done)
                                   or r.next_kind == "won")
            duration = r.next_ts - r.at_ts
            measures = stays[(org, month_number(r.at_ts), *lead_keys, r.pipeline_id, r.stage_id, r.position)]
            measures[0] += 1
            measures[1] += int((r.next_kind == "stage" and r.next_position is not None
                                and r.next_position > r.position) or r.next_kind == "won")
            measures[2].append(duration)
            if r.cohort_ts is not None and r.pipeline_id == r.lead_pipeline_id:
                measures = cohorts[(org, month_number(r.cohort_ts), *lead_keys, r.stage_id)]
                measures[0] += 1
                if r.next_kind in ("lost", "disqualified"):
                    measures[1].add(r.lead_id)
                measures[2].append(duration)

    def result(self) -> Contributions:
        cohorts = {k: [n, len(dropped), durations] for k, (n, dropped, durations) in self.cohorts.items()}
        return {m_closed_months: self.closed, m_exit_months: self.exits, m_stay_months: self.stays,
                m_cohort_months: cohorts,
                m_created_months: self.created, m_reach_months: self.reach, m_won_months: self.won,
                m_decided_months: self.decided}


@dataclass(frozen=True)
class Before:
    """What `contributions` read of some leads before a batch is written."""

    contributions: Contributions
    erased: set[tuple[str, str]]  # the leads of `erased_among` whose LeadErased is logged
    settled: set[tuple[str, str]]  # the leads of `settle` whose contribution a new snapshot cannot change
    timelines: dict[str, Timelines]  # per org, the timelines of the leads of `timelines_of`


def snapshot_cannot_change(lead: Any) -> bool:
    """Whether a lead snapshot that is not its creation (a LeadUpdated) can change nothing this lead (its
    m_leads row, as `_contributing_rows` reads it) adds to the rollups. It writes the snapshot's columns and the
    creation time if none is stored (read_models.write_sources); of those the rollups read only the creation time
    and, of a closed lead, the value and currency."""
    return lead.created_ts is not None and (lead.outcome == "open" or lead.closed_ts is None)


async def contributions(session: AsyncSession, leads: Iterable[tuple[str, str]],
                        erased_among: set[tuple[str, str]] | None = None,
                        settle: set[tuple[str, str]] | None = None,
                        timelines_of: set[tuple[str, str]] | None = None) -> Before:
    """What these leads add to each rollup row now: {table: {key (org_id, month, owner, team, pipeline, …):
    [measures in column order]}}; a list measure is a multiset of durations, the others are sums. And, in the
    same round trips, which leads of `erased_among` have their LeadErased logged; and which leads of `settle`
    (touched by a new snapshot that is not a creation, and by nothing else) are settled: such a snapshot
    cannot change what they add (`snapshot_cannot_change`), so they are left out of the contributions (the
    caller leaves them out of the "after" too). And the timelines of the leads `timelines_of` (among `leads`), as
    read_models.timelines reads them."""
    erased: set[tuple[str, str]] = set()
    settled: set[tuple[str, str]] = set()
    timelines: dict[str, Timelines] = defaultdict(Timelines)
    adder = _Adder()
    per_org, to_check = _by_org(leads), _by_org(erased_among or ())
    for org in sorted(per_org.keys() | to_check.keys()):
        ids = per_org.get(org, [])
        for i in range(0, max(len(ids), 1), CHUNK):
            params: dict[str, Any] = {"org_id": org, "lead_ids": ids[i:i + CHUNK]}
            if erased_among is not None:  # (all with the first chunk: an array, of any length)
                params["erased_ids"] = to_check.get(org, []) if i == 0 else []
            if timelines_of is not None:
                params["timeline_ids"] = [lead_id for lead_id in params["lead_ids"] if (org, lead_id) in timelines_of]
            statement = _CONTRIBUTING_ROWS[erased_among is not None, timelines_of is not None]
            rows = (await session.execute(statement, params)).all()
            if timelines_of is not None:
                timelines[org].add(rows, params["timeline_ids"])
            erased.update((org, r.lead_id) for r in rows if r.source == "erased")
            if settle:
                now = {(org, r.lead_id) for r in rows if r.source == "lead" and (org, r.lead_id) in settle
                       and snapshot_cannot_change(r)}
                settled |= now
                rows = [r for r in rows if (org, r.lead_id) not in now]
            adder.add(org, rows)
    return Before(adder.result(), erased, settled, timelines)


async def copy_lead_attributes_and_contributions(session: AsyncSession, leads: set[tuple[str, str]]
                                                 ) -> Contributions:
    """PostgreSQL: `read_models.copy_lead_attributes` of these leads (for both of its sets: see there), and what
    the leads add to each rollup row once it is done (`contributions`), in one statement per chunk of leads."""
    adder = _Adder()
    for org, ids in _by_org(leads).items():
        for i in range(0, len(ids), CHUNK):
            adder.add(org, (await session.execute(_COPY_RETURNING_CONTRIBUTING_ROWS,
                                                  {"org": org, "lead_ids": ids[i:i + CHUNK]})).all())
    return adder.result()


def _key_columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


async def add_difference(session: AsyncSession, before: Contributions, after: Contributions) -> None:
    """Add `after − before` to the rollups and delete the rows that fall to zero."""
    for table, new in after.items():
        old = before[table]
        key_columns = _key_columns(table)
        measure_columns = [c.name for c in table.columns if c.name not in key_columns]
        changed = sorted(k for k in set(old) | set(new) if _multiset(old.get(k)) != _multiset(new.get(k)))
        if not changed:
            continue
        if set(measure_columns) & LIST_COLUMNS:
            # Keys whose multisets neither lose nor gain a value (e.g. a lead with no first response moving
            # from one owner's month to another's) only change counts: added without reading the rows.
            lists = [i for i, c in enumerate(measure_columns) if c in LIST_COLUMNS]
            counts_only = [k for k in changed
                           if not any(m is not None and m[i] for m in (old.get(k), new.get(k)) for i in lists)]
            others = [k for k in changed if k not in set(counts_only)]
            if others:
                await _replace_rows(session, table, key_columns, measure_columns, others, old, new)
            await _add_counts(session, table, key_columns, measure_columns, counts_only, old, new)
            continue
        await _add_counts(session, table, key_columns, measure_columns, changed, old, new)


async def _add_counts(session: AsyncSession, table: sa.Table, key_columns: list[str], measure_columns: list[str],
                      keys: list[tuple[Any, ...]], old: dict[tuple[Any, ...], list[Any]],
                      new: dict[tuple[Any, ...], list[Any]]) -> None:
    """Add `new − old` of the keys' sums to the rollup rows (a new row starts from zero, with empty multisets:
    the keys given change no multiset) and delete the rows that fall to zero."""
    if not keys:
        return
    summed = [(i, c) for i, c in enumerate(measure_columns) if c not in LIST_COLUMNS]
    empty = {c: pack([]) if c in PACKED_COLUMNS else [] for c in measure_columns if c in LIST_COLUMNS}
    zero = [0] * len(measure_columns)
    rows = [{**dict(zip(key_columns, key, strict=True)), **empty,
             **{c: new.get(key, zero)[i] - old.get(key, zero)[i] for i, c in summed}}
            for key in keys]  # sorted keys: a stable lock order between batches
    def build() -> Any:
        insert = postgresql.insert(table)
        # RETURNING each row's first measure (stays, leads…) after the addition: only rows that fell to zero
        # are deleted, and most batches only add, so most need no DELETE at all.
        return insert.on_conflict_do_update(index_elements=key_columns, set_={
            c: table.c[c] + insert.excluded[c] for _, c in summed}).returning(
            *(table.c[c] for c in key_columns), table.c[measure_columns[0]])
    insert = built(("add_counts", table.name), build)
    emptied: list[tuple[Any, ...]] = []
    for i in range(0, len(rows), CHUNK):
        emptied.extend(tuple(r[:-1]) for r in await session.execute(insert, rows[i:i + CHUNK]) if r[-1] == 0)
    if emptied:
        source, match, params = _key_set(table, key_columns, sorted(emptied))
        await session.execute(sa.text(f'DELETE FROM {table.name} t USING {source} WHERE {match} '
                                      f'AND t."{measure_columns[0]}" = 0'), params)


def _key_set(table: sa.Table, key_columns: list[str], keys: list[tuple[Any, ...]]
             ) -> tuple[str, str, dict[str, list[Any]]]:
    """The keys as a set-returning unnest of one array per column (one statement, joined on the primary key,
    where a row-value IN list would be planned as one OR branch per key): (source, join condition, params)."""
    params = {f"k{i}": [key[i] for key in keys] for i in range(len(key_columns))}
    types = ["INTEGER" if isinstance(table.c[c].type, sa.Integer) else "TEXT" for c in key_columns]
    names = ", ".join(f'"{c}"' for c in key_columns)
    source = f"unnest({', '.join(f'CAST(:k{i} AS {t}[])' for i, t in enumerate(types))}) AS k({names})"
    return source, " AND ".join(f't."{c}" = k."{c}"' for c in key_columns), params


def _multiset(measures: list[Any] | None) -> list[Any] | None:
    return None if measures is None else [sorted(m) if isinstance(m, list) else m for m in measures]


async def _replace_rows(session: AsyncSession, table: sa.Table, key_columns: list[str], measure_columns: list[str],
                        keys: list[tuple[Any, ...]], old: dict[tuple[Any, ...], list[Any]],
                        new: dict[tuple[Any, ...], list[Any]]) -> None:
    """Rollups with a durations multiset: read the rows, take the old contribution out and put the new one
    in (sums and multiset), write them back sorted; a row left with no stay is deleted."""
    source, match, params = _key_set(table, key_columns, keys)
    columns = ", ".join(f't."{c.name}"' for c in table.columns)
    current: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in await session.execute(sa.text(f"SELECT {columns} FROM {table.name} t JOIN {source} ON {match}"), params):
        row = dict(r._mapping)
        current[tuple(row[c] for c in key_columns)] = row
        row.update({c: unpack(row[c]) for c in PACKED_COLUMNS & row.keys()})
    rows, emptied = [], []
    for key in keys:
        row = current.get(key) or {**dict(zip(key_columns, key, strict=True)),
                                   **{c: [] if c in LIST_COLUMNS else 0 for c in measure_columns}}
        gone, came = old.get(key), new.get(key)
        for index, column in enumerate(measure_columns):
            if column in LIST_COLUMNS:
                values = Counter(row[column])
                values.subtract(Counter(gone[index]) if gone else Counter())
                values.update(came[index] if came else [])
                row[column] = sorted(values.elements())
            else:
                row[column] += (came[index] if came else 0) - (gone[index] if gone else 0)
        if row[measure_columns[0]]:  # stays / leads
            rows.append({**row, **{c: pack(row[c]) for c in PACKED_COLUMNS & row.keys()}})
        elif key in current:
            emptied.append(key)
    def build() -> Any:
        upsert = postgresql.insert(table)
        return upsert.on_conflict_do_update(index_elements=key_columns,
                                            set_={c: upsert.excluded[c] for c in measure_columns})
    upsert = built(("replace_rows", table.name), build)
    for i in range(0, len(rows), CHUNK):
        await session.execute(upsert, rows[i:i + CHUNK])
    if emptied:
        source, match, params = _key_set(table, key_columns, emptied)
        await session.execute(sa.text(f"DELETE FROM {table.name} t USING {source} WHERE {match}"), params)


def _month_sql(column: str) -> str:
    """periods.month_number in PostgreSQL."""
    moment = f"(to_timestamp(floor({column})) AT TIME ZONE 'UTC')"
    return f"CAST(EXTRACT(YEAR FROM {moment}) * 12 + EXTRACT(MONTH FROM {moment}) - 1 AS INTEGER)"


def fill_sql(org_condition: str) -> list[str]:
    """PostgreSQL: INSERT … SELECT statements computing the count rollups from m_leads and m_timeline,
    for the rows matching `org_condition` (e.g. " AND org_id = :org", or "" for all)."""
    return [f"""
INSERT INTO m_closed_months (org_id, month, owner_id, team_id, pipeline_id, outcome, leads, value)
SELECT org_id, {_month_sql('closed_ts')}, COALESCE(credit_owner_id, ''), COALESCE(credit_team_id, ''),
       COALESCE(pipeline_id, ''), outcome, COUNT(*), SUM(COALESCE(won_value, value, 0))
FROM m_leads WHERE outcome <> 'open' AND closed_ts IS NOT NULL{org_condition} GROUP BY 1, 2, 3, 4, 5, 6""", f"""
INSERT INTO m_exit_months (org_id, month, owner_id, team_id, pipeline_id, exits, compliant)
SELECT org_id, {_month_sql('next_ts')}, COALESCE(owner_id, ''), COALESCE(team_id, ''),
       COALESCE(lead_pipeline_id, ''), COUNT(*),
       SUM(CASE WHEN (next_kind = 'stage' AND next_reason = 'goal_met') OR tasks_done OR next_kind = 'won' THEN 1
                ELSE 0 END)
FROM m_timeline WHERE kind = 'stage' AND next_ts IS NOT NULL
  AND next_kind IN ('stage', 'won', 'lost', 'disqualified'){org_condition} GROUP BY 1, 2, 3, 4, 5"""]


def fill_durations_sql(org_condition: str, values: tuple[str, str] | None = None) -> list[str]:
    """PostgreSQL: INSERT … SELECT statements computing the duration rollups of stays from m_timeline;
    `values`: how the durations are aggregated (PACKED_VALUES, or SORTED_ARRAY before revision 0013)."""
    aggregate, _ = values or PACKED_VALUES
    stays = f"""
SELECT org_id, lead_id, at_ts, cohort_ts, next_ts - at_ts AS x, COALESCE(owner_id, '') AS owner,
       COALESCE(team_id, '') AS team, COALESCE(lead_pipeline_id, '') AS lead_pipeline, pipeline_id, stage_id,
       position, next_kind, next_position
FROM m_timeline WHERE kind = 'stage' AND next_ts IS NOT NULL{org_condition}"""
    return [f"""
INSERT INTO m_stay_months (org_id, month, owner_id, team_id, pipeline_id, stage_pipeline_id, stage_id, position,
                           stays, converted, durations)
SELECT org_id, {_month_sql('at_ts')}, owner, team, lead_pipeline, pipeline_id, stage_id, position,
       COUNT(*), SUM(CASE WHEN (next_kind = 'stage' AND next_position > position) OR next_kind = 'won' THEN 1
                          ELSE 0 END), {aggregate.format('x')}
FROM ({stays}) s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8""", f"""
INSERT INTO m_cohort_months (org_id, month, owner_id, team_id, pipeline_id, stage_id, stays, dropped_leads,
                             durations)
SELECT org_id, {_month_sql('cohort_ts')}, owner, team, lead_pipeline, stage_id, COUNT(*),
       COUNT(DISTINCT CASE WHEN next_kind IN ('lost', 'disqualified') THEN lead_id END),
       {aggregate.format('x')}
FROM ({stays}) s WHERE cohort_ts IS NOT NULL AND pipeline_id = lead_pipeline GROUP BY 1, 2, 3, 4, 5, 6"""]


def fill_lead_sql(org_condition: str, values: tuple[str, str] | None = None) -> list[str]:
    """PostgreSQL: INSERT … SELECT statements computing the lead rollups (creation, reach) from m_leads
    (`values` as in fill_durations_sql)."""
    aggregate, empty = values or PACKED_VALUES
    return [f"""
INSERT INTO m_created_months (org_id, month, owner_id, team_id, pipeline_id, leads, durations)
SELECT org_id, {_month_sql('created_ts')}, COALESCE(first_owner_id, ''), COALESCE(first_team_id, ''),
       COALESCE(pipeline_id, ''), COUNT(*), COALESCE({aggregate.format('first_owner_activity_ts - created_ts')}
                                                     FILTER (WHERE first_owner_activity_ts IS NOT NULL), {empty})
FROM m_leads WHERE created_ts IS NOT NULL{org_condition} GROUP BY 1, 2, 3, 4, 5""", f"""
INSERT INTO m_reach_months (org_id, month, owner_id, team_id, pipeline_id, max_position, leads)
SELECT org_id, {_month_sql('pipeline_entered_ts')}, COALESCE(first_owner_id, ''), COALESCE(first_team_id, ''),
       pipeline_id, max_position, COUNT(*)
FROM m_leads
WHERE pipeline_entered_ts IS NOT NULL AND max_position IS NOT NULL AND pipeline_id IS NOT NULL{org_condition}
GROUP BY 1, 2, 3, 4, 5, 6"""]


def fill_won_sql(org_condition: str) -> list[str]:
    """PostgreSQL: the INSERT … SELECT computing m_won_months from m_leads."""
    return [f"""
INSERT INTO m_won_months (org_id, month, owner_id, team_id, pipeline_id, currency, deals, won_values)
SELECT org_id, {_month_sql('closed_ts')}, COALESCE(credit_owner_id, ''), COALESCE(credit_team_id, ''),
       COALESCE(pipeline_id, ''), COALESCE(won_currency, currency, ''), COUNT(*),
       array_agg(COALESCE(won_value, value) ORDER BY COALESCE(won_value, value))
FROM m_leads WHERE outcome = 'won' AND closed_ts IS NOT NULL AND COALESCE(won_value, value) IS NOT NULL{org_condition}
GROUP BY 1, 2, 3, 4, 5, 6"""]


def fill_decided_sql(org_condition: str) -> list[str]:
    """PostgreSQL: the INSERT … SELECT computing m_decided_months from m_leads."""
    aggregate, empty = PACKED_VALUES
    cycle, ask = "closed_ts - created_ts", "closed_ts - ask_entered_ts"
    return [f"""
INSERT INTO m_decided_months (org_id, month, owner_id, team_id, pipeline_id, outcome, leads, cycle_durations,
                              ask_durations)
SELECT org_id, {_month_sql('closed_ts')}, COALESCE(credit_owner_id, ''), COALESCE(credit_team_id, ''),
       COALESCE(pipeline_id, ''), outcome, COUNT(*),
       COALESCE({aggregate.format(cycle)} FILTER (WHERE outcome = 'won' AND created_ts IS NOT NULL), {empty}),
       COALESCE({aggregate.format(ask)} FILTER (WHERE ask_entered_ts IS NOT NULL), {empty})
FROM m_leads WHERE outcome IN ('won', 'lost') AND closed_ts IS NOT NULL{org_condition} GROUP BY 1, 2, 3, 4, 5, 6"""]


def all_fill_sql(org_condition: str) -> list[str]:
    return [*fill_sql(org_condition), *fill_durations_sql(org_condition), *fill_lead_sql(org_condition),
            *fill_won_sql(org_condition), *fill_decided_sql(org_condition)]


async def fill(session: AsyncSession, org_id: str) -> None:
    """Recompute the rollups of one org from its read models (PostgreSQL; after a bulk load of them)."""
    for table in ROLLUPS:
        await session.execute(sa.delete(table).where(table.c.org_id == org_id))
    for statement in all_fill_sql(" AND org_id = :org"):
        await session.execute(sa.text(statement), {"org": org_id})





async def duration_rows(session: AsyncSession, table: sa.Table, columns: list[str], org_id: str,
                        months: tuple[int | None, int | None], *, pipeline_id: str | None = None,
                        owner_id: str | None = None) -> list[Any]:
    """PostgreSQL: the rows (records, in `columns` order) of a duration rollup for the org's months [first, end),
    optionally of one pipeline / owner; packed durations come as bytes for `merged`.
    Fetched by the driver directly: a quarter is some 10,000 rows, and SQLAlchemy's per-row result
    processing would cost more than the query."""
    where, args = _rollup_where(org_id, months, pipeline_id, owner_id)
    return await fetch_records(session, f"SELECT {', '.join(columns)} FROM {table.name} m WHERE {where}", args)


async def grouped_duration_rows(session: AsyncSession, table: sa.Table, groups: list[str], sums: list[str],
                                org_id: str, months: tuple[int | None, int | None], *, pipeline_id: str | None = None,
                                owner_id: str | None = None, packed: tuple[str, ...] = ("durations",)) -> list[Any]:
    """PostgreSQL: `duration_rows` added up per `groups` (SQL expressions on the rollup `m`) in the database:
    records of the groups, then the `sums` columns summed, each `packed` column of the group's rows joined into
    one bytes value (ascending runs one after another) and `runs`, how many rows were joined (for `merged`).
    Some 20 to 4,500 groups a quarter at 1M leads instead of ~13,500 rows, each a Python loop step."""
    where, args = _rollup_where(org_id, months, pipeline_id, owner_id)
    keys = ", ".join(str(i + 1) for i in range(len(groups)))
    measures = "".join(f", SUM({column}) AS {column.removeprefix('m.')}" for column in sums)
    joined = "".join(f", string_agg(m.{column}, ''::bytea) AS {column}" for column in packed)
    return await fetch_records(session, f"SELECT {', '.join(groups)}{measures}{joined}, COUNT(*) AS runs "
                                        f"FROM {table.name} m WHERE {where} GROUP BY {keys}", args)


async def fetch_records(session: AsyncSession, sql: str, args: Sequence[object]) -> list[Any]:
    """PostgreSQL: the records of `sql` (the driver's $1, $2, … for `args`) from the session's connection, fetched
    by the driver directly (see duration_rows; the reports' `fetch`)."""
    driver = session.info.get(REPORT_CONNECTION)  # while a report reads (repository.report_reads)
    if driver is None:
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        assert driver is not None, "a connection checked out of the pool is open"
    try:
        rows: list[Any] = await driver.fetch(sql, *args)
    except CONNECTION_LOST as lost:
        raise ConnectionError(f"the database connection was lost: {lost}") from lost
    return rows


def _rollup_where(org_id: str, months: tuple[int | None, int | None], pipeline_id: str | None,
                  owner_id: str | None) -> tuple[str, list[str | int]]:
    """The condition on a rollup `m` for the org's months [first, end), optionally of one pipeline / owner,
    with its arguments ($1, $2, …)."""
    where: list[str] = ["m.org_id = $1"]
    args: list[str | int] = [org_id]
    for condition, value in (("m.month >= ${}", months[0]), ("m.month < ${}", months[1]),
                             ("m.pipeline_id = ${}", pipeline_id), ("m.owner_id = ${}", owner_id)):
        if value is not None:
            args.append(value)
            where.append(condition.format(len(args)))
    return " AND ".join(where), args


# Packed durations: the values in ascending order as big-endian IEEE doubles, one after another. PostgreSQL
# writes them with float8send (the same bytes), numpy reads them as they come: a group's rows are joined as
# bytes and read in one go, with no Python float and no numpy call per stay (a quarter is ~500k stays in ~13.5k
# rows at 1M leads).
PACKED = np.dtype(">f8")
# (aggregate of the ascending values of {0}, the value for none) in SQL: packed, and as the float8[] the
# columns were before revision 0013 (for the earlier revisions that fill them)
PACKED_VALUES = ("string_agg(float8send({0}), ''::bytea ORDER BY {0})", "''::bytea")
SORTED_ARRAY = ("array_agg({0} ORDER BY {0})", "'{}'")


def pack(values: list[float]) -> bytes:
    """Ascending values as stored in a packed column."""
    return np.array(sorted(values), dtype=PACKED).tobytes()


def unpack(packed: bytes) -> list[float]:
    values: list[float] = np.frombuffer(packed, dtype=PACKED).tolist()
    return values


def merged(packed: list[bytes], runs: int | None = None) -> np.ndarray:
    """The values of packed rows (each an ascending run; `runs` of them in all when a value holds several, as
    grouped_duration_rows joins them, else one per value) as one ascending float64 array."""
    values = np.frombuffer(b"".join(packed), dtype=PACKED).astype(np.float64)
    return values if (len(packed) if runs is None else runs) == 1 else np.sort(values)


def median_and_p75(ordered: np.ndarray) -> tuple[float | None, float | None]:
    """PostgreSQL's percentile_cont(0.5) and percentile_disc(0.75) (nearest rank) of ascending values, as
    Python floats (the same IEEE arithmetic as the SQL aggregates)."""
    median, p75 = formulas.percentile_cont(ordered, 0.5), formulas.nearest_rank(ordered, 75, presorted=True)
    return (None if median is None else float(median)), (None if p75 is None else float(p75))
