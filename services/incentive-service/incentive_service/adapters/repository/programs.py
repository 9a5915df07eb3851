"""Queries of incentive programs: programs, the facts they score, contributions, tallies, awards and flags.

Returns domain objects (Fact, Contribution, Tally) or the dataclasses below; no business rules here. The
statements a busy program runs for every batch of events are set-based on PostgreSQL (arrays unnested: one
statement text whatever the batch size, so each is prepared once per connection); SQLite, the embedded mode,
runs the same operations row by row.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected
from salesflow_shared.inbox import dialect_insert, dialect_name, per_dialect

from ...domain.programs.rewards import CashReward
from ...domain.programs.scoring import Contribution, Fact
from ...domain.programs.standings import Tally
from ..orm import payees
from ..program_codec import as_time, fact_from_row, fact_to_json
from ..programs_orm import (
    program_awards,
    program_contributions,
    program_facts,
    program_flags,
    program_leads,
    program_participants,
    program_scores,
    programs,
)
from . import locked_prior
from .sources import chunks

Row = dict[str, Any]

# PostgreSQL: each commit that changed a program's tallies notifies this channel with the program id (delivered
# at commit, in commit order), so live leaderboard streams in every replica read the board at once.
SCORES_CHANNEL = "incentive_program_scores"


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind is None or session.bind.dialect.name != "sqlite"


def _among(session: AsyncSession, column: Any, values: Iterable[str]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(array)`: one statement text whatever the number of values,
    so it is prepared once per connection rather than once per batch size."""
    if _is_postgres(session):
        return column == sa.any_(sa.literal(list(values), ARRAY(sa.String)))
    return column.in_(list(values))


def _as_arrays(columns: dict[str, str], rows: list[Row]) -> dict[str, list[Any]]:
    return {c: [json.dumps(r[c]) if t == "json" else r[c] for r in rows] for c, t in columns.items()}


# ====================================================================== programs


async def insert_program(session: AsyncSession, row: Row, participants: Sequence[str]) -> None:
    await session.execute(sa.insert(programs).values(**row))
    await session.execute(sa.insert(program_participants), [
        {"org_id": row["org_id"], "participant": p, "program_id": row["program_id"]} for p in participants])


async def get_program(session: AsyncSession, org_id: str, program_id: str, *, lock: bool = False) -> Row | None:
    query = sa.select(programs).where(programs.c.org_id == org_id, programs.c.program_id == program_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row else None


async def update_program(session: AsyncSession, org_id: str, program_id: str, *, only_if_status: str | None = None,
                         **values: Any) -> None:
    query = sa.update(programs).where(programs.c.org_id == org_id, programs.c.program_id == program_id)
    if only_if_status is not None:
        query = query.where(programs.c.status == only_if_status)
    await session.execute(query.values(**values))


async def running_programs(session: AsyncSession, org_id: str) -> list[Row]:
    rows = (await session.execute(sa.select(programs).where(
        programs.c.org_id == org_id, programs.c.status == "running")
        .order_by(programs.c.program_id))).mappings().all()  # one order: their scores are locked in it
    return [dict(r) for r in rows]


async def due_programs(session: AsyncSession, now: datetime, limit: int) -> list[Row]:
    """Running programs whose period is over, locked (those another finisher holds are skipped)."""
    rows = (await session.execute(sa.select(programs).where(
        programs.c.status == "running", programs.c.ends_at <= now).order_by(programs.c.ends_at).limit(limit)
        .with_for_update(skip_locked=True))).mappings().all()
    return [dict(r) for r in rows]


async def list_programs(session: AsyncSession, org_id: str, *, status: str | None, participant: str | None,
                        after: tuple[datetime, str] | None, limit: int) -> list[Row]:
    """A page of the org's programs, newest first; with `participant`, only the shown (not hidden, started)
    programs they take part in."""
    query = sa.select(programs).where(programs.c.org_id == org_id)
    if status:
        query = query.where(programs.c.status == status)
    if participant is not None:
        query = query.where(programs.c.hidden.is_(False), programs.c.status != "draft", programs.c.program_id.in_(
            sa.select(program_participants.c.program_id).where(
                program_participants.c.org_id == org_id, program_participants.c.participant == participant)))
    if after is not None:
        at, program_id = after
        query = query.where(sa.or_(programs.c.created_at < at, sa.and_(programs.c.created_at == at,
                                                                       programs.c.program_id < program_id)))
    rows = (await session.execute(query.order_by(programs.c.created_at.desc(), programs.c.program_id.desc())
                                  .limit(limit))).mappings().all()
    return [dict(r) for r in rows]


async def payee_names(session: AsyncSession, org_id: str) -> dict[str, str]:
    rows = (await session.execute(sa.select(payees.c.participant_id, payees.c.name).where(
        payees.c.org_id == org_id))).all()
    return {r[0]: r[1] for r in rows if r[1]}


# ====================================================================== leads and facts


def _lead_lock_key(org_id: str, lead_id: str) -> int:
    """A lead's advisory lock key (64 bits of a digest; two leads sharing one only wait for each other)."""
    digest = hashlib.blake2b(f"program-lead:{org_id}:{lead_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The same statement also makes the rest of the scoring transaction plan each statement for its values
# (plan_cache_mode, until the transaction ends). PostgreSQL otherwise settles, after five executions of a
# prepared statement, on a generic plan made from the table's statistics; a table that grew since it was
# last analysed (a new program's first minutes: from nothing to thousands of rows in as many seconds) looks
# empty to it, and the plan it keeps scans the whole table for each lead (~0.7 s a batch at 15,000
# contributions, growing). A plan per execution costs well under a millisecond and sees the table's size.
_LOCK_LEADS = sa.text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                      "count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS u(k)")


async def lock_leads_for_scoring(session: AsyncSession, org_id: str, lead_ids: Iterable[str]) -> None:
    """Hold the leads until the transaction ends, so two facts of one lead are scored one after the other (the
    second seeing the first). PostgreSQL: transaction-level advisory locks in one statement, in key order
    (unnest hands them over in array order) in every transaction so two never deadlock. SQLite has one writer
    at a time, and a consumer's transaction is the writer from its first statement (the inbox row): nothing to
    take."""
    if _is_postgres(session):
        keys = sorted({_lead_lock_key(org_id, lead_id) for lead_id in lead_ids})
        await session.execute(_LOCK_LEADS, {"keys": keys})


_LEAD_KEY = (program_leads.c.org_id == sa.bindparam("org")) & (program_leads.c.lead_id == sa.bindparam("lead"))
_LOCK_LEAD = sa.select(program_leads).where(_LEAD_KEY).with_for_update()
_ADD_LEAD = per_dialect(lambda insert: insert(program_leads).values(
    org_id=sa.bindparam("org"), lead_id=sa.bindparam("lead"), lead_version=sa.bindparam("new_lead_version"),
    owner_id=sa.bindparam("new_owner_id"), expected_close_date=sa.bindparam("new_expected_close_date"),
).on_conflict_do_nothing(index_elements=["org_id", "lead_id"]).returning(program_leads.c.lead_id))
_UPDATE_LEAD = sa.update(program_leads).where(_LEAD_KEY).values(
    lead_version=sa.bindparam("new_lead_version"), owner_id=sa.bindparam("new_owner_id"),
    expected_close_date=sa.bindparam("new_expected_close_date"))


# The same over a known lead's older snapshot only, in one statement (PostgreSQL): the row as it was
# (`locked_prior`) is RETURNED. No row: nothing written.
_PRIOR_LEAD = locked_prior(program_leads, "prior_lead")
_UPDATE_NEWER_LEAD = _UPDATE_LEAD.where(
    program_leads.c.org_id == _PRIOR_LEAD.c.org_id, program_leads.c.lead_id == _PRIOR_LEAD.c.lead_id,
    program_leads.c.lead_version < sa.bindparam("newer_than")).returning(*_PRIOR_LEAD.c)


def _lead_values(org_id: str, lead_id: str, lead_version: int, owner_id: str | None,
                 close_date: date | None) -> dict[str, Any]:
    return {"org": org_id, "lead": lead_id, "new_lead_version": lead_version, "new_owner_id": owner_id,
            "new_expected_close_date": close_date}


async def add_lead_snapshot(session: AsyncSession, org_id: str, lead_id: str, *, lead_version: int,
                            owner_id: str | None, close_date: date | None) -> bool:
    """The lead's close-date row with these values, if it has none yet (then True: the insert holds it)."""
    inserted = await session.execute(_ADD_LEAD[dialect_name(session)],
                                     _lead_values(org_id, lead_id, lead_version, owner_id, close_date))
    return inserted.first() is not None


async def lock_lead_snapshot(session: AsyncSession, org_id: str, lead_id: str) -> Row | None:
    """The lead's close-date row, locked; None when it has none."""
    row = (await session.execute(_LOCK_LEAD, {"org": org_id, "lead": lead_id})).mappings().first()
    return None if row is None else dict(row)


async def update_lead_snapshot(session: AsyncSession, org_id: str, lead_id: str, *, lead_version: int,
                               owner_id: str | None, close_date: date | None) -> None:
    await session.execute(_UPDATE_LEAD, _lead_values(org_id, lead_id, lead_version, owner_id, close_date))


async def update_newer_lead_snapshot(session: AsyncSession, org_id: str, lead_id: str, *, lead_version: int,
                                     owner_id: str | None, close_date: date | None) -> Row | None:
    """`lock_lead_snapshot` and `update_lead_snapshot` in one statement when the lead's row holds an older
    snapshot: the row as it was before. None (and nothing written) for a lead without a row or whose row holds
    this snapshot or a newer one, and always on SQLite, whose UPDATE ... FROM cannot return the row it joined."""
    if not _is_postgres(session):
        return None
    row = (await session.execute(_UPDATE_NEWER_LEAD, {
        **_lead_values(org_id, lead_id, lead_version, owner_id, close_date), "newer_than": lead_version}
    )).mappings().first()
    return None if row is None else dict(row)


async def insert_flag(session: AsyncSession, org_id: str, program_id: str, *, lead_id: str, changed_at: datetime,
                      rep_id: str | None, kind: str, reason: str) -> None:
    await session.execute(dialect_insert(session)(program_flags).values(
        org_id=org_id, program_id=program_id, lead_id=lead_id, changed_at=changed_at, rep_id=rep_id, kind=kind,
        reason=reason).on_conflict_do_nothing(index_elements=["program_id", "lead_id", "changed_at"]))


@dataclass(frozen=True)
class NewFacts:
    """What `add_facts` kept: the keys that were new, every fact of the leads they belong to, and (when a key was
    new) the org's running programs that score them, in program order (their tallies are locked in it)."""

    keys: set[str]
    by_lead: dict[str, list[Fact]]
    programs: list[Row]


_FACT_COLUMNS = {"fact_key": "text", "lead_id": "text", "kind": "text", "at": "timestamptz", "fact": "json"}
# One round trip: the new facts inserted, the earlier facts of their leads read (the SELECT runs on the snapshot
# from before the INSERT, so each fact comes back once; the new ones without their JSON, which the caller has),
# and, when a fact was new, the org's running programs, as `running_programs` would read them right after (only
# what scoring reads of a program: its org, id, version, whether hidden and its definition). Each lead's facts
# are looked up by the lead index (`_EACH_LEAD`).
_ADD_FACTS = sa.text(
    "WITH added AS (INSERT INTO program_facts (org_id, fact_key, lead_id, kind, at, fact) "
    "SELECT :org_id, u.fact_key, u.lead_id, u.kind, u.at, u.fact::json FROM unnest(CAST(:fact_key AS text[]), "
    "CAST(:lead_id AS text[]), CAST(:kind AS text[]), CAST(:at AS timestamptz[]), CAST(:fact AS text[])) "
    "AS u(fact_key, lead_id, kind, at, fact) ON CONFLICT (org_id, fact_key) DO NOTHING RETURNING fact_key, lead_id) "
    "SELECT fact_key, lead_id, NULL AS kind, NULL::timestamptz AS at, NULL::json AS fact, NULL AS program_id, "
    "NULL::integer AS version, NULL::boolean AS hidden, NULL::json AS definition FROM added "
    "UNION ALL SELECT f.fact_key, f.lead_id, f.kind, f.at, f.fact, NULL, NULL, NULL, NULL "
    "FROM (SELECT DISTINCT lead_id FROM added) AS l "
    "CROSS JOIN LATERAL (SELECT * FROM program_facts AS f WHERE f.org_id = :org_id AND f.lead_id = l.lead_id "
    "OFFSET 0) AS f "
    "UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, p.program_id, p.version, p.hidden, p.definition "
    "FROM programs AS p WHERE p.org_id = :org_id AND p.status = 'running' AND EXISTS (SELECT FROM added)")


async def add_facts(session: AsyncSession, org_id: str, facts: Sequence[Fact]) -> NewFacts:
    """Keep the facts not known yet (by key); the new keys, all facts of their leads and, when a key was new,
    the org's running programs. The caller holds the leads (`lock_leads_for_scoring`), so no other transaction
    adds facts to them meanwhile."""
    given = {f.key: f for f in facts}
    rows = [{"fact_key": f.key, "lead_id": f.lead_id, "kind": f.kind, "at": f.at, "fact": fact_to_json(f)}
            for f in given.values()]
    by_lead: dict[str, list[Fact]] = defaultdict(list)
    if _is_postgres(session):
        keys: set[str] = set()
        running: list[Row] = []
        for r in (await session.execute(_ADD_FACTS, {"org_id": org_id, **_as_arrays(_FACT_COLUMNS, rows)}))\
                .mappings():
            if r["program_id"] is not None:
                running.append({"org_id": org_id, "program_id": r["program_id"], "version": r["version"],
                                "hidden": r["hidden"], "definition": r["definition"]})
            elif r["kind"] is None:
                keys.add(r["fact_key"])
                by_lead[r["lead_id"]].append(given[r["fact_key"]])
            else:
                by_lead[r["lead_id"]].append(fact_from_row(r))
        return NewFacts(keys, dict(by_lead), sorted(running, key=lambda p: p["program_id"]))
    inserted = await session.execute(sqlite.insert(program_facts).on_conflict_do_nothing(
        index_elements=["org_id", "fact_key"]).returning(program_facts.c.fact_key),
        [{"org_id": org_id, **r} for r in rows])
    keys = set(inserted.scalars().all())
    leads = sorted({given[k].lead_id for k in keys})
    if leads:
        by_lead.update(await facts_of_leads(session, org_id, leads))
    return NewFacts(keys, dict(by_lead), await running_programs(session, org_id) if keys else [])


async def facts_of_leads(session: AsyncSession, org_id: str, lead_ids: list[str]) -> dict[str, list[Fact]]:
    found: dict[str, list[Fact]] = defaultdict(list)
    for r in (await session.execute(sa.select(program_facts).where(
            program_facts.c.org_id == org_id, _among(session, program_facts.c.lead_id, lead_ids)))).mappings():
        found[r["lead_id"]].append(fact_from_row(r))
    return found


async def leads_with_facts_between(session: AsyncSession, org_id: str, start: datetime, end: datetime
                                   ) -> list[str]:
    return sorted((await session.execute(sa.select(program_facts.c.lead_id).distinct().where(
        program_facts.c.org_id == org_id, program_facts.c.at >= start, program_facts.c.at < end))).scalars())


# ====================================================================== contributions and tallies


# A lateral subquery per lead (OFFSET 0 keeps it from being flattened into a join): an index lookup per lead.
# `program_id = $1 AND lead_id = ANY($2)` is planned, without statistics of the columns (a table not analysed
# yet), as a scan of the whole program with the array as a filter (~125 ms for 256 leads among 15,000
# contributions, growing).
_CONTRIBUTIONS_OF_LEADS = sa.text(
    "SELECT c.fact_key, c.lead_id, c.participant, c.behaviour, c.points, c.at, c.rule_version "
    "FROM unnest(CAST(:lead_ids AS text[])) AS l(lead_id) CROSS JOIN LATERAL (SELECT * FROM program_contributions "
    "AS c WHERE c.program_id = :program_id AND c.lead_id = l.lead_id OFFSET 0) AS c")


def _contribution(r: Any) -> Contribution:
    return Contribution(r["fact_key"], r["participant"], r["behaviour"], r["points"], as_time(r["at"]),
                        r["rule_version"])


async def contributions_of_leads(session: AsyncSession, program_id: str, lead_ids: list[str]
                                 ) -> dict[str, dict[str, Contribution]]:
    """Per lead, its contributions in the program by fact key."""
    found: dict[str, dict[str, Contribution]] = defaultdict(dict)
    rows = await session.execute(_CONTRIBUTIONS_OF_LEADS, {"lead_ids": lead_ids, "program_id": program_id}) \
        if _is_postgres(session) else await session.execute(sa.select(program_contributions).where(
            program_contributions.c.program_id == program_id, program_contributions.c.lead_id.in_(lead_ids)))
    for r in rows.mappings():
        found[r["lead_id"]][r["fact_key"]] = _contribution(r)
    return found


async def contributions_of_participants(session: AsyncSession, program_id: str, participants: list[str] | None
                                        ) -> dict[str, list[Contribution]]:
    """Per participant, their contributions in the program (every participant's with None)."""
    query = sa.select(program_contributions).where(program_contributions.c.program_id == program_id)
    if participants is not None:
        query = query.where(_among(session, program_contributions.c.participant, participants))
    found: dict[str, list[Contribution]] = defaultdict(list)
    for r in (await session.execute(query)).mappings():
        found[r["participant"]].append(_contribution(r))
    return found


@dataclass(frozen=True)
class LeadContribution:
    lead_id: str
    contribution: Contribution


_CONTRIBUTION_COLUMNS = {"fact_key": "text", "lead_id": "text", "participant": "text", "behaviour": "text",
                         "points": "bigint", "at": "timestamptz", "rule_version": "integer"}
_INSERT_CONTRIBUTIONS = sa.text(
    "INSERT INTO program_contributions (org_id, program_id, fact_key, lead_id, participant, behaviour, points, at, "
    "rule_version) SELECT :org_id, :program_id, u.* FROM unnest(CAST(:fact_key AS text[]), "
    "CAST(:lead_id AS text[]), CAST(:participant AS text[]), CAST(:behaviour AS text[]), CAST(:points AS bigint[]), "
    "CAST(:at AS timestamptz[]), CAST(:rule_version AS integer[])) "
    "AS u(fact_key, lead_id, participant, behaviour, points, at, rule_version) "
    "ON CONFLICT (program_id, fact_key) DO NOTHING")


async def replace_contributions(session: AsyncSession, org_id: str, program_id: str, stale: list[str],
                                added: list[LeadContribution]) -> None:
    """Delete the contributions of the `stale` fact keys, then insert `added` (one statement each)."""
    if stale:
        await session.execute(sa.delete(program_contributions).where(
            program_contributions.c.program_id == program_id,
            _among(session, program_contributions.c.fact_key, stale)))
    if not added:
        return
    rows = [{"fact_key": a.contribution.fact_key, "lead_id": a.lead_id, "participant": a.contribution.participant,
             "behaviour": a.contribution.behaviour, "points": a.contribution.points, "at": a.contribution.at,
             "rule_version": a.contribution.rule_version} for a in added]
    if _is_postgres(session):
        await session.execute(_INSERT_CONTRIBUTIONS, {"org_id": org_id, "program_id": program_id,
                                                      **_as_arrays(_CONTRIBUTION_COLUMNS, rows)})
    else:
        await session.execute(sa.insert(program_contributions),
                              [{"org_id": org_id, "program_id": program_id, **r} for r in rows])


def _tally(r: Any) -> Tally:
    crossings = r["crossings"]
    if isinstance(crossings, str):  # read through a text() statement on SQLite
        crossings = json.loads(crossings)
    return Tally(r["points"], as_time(r["reached_at"]) if r["reached_at"] is not None else None,
                 {int(k): as_time(v) for k, v in (crossings or {}).items()})


@dataclass(frozen=True)
class TallyGain:
    """Points a participant gained in a batch: `points` from contributions that all come at or after `first_at`,
    the last at `last_at`. `first_at` None: the participant is re-tallied in full (only created and locked)."""

    participant: str
    points: int
    first_at: datetime | None
    last_at: datetime | None


# The gains added to the tallies in one statement: a participant without a tally gets one; a stored tally is
# extended only if its total was reached no later than the first gain (else the gain is out of order, and
# the caller re-tallies in full). Every row is locked, extended or not (ON CONFLICT DO UPDATE locks the rows
# its WHERE refuses), in participant order. The commit notifies the live streams.
_ADD_TO_TALLIES = sa.text(
    "WITH gained AS (INSERT INTO program_scores AS s (org_id, program_id, participant, points, reached_at, "
    "crossings, changed_at) SELECT :org_id, :program_id, u.participant, u.points, u.reached_at, '{}'::json, "
    ":changed_at FROM unnest(CAST(:participants AS text[]), CAST(:points AS bigint[]), "
    "CAST(:last_at AS timestamptz[])) AS u(participant, points, reached_at) "
    "ON CONFLICT (program_id, participant) DO UPDATE SET points = s.points + excluded.points, "
    "reached_at = excluded.reached_at, changed_at = excluded.changed_at "
    "WHERE COALESCE(s.reached_at, '-infinity'::timestamptz) <= (CAST(:first_at AS timestamptz[]))"
    "[array_position(CAST(:participants AS text[]), excluded.participant)] "
    "RETURNING s.participant, s.points, s.reached_at, s.crossings), "
    "announced AS (SELECT pg_notify(:channel, :program_id) AS done) "
    "SELECT gained.* FROM announced LEFT JOIN gained ON true")


async def add_to_tallies(session: AsyncSession, org_id: str, program_id: str, gains: list[TallyGain],
                         now: datetime) -> dict[str, Tally]:
    """Add the gains (`TallyGain`); the tallies that took theirs, as they now are. Those missing (gains out of
    order, or `first_at` None) exist and are locked: the caller re-tallies them (`write_tallies`)."""
    gains = sorted(gains, key=lambda g: g.participant)  # the order every transaction locks them in
    wanted = {g.participant for g in gains if g.first_at is not None}
    extended: dict[str, Tally] = {}
    if _is_postgres(session):
        result = await session.execute(_ADD_TO_TALLIES, {
            "org_id": org_id, "program_id": program_id, "changed_at": now, "channel": SCORES_CHANNEL,
            "participants": [g.participant for g in gains], "points": [g.points for g in gains],
            "last_at": [g.last_at for g in gains], "first_at": [g.first_at for g in gains]})
        for r in result.mappings():
            # Not wanted: created for a re-tally; None: the one row of the NOTIFY when no tally took its gain.
            if r["participant"] in wanted:
                extended[r["participant"]] = _tally(r)
        return extended
    for g in gains:
        insert = sqlite.insert(program_scores).values(
            org_id=org_id, program_id=program_id, participant=g.participant, points=g.points, reached_at=g.last_at,
            crossings={}, changed_at=now)
        statement = insert.on_conflict_do_update(
            index_elements=["program_id", "participant"],
            set_={"points": program_scores.c.points + insert.excluded.points,
                  "reached_at": insert.excluded.reached_at, "changed_at": insert.excluded.changed_at},
            where=sa.or_(program_scores.c.reached_at.is_(None), program_scores.c.reached_at <= g.first_at)
            if g.first_at is not None else sa.false(),
        ).returning(program_scores.c.participant, program_scores.c.points, program_scores.c.reached_at,
                    program_scores.c.crossings)
        row = (await session.execute(statement)).mappings().first()
        if row is not None and g.participant in wanted:
            extended[g.participant] = _tally(row)
    return extended


_UPDATE_TALLIES = sa.text(
    "UPDATE program_scores AS s SET points = u.points, reached_at = u.reached_at, crossings = u.crossings::json, "
    "changed_at = :changed_at FROM unnest(CAST(:participants AS text[]), CAST(:points AS bigint[]), "
    "CAST(:reached AS timestamptz[]), CAST(:crossings AS text[])) AS u(participant, points, reached_at, crossings) "
    "WHERE s.program_id = :program_id AND s.participant = u.participant")


async def write_tallies(session: AsyncSession, program_id: str, tallies: dict[str, Tally], now: datetime) -> None:
    """Overwrite existing tallies (one statement on PostgreSQL)."""
    if not tallies:
        return
    crossings = {p: {str(k): v.isoformat() for k, v in t.crossings.items()} for p, t in tallies.items()}
    if _is_postgres(session):
        await session.execute(_UPDATE_TALLIES, {
            "program_id": program_id, "changed_at": now, "participants": list(tallies),
            "points": [t.points for t in tallies.values()], "reached": [t.reached_at for t in tallies.values()],
            "crossings": [json.dumps(crossings[p]) for p in tallies]})
        return
    await session.execute(sa.update(program_scores).where(
        program_scores.c.program_id == sa.bindparam("b_program"),
        program_scores.c.participant == sa.bindparam("b_participant")).values(
        points=sa.bindparam("b_points"), reached_at=sa.bindparam("b_reached_at"),
        crossings=sa.bindparam("b_crossings"), changed_at=sa.bindparam("b_changed_at")), [
        {"b_program": program_id, "b_participant": p, "b_points": t.points, "b_reached_at": t.reached_at,
         "b_crossings": crossings[p], "b_changed_at": now} for p, t in tallies.items()])


async def read_tallies(session: AsyncSession, program_id: str, *, with_crossings: bool = True) -> dict[str, Tally]:
    """Every tally of the program (without the threshold crossings when the board does not show them)."""
    columns = [program_scores.c.participant, program_scores.c.points, program_scores.c.reached_at]
    if with_crossings:
        columns.append(program_scores.c.crossings)
    rows = (await session.execute(sa.select(*columns).where(program_scores.c.program_id == program_id))).all()
    if with_crossings:
        return {r[0]: _tally({"points": r[1], "reached_at": r[2], "crossings": r[3]}) for r in rows}
    return {r[0]: Tally(r[1], as_time(r[2]) if r[2] is not None else None) for r in rows}


# ====================================================================== awards


async def awarded_keys(session: AsyncSession, program_id: str, participants: list[str]) -> set[str]:
    return set((await session.execute(sa.select(program_awards.c.award_key).where(
        program_awards.c.program_id == program_id,
        _among(session, program_awards.c.participant, participants)))).scalars())


@dataclass(frozen=True)
class AwardRecord:
    org_id: str
    program_id: str
    key: str
    participant: str
    kind: str
    name: str
    badge: str | None
    cash: Decimal | None
    currency: str | None
    earned_by: str | None
    earned_at: datetime


async def insert_award(session: AsyncSession, award: AwardRecord, now: datetime) -> bool:
    """Insert the award once (its key is unique in the program); True when it is new."""
    result = await session.execute(dialect_insert(session)(program_awards).values(
        org_id=award.org_id, program_id=award.program_id, award_key=award.key, participant=award.participant,
        kind=award.kind, name=award.name[:200], badge=award.badge, cash=award.cash, currency=award.currency,
        earned_by=award.earned_by, earned_at=award.earned_at, recorded_at=now,
    ).on_conflict_do_nothing(index_elements=["program_id", "award_key"]))
    return rows_affected(result) == 1


async def list_awards(session: AsyncSession, org_id: str, program_id: str, participant: str | None,
                      limit: int = 5000) -> list[AwardRecord]:
    query = sa.select(program_awards).where(program_awards.c.org_id == org_id,
                                            program_awards.c.program_id == program_id)
    if participant is not None:
        query = query.where(program_awards.c.participant == participant)
    rows = (await session.execute(query.order_by(program_awards.c.earned_at, program_awards.c.award_key)
                                  .limit(limit))).mappings().all()
    return [AwardRecord(r["org_id"], r["program_id"], r["award_key"], r["participant"], r["kind"], r["name"],
                        r["badge"], None if r["cash"] is None else Decimal(r["cash"]), r["currency"],
                        r["earned_by"], as_time(r["earned_at"])) for r in rows]


async def cash_rewards_of(session: AsyncSession, org_id: str, participants: list[str], start: date, end: date
                          ) -> dict[str, list[CashReward]]:
    """The cash rewards each participant earned in [start, end) in programs not in test mode."""
    found: dict[str, list[CashReward]] = {p: [] for p in participants}
    rows = [r for chunk in chunks(participants) for r in (await session.execute(
        sa.select(program_awards, programs.c.name.label("program_name")).join(
            programs, sa.and_(programs.c.org_id == program_awards.c.org_id,
                              programs.c.program_id == program_awards.c.program_id)).where(
            program_awards.c.org_id == org_id, program_awards.c.participant.in_(chunk),
            program_awards.c.cash.is_not(None), programs.c.hidden.is_(False),
            program_awards.c.earned_at >= datetime.combine(start, time.min, UTC),
            program_awards.c.earned_at < datetime.combine(end, time.min, UTC)))).mappings().all()]
    for r in rows:
        found[r["participant"]].append(CashReward(r["program_id"], r["program_name"], r["award_key"], r["name"],
                                                  Decimal(r["cash"]), r["currency"], as_time(r["earned_at"]).date()))
    return found


@dataclass(frozen=True)
class FlagRecord:
    lead_id: str
    rep_id: str | None
    kind: str
    reason: str
    changed_at: datetime


async def list_flags(session: AsyncSession, org_id: str, program_id: str, limit: int = 5000) -> list[FlagRecord]:
    rows = (await session.execute(sa.select(program_flags).where(
        program_flags.c.org_id == org_id, program_flags.c.program_id == program_id)
        .order_by(program_flags.c.changed_at).limit(limit))).mappings().all()
    return [FlagRecord(r["lead_id"], r["rep_id"], r["kind"], r["reason"], as_time(r["changed_at"])) for r in rows]
