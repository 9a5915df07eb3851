"""Incentive programs' use cases: record what happened, re-score what it touches, award once, start and finish
programs, and read boards.

Scoring is incremental but never order-dependent: a new fact re-scores only its lead (the domain scores a lead
from the set of its facts), then re-tallies only the participants whose contributions changed. Two locks make
concurrent consumers safe: the lead's `program_leads` row (so two facts of one lead are scored one after the
other, the second seeing the first) and each participant's `program_scores` row (so a tally is never written
from contributions another transaction is changing).
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from salesflow_shared.app import ServiceContext, Worker, run_periodically
from salesflow_shared.clock import Clock
from salesflow_shared.db import rows_affected
from salesflow_shared.errors import Conflict, FieldError, ValidationFailed
from salesflow_shared.events import (
    BadgeEarnedV1,
    ProgramMilestoneReachedV1,
    ProgramRulesChangedV1,
    ProgramStartedV1,
    ProgramWonV1,
)
from salesflow_shared.inbox import dialect_insert
from salesflow_shared.uow import UnitOfWork

from ..adapters.program_codec import (
    as_time,
    definition_from_json,
    definition_to_json,
    fact_from_row,
    fact_to_json,
)
from ..adapters.programs_orm import (
    program_awards,
    program_contributions,
    program_facts,
    program_flags,
    program_leads,
    program_participants,
    program_scores,
    programs,
)
from ..domain.programs.badges import badges_earned
from ..domain.programs.definitions import (
    ProgramDefinition,
    Reward,
    RulesFrozen,
    ScoringRule,
    revise_rules,
    validate_definition,
)
from ..domain.programs.rewards import CashReward
from ..domain.programs.scoring import Contribution, Fact, sandbagging_flag, score_lead
from ..domain.programs.standings import (
    Award,
    Standings,
    Tally,
    extend_tally,
    place_awards,
    standings,
    tally,
)
from .recalculation import queue_for_participant

Row = dict[str, Any]


def refuse_if_invalid(definition: ProgramDefinition, prefix: str = "") -> None:
    errors = validate_definition(definition)
    if errors:
        raise ValidationFailed("; ".join(f"{f}: {m}" for f, m in errors),
                               errors=[FieldError(prefix + f, m) for f, m in errors])


# ====================================================================== programs


async def create_program(uow: UnitOfWork, *, org_id: str, definition: ProgramDefinition, template: str | None,
                         created_by: str, now: datetime) -> Row:
    refuse_if_invalid(definition)
    row = {"org_id": org_id, "program_id": str(uuid.uuid4()), "name": definition.name,
           "format": definition.format, "template": template, "status": "draft", "hidden": definition.hidden,
           "starts_at": definition.starts_at, "ends_at": definition.ends_at,
           "definition": definition_to_json(definition), "version": 1, "created_by": created_by,
           "created_at": now, "started_at": None, "ended_at": None}
    await uow.session.execute(sa.insert(programs).values(**row))
    await uow.session.execute(sa.insert(program_participants), [
        {"org_id": org_id, "participant": p, "program_id": row["program_id"]} for p in definition.participants])
    return row


async def get_program(session: Any, org_id: str, program_id: str, *, lock: bool = False) -> Row | None:
    query = sa.select(programs).where(programs.c.org_id == org_id, programs.c.program_id == program_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row else None


_DEFINITIONS: dict[tuple[str, int], ProgramDefinition] = {}


def definition_of(row: Row) -> ProgramDefinition:
    """The row's definition, parsed once per program version (every scored event needs it)."""
    key = (row["program_id"], row["version"])
    definition = _DEFINITIONS.get(key)
    if definition is None:
        if len(_DEFINITIONS) > 1000:
            _DEFINITIONS.clear()
        definition = _DEFINITIONS[key] = definition_from_json(row["definition"])
    return definition


def _program_event_fields(row: Row, definition: ProgramDefinition) -> dict[str, Any]:
    return {"program_id": row["program_id"], "program_name": definition.name}


async def start_program(uow: UnitOfWork, row: Row, now: datetime) -> Row:
    """Draft → running: the rules are frozen from here on, facts already in the period are scored, and the
    participants are told (not in test mode)."""
    if row["status"] != "draft":
        raise Conflict(f"the program is {row['status']}; only a draft starts")
    definition = definition_of(row)
    if now >= definition.ends_at:
        raise Conflict("the program's period is over; change ends_at before starting it")
    await uow.session.execute(sa.update(programs).where(
        programs.c.org_id == row["org_id"], programs.c.program_id == row["program_id"]).values(
        status="running", started_at=now, version=row["version"] + 1))
    row = {**row, "status": "running", "started_at": now, "version": row["version"] + 1}
    leads = (await uow.session.execute(sa.select(program_facts.c.lead_id).distinct().where(
        program_facts.c.org_id == row["org_id"], program_facts.c.at >= definition.starts_at,
        program_facts.c.at < definition.ends_at))).scalars().all()
    if leads:
        await _rescore_leads(uow, row, definition, sorted(leads), now)
    if not definition.hidden:
        uow.publish(ProgramStartedV1(
            **_program_event_fields(row, definition), format=definition.format, starts_at=definition.starts_at,
            ends_at=definition.ends_at, participants=list(definition.participants), target=definition.target,
            rules_summary=rules_summary(definition.versions[-1].rules),
        ), org_id=row["org_id"], subject_id=row["program_id"], subject_version=row["version"], occurred_at=now)
    return row


async def revise_program_rules(uow: UnitOfWork, row: Row, rules: tuple[ScoringRule, ...], now: datetime) -> Row:
    """New scoring rules: a draft's are replaced; a running program's are frozen, so the change becomes the
    next rule version, effective now, and is announced."""
    definition = definition_of(row)
    try:
        revised = revise_rules(definition, rules, started=row["status"] != "draft", ended=row["status"] == "ended",
                               now=now)
    except RulesFrozen as exc:
        raise Conflict(str(exc)) from exc
    refuse_if_invalid(revised, "rules.")
    version = row["version"] + 1
    await uow.session.execute(sa.update(programs).where(
        programs.c.org_id == row["org_id"], programs.c.program_id == row["program_id"]).values(
        definition=definition_to_json(revised), version=version))
    latest = revised.versions[-1]
    if row["status"] == "running" and not revised.hidden:
        uow.publish(ProgramRulesChangedV1(
            **_program_event_fields(row, revised), rule_version=latest.version,
            effective_from=latest.effective_from, participants=list(revised.participants),
            rules_summary=rules_summary(latest.rules),
        ), org_id=row["org_id"], subject_id=row["program_id"], subject_version=version, occurred_at=now)
    return {**row, "definition": definition_to_json(revised), "version": version}


def rules_summary(rules: tuple[ScoringRule, ...]) -> str:
    """The rules in one line for a notification: "call (connected, >= 2 min) 3 pts; meeting 10 pts; ..."."""
    parts = []
    for r in rules:
        conditions = [*r.outcomes]
        if r.min_duration_seconds:
            conditions.append(f">= {r.min_duration_seconds // 60} min" if r.min_duration_seconds % 60 == 0
                              else f">= {r.min_duration_seconds} s")
        label = r.behaviour.replace("_", " ") + (f" ({', '.join(conditions)})" if conditions else "")
        value = f"{r.points} pts" + (f" + {r.points_per_value_unit} per {r.value_unit:,}"
                                     if r.points_per_value_unit else "")
        parts.append(f"{label} {value}")
    return "; ".join(parts)


async def finish_program(uow: UnitOfWork, row: Row, now: datetime) -> list[Award]:
    """Running → ended: the final standings award the places (each once) and the winners are told."""
    definition = definition_of(row)
    board = await current_standings(uow.session, row, definition, now=max(now, definition.ends_at))
    ended_at = min(now, definition.ends_at)
    awards = place_awards(definition, board, ended_at)
    for award in awards:
        place = int(award.key.split(":")[1])
        entry = board.entries[place - 1]
        if await _record_award(uow, row, award, kind="place", name=award.detail, earned_by=None, now=now) \
                and not definition.hidden:
            uow.publish(ProgramWonV1(
                **_program_event_fields(row, definition), rep_id=award.participant, place=place,
                points=entry.points, team_id=entry.id if entry.id != award.participant else None,
                badge=award.reward.badge, cash=award.reward.cash, currency=award.reward.currency, ended_at=ended_at,
            ), org_id=row["org_id"], subject_id=row["program_id"], subject_version=row["version"] + 1,
                occurred_at=now)
    await uow.session.execute(sa.update(programs).where(
        programs.c.org_id == row["org_id"], programs.c.program_id == row["program_id"],
        programs.c.status == "running").values(status="ended", ended_at=now, version=row["version"] + 1))
    return awards


async def finish_due_programs(uow: UnitOfWork, now: datetime, limit: int = 20) -> int:
    """Finish running programs whose period is over (the sweep); the number finished."""
    rows = (await uow.session.execute(sa.select(programs).where(
        programs.c.status == "running", programs.c.ends_at <= now).order_by(programs.c.ends_at).limit(limit)
        .with_for_update(skip_locked=True))).mappings().all()
    for row in rows:
        await finish_program(uow, dict(row), now)
    return len(rows)


def program_finisher(clock: Clock, interval_s: float) -> Worker:
    async def finish_programs(context: ServiceContext) -> None:
        async def tick() -> int:
            async with context.uow() as uow:
                finished = await finish_due_programs(uow, clock.now())
                await uow.commit()
            return finished
        await run_periodically(context, tick, interval_s, "program_finisher")
    return finish_programs


# ====================================================================== facts and scoring


async def _lock_leads(uow: UnitOfWork, org_id: str, lead_ids: list[str]) -> dict[str, Row]:
    """Lock the leads' rows (created if new), in one order everywhere so two transactions never deadlock."""
    ids = sorted(set(lead_ids))
    # executemany of one statement (compiled once, cached) rather than a VALUES list compiled per size
    await uow.session.execute(dialect_insert(uow.session)(program_leads).on_conflict_do_nothing(
        index_elements=["org_id", "lead_id"]), [
        {"org_id": org_id, "lead_id": lead_id, "lead_version": 0, "owner_id": None, "expected_close_date": None}
        for lead_id in ids])
    rows = (await uow.session.execute(sa.select(program_leads).where(
        program_leads.c.org_id == org_id, program_leads.c.lead_id.in_(ids)).order_by(program_leads.c.lead_id)
        .with_for_update())).mappings().all()
    return {r["lead_id"]: dict(r) for r in rows}


async def running_programs(session: Any, org_id: str) -> list[Row]:
    rows = (await session.execute(sa.select(programs).where(
        programs.c.org_id == org_id, programs.c.status == "running"))).mappings().all()
    return [dict(r) for r in rows]


async def record_facts(uow: UnitOfWork, org_id: str, facts: list[Fact], now: datetime) -> int:
    """Keep the facts (once each: a key already known changes nothing) and re-score their leads in every
    running program; the number of new facts. One batch of events costs a handful of statements."""
    unique = {f.key: f for f in facts}
    if not unique:
        return 0
    await _lock_leads(uow, org_id, [f.lead_id for f in unique.values()])
    inserted = await uow.session.execute(dialect_insert(uow.session)(program_facts).on_conflict_do_nothing(
        index_elements=["org_id", "fact_key"]).returning(program_facts.c.fact_key), [
        {"org_id": org_id, "fact_key": f.key, "lead_id": f.lead_id, "kind": f.kind, "at": f.at,
         "fact": fact_to_json(f)} for f in unique.values()])
    new_keys = set(inserted.scalars().all())
    leads = sorted({unique[k].lead_id for k in new_keys})
    if leads:
        for row in await running_programs(uow.session, org_id):
            await _rescore_leads(uow, row, definition_of(row), leads, now)
    return len(new_keys)


async def record_fact(uow: UnitOfWork, org_id: str, fact: Fact, now: datetime) -> bool:
    """One fact (see `record_facts`); False for a fact already known."""
    return await record_facts(uow, org_id, [fact], now) == 1


async def record_close_date(uow: UnitOfWork, org_id: str, *, lead_id: str, lead_version: int,
                            owner_id: str | None, close_date: Any, changed_at: datetime) -> None:
    """The lead's latest expected close date; a push past a running program's end in its last days is flagged."""
    lead = (await _lock_leads(uow, org_id, [lead_id]))[lead_id]
    if lead_version <= lead["lead_version"]:
        return  # an older snapshot than the one we hold
    await uow.session.execute(sa.update(program_leads).where(
        program_leads.c.org_id == org_id, program_leads.c.lead_id == lead_id).values(
        lead_version=lead_version, owner_id=owner_id, expected_close_date=close_date))
    previous = lead["expected_close_date"]
    if previous is None or close_date is None or previous == close_date:
        return
    for row in await running_programs(uow.session, org_id):
        definition = definition_of(row)
        flag = sandbagging_flag(definition, lead_id=lead_id, rep_id=owner_id, changed_at=changed_at,
                                previous_close=previous, new_close=close_date)
        if flag is not None and (owner_id is None or definition.is_participant(owner_id)):
            await uow.session.execute(dialect_insert(uow.session)(program_flags).values(
                org_id=org_id, program_id=row["program_id"], lead_id=lead_id, changed_at=changed_at,
                rep_id=owner_id, kind="sandbagging", reason=flag.reason,
            ).on_conflict_do_nothing(index_elements=["program_id", "lead_id", "changed_at"]))


async def _rescore_leads(uow: UnitOfWork, row: Row, definition: ProgramDefinition, lead_ids: list[str],
                         now: datetime) -> None:
    session, org_id, program_id = uow.session, row["org_id"], row["program_id"]
    facts: dict[str, list[Fact]] = defaultdict(list)
    for r in (await session.execute(sa.select(program_facts).where(
            program_facts.c.org_id == org_id, program_facts.c.lead_id.in_(lead_ids)))).mappings().all():
        facts[r["lead_id"]].append(fact_from_row(r))
    old: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in (await session.execute(sa.select(program_contributions).where(
            program_contributions.c.program_id == program_id,
            program_contributions.c.lead_id.in_(lead_ids)))).mappings().all():
        old[r["lead_id"]][r["fact_key"]] = r
    changed, inserts = [], []
    added: dict[str, list[Contribution]] = defaultdict(list)  # per participant: new contributions only
    full: set[str] = set()  # participants who lost or changed a contribution: re-tallied in full
    for lead_id in lead_ids:
        new = {c.fact_key: c for c in score_lead(definition, facts[lead_id]).contributions}
        before = old.get(lead_id, {})
        same = {k for k, c in new.items()
                if k in before and (before[k]["participant"], before[k]["points"]) == (c.participant, c.points)}
        if len(same) == len(new) == len(before):
            continue
        changed.append(lead_id)
        full |= {r["participant"] for k, r in before.items() if k not in same}
        for key, c in new.items():
            if key not in same:
                added[c.participant].append(c)
        inserts += [{"org_id": org_id, "program_id": program_id, "fact_key": c.fact_key, "lead_id": lead_id,
                     "participant": c.participant, "behaviour": c.behaviour, "points": c.points, "at": c.at,
                     "rule_version": c.rule_version} for c in new.values()]
    if not changed:
        return
    await session.execute(sa.delete(program_contributions).where(
        program_contributions.c.program_id == program_id, program_contributions.c.lead_id.in_(changed)))
    if inserts:
        await session.execute(sa.insert(program_contributions), inserts)
    await _retally(uow, row, definition, added, full, now)


def _contribution(r: Any) -> Contribution:
    return Contribution(r["fact_key"], r["participant"], r["behaviour"], r["points"], as_time(r["at"]),
                        r["rule_version"])


async def _retally(uow: UnitOfWork, row: Row, definition: ProgramDefinition,
                   added: dict[str, list[Contribution]], full: set[str], now: datetime) -> None:
    """Bring the tallies of the participants who gained (`added`) or lost (`full`) contributions up to date, and
    award what they newly reached. A participant who only gained contributions later than their tally is
    extended in place; the others (and those who may still earn a badge) are re-tallied from all of theirs."""
    session, org_id, program_id = uow.session, row["org_id"], row["program_id"]
    participants = sorted(set(added) | full)
    await session.execute(dialect_insert(session)(program_scores).on_conflict_do_nothing(
        index_elements=["program_id", "participant"]), [
        {"org_id": org_id, "program_id": program_id, "participant": p, "points": 0, "reached_at": None,
         "crossings": {}, "changed_at": now} for p in participants])
    stored = {r["participant"]: Tally(r["points"], as_time(r["reached_at"]) if r["reached_at"] else None,
                                      {int(k): as_time(v) for k, v in (r["crossings"] or {}).items()})
              for r in (await session.execute(sa.select(program_scores).where(
                  program_scores.c.program_id == program_id, program_scores.c.participant.in_(participants))
                  .order_by(program_scores.c.participant).with_for_update())).mappings().all()}
    awarded = set((await session.execute(sa.select(program_awards.c.award_key).where(
        program_awards.c.program_id == program_id, program_awards.c.participant.in_(participants)))).scalars())
    thresholds = definition.thresholds()
    tallies: dict[str, Tally] = {}
    for p in participants:
        badges_pending = any(f"badge:{b.id}:{p}" not in awarded for b in definition.badges)
        extended = None if p in full or badges_pending else extend_tally(stored[p], added.get(p, ()), thresholds)
        if extended is not None:
            tallies[p] = extended
    reread = [p for p in participants if p not in tallies]
    contributions: dict[str, list[Contribution]] = defaultdict(list)
    if reread:
        for r in (await session.execute(sa.select(program_contributions).where(
                program_contributions.c.program_id == program_id,
                program_contributions.c.participant.in_(reread)))).mappings().all():
            contributions[r["participant"]].append(_contribution(r))
        for p in reread:
            tallies[p] = tally(contributions[p], thresholds)
    await session.execute(sa.update(program_scores).where(
        program_scores.c.program_id == sa.bindparam("b_program"),
        program_scores.c.participant == sa.bindparam("b_participant")).values(
        points=sa.bindparam("b_points"), reached_at=sa.bindparam("b_reached_at"),
        crossings=sa.bindparam("b_crossings"), changed_at=sa.bindparam("b_changed_at")), [
        {"b_program": program_id, "b_participant": p, "b_points": t.points, "b_reached_at": t.reached_at,
         "b_crossings": {str(k): v.isoformat() for k, v in t.crossings.items()}, "b_changed_at": now}
        for p, t in tallies.items()])
    for p, t in tallies.items():
        mine = contributions[p] if p in contributions else added.get(p, [])
        await _award_milestones(uow, row, definition, p, t, mine, awarded, now)
        await _award_badges(uow, row, definition, p, mine, awarded, now)


def _earning_fact(contributions: list[Contribution], moment: datetime) -> str | None:
    """The contribution that crossed a threshold at `moment` (the last one counted at that moment)."""
    at_moment = sorted((c for c in contributions if c.at == moment), key=lambda c: c.fact_key)
    return at_moment[-1].fact_key if at_moment else None


async def _award_milestones(uow: UnitOfWork, row: Row, definition: ProgramDefinition, participant: str, t: Tally,
                            mine: list[Contribution], awarded: set[str], now: datetime) -> None:
    for m in definition.milestones:
        crossed = t.crossings.get(m.points)
        if crossed is None or f"milestone:{m.id}:{participant}" in awarded:
            continue
        award = Award(f"milestone:{m.id}:{participant}", participant, "milestone", m.reward, crossed, m.name)
        earned_by = _earning_fact(mine, crossed)
        if await _record_award(uow, row, award, kind="milestone", name=m.name, earned_by=earned_by, now=now) \
                and not definition.hidden:
            uow.publish(ProgramMilestoneReachedV1(
                **_program_event_fields(row, definition), rep_id=participant, milestone_id=m.id,
                milestone_name=m.name, milestone_points=m.points, points=t.points, reached_at=crossed,
                next_milestone=_next_milestone(definition, t.points), badge=m.reward.badge, cash=m.reward.cash,
                currency=m.reward.currency, earned_by=earned_by,
            ), org_id=row["org_id"], subject_id=row["program_id"], occurred_at=now)


def _next_milestone(definition: ProgramDefinition, points: int) -> str | None:
    upcoming = sorted((m for m in definition.milestones if m.points > points), key=lambda m: m.points)
    return f"{upcoming[0].name} at {upcoming[0].points} points ({upcoming[0].points - points} to go)" \
        if upcoming else None


async def _award_badges(uow: UnitOfWork, row: Row, definition: ProgramDefinition, participant: str,
                        mine: list[Contribution], awarded: set[str], now: datetime) -> None:
    rules = [b for b in definition.badges if f"badge:{b.id}:{participant}" not in awarded]
    if not rules:
        return
    names = {b.id: b.name for b in definition.badges}
    for earned in badges_earned(rules, participant, mine):
        award = Award(earned.key, participant, "badge", Reward(badge=earned.badge_id), earned.at,
                      names[earned.badge_id])
        if await _record_award(uow, row, award, kind="badge", name=names[earned.badge_id],
                               earned_by=earned.earned_by, now=now) and not definition.hidden:
            uow.publish(BadgeEarnedV1(
                **_program_event_fields(row, definition), rep_id=participant, badge_id=earned.badge_id,
                badge_name=names[earned.badge_id], earned_at=earned.at, earned_by=earned.earned_by,
            ), org_id=row["org_id"], subject_id=row["program_id"], occurred_at=now)


async def _record_award(uow: UnitOfWork, row: Row, award: Award, *, kind: str, name: str, earned_by: str | None,
                        now: datetime) -> bool:
    """Insert the award once (its key is unique in the program); True when it is new."""
    result = await uow.session.execute(dialect_insert(uow.session)(program_awards).values(
        org_id=row["org_id"], program_id=row["program_id"], award_key=award.key, participant=award.participant,
        kind=kind, name=name[:200], badge=award.reward.badge, cash=award.reward.cash,
        currency=award.reward.currency, earned_by=earned_by, earned_at=award.at or now, recorded_at=now,
    ).on_conflict_do_nothing(index_elements=["program_id", "award_key"]))
    if rows_affected(result) != 1:
        return False
    if award.reward.cash is not None and not row["hidden"]:
        # The SPIFF lands on the statement of the period it was earned in: that statement is recomputed.
        earned_on = (award.at or now).date()
        await queue_for_participant(uow, row["org_id"], award.participant, earned_on,
                                    earned_on + timedelta(days=1), "program_reward", now)
    return True


async def program_cash_rewards(session: Any, org_id: str, participant: str, start: date, end: date
                               ) -> list[CashReward]:
    """The cash rewards `participant` earned in [start, end) in programs not in test mode: the statement's
    program SPIFF lines (domain/programs/rewards.py turns them into lines)."""
    rows = (await session.execute(sa.select(program_awards, programs.c.name.label("program_name")).join(
        programs, sa.and_(programs.c.org_id == program_awards.c.org_id,
                          programs.c.program_id == program_awards.c.program_id)).where(
        program_awards.c.org_id == org_id, program_awards.c.participant == participant,
        program_awards.c.cash.is_not(None), programs.c.hidden.is_(False),
        program_awards.c.earned_at >= datetime.combine(start, time.min, UTC),
        program_awards.c.earned_at < datetime.combine(end, time.min, UTC)))).mappings().all()
    return [CashReward(r["program_id"], r["program_name"], r["award_key"], r["name"], Decimal(r["cash"]),
                       r["currency"], as_time(r["earned_at"]).date()) for r in rows]


# ====================================================================== reading


async def score_tallies(session: Any, program_id: str) -> dict[str, Tally]:
    rows = (await session.execute(sa.select(program_scores).where(
        program_scores.c.program_id == program_id))).mappings().all()
    return {r["participant"]: Tally(r["points"], as_time(r["reached_at"]) if r["reached_at"] else None,
                                    {int(k): as_time(v) for k, v in (r["crossings"] or {}).items()})
            for r in rows}


async def current_standings(session: Any, row: Row, definition: ProgramDefinition | None = None, *,
                            now: datetime) -> Standings:
    definition = definition or definition_of(row)
    rounds: list[Mapping[str, Tally]] | None = None
    if definition.format == "head_to_head":
        contributions = [_contribution(r) for r in (await session.execute(sa.select(program_contributions).where(
            program_contributions.c.program_id == row["program_id"]))).mappings().all()]
        by_participant: dict[str, list[Contribution]] = defaultdict(list)
        for c in contributions:
            by_participant[c.participant].append(c)
        rounds = [{p: tally([c for c in cs if r.starts_at <= c.at < r.ends_at]) for p, cs in by_participant.items()}
                  for r in definition.rounds]
    return standings(definition, await score_tallies(session, row["program_id"]), rounds, now=now)


async def last_change(session: Any, program_id: str) -> datetime | None:
    value = (await session.execute(sa.select(sa.func.max(program_scores.c.changed_at)).where(
        program_scores.c.program_id == program_id))).scalar()
    return as_time(value) if value is not None else None


def program_json(row: Row) -> dict[str, Any]:
    return {"id": row["program_id"], "name": row["name"], "format": row["format"], "template": row["template"],
            "status": row["status"], "hidden": row["hidden"], "version": row["version"],
            **{k: v for k, v in row["definition"].items() if k not in ("name", "format", "hidden")},
            "created_by": row["created_by"],
            "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
            "ended_at": _iso(row["ended_at"])}


def _iso(value: Any) -> str | None:
    return as_time(value).isoformat() if value is not None else None


def award_json(r: Any) -> dict[str, Any]:
    return {"program_id": r["program_id"], "key": r["award_key"], "participant": r["participant"],
            "kind": r["kind"], "name": r["name"], "badge": r["badge"],
            "cash": None if r["cash"] is None else str(r["cash"]), "currency": r["currency"],
            "earned_by": r["earned_by"], "earned_at": _iso(r["earned_at"])}


__all__ = ["create_program", "start_program", "revise_program_rules", "finish_program", "finish_due_programs",
           "record_fact", "record_close_date", "current_standings", "score_tallies", "last_change",
           "program_json", "award_json", "get_program", "definition_of", "program_cash_rewards"]
