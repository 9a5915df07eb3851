"""Incentive programs' use cases: record what happened, re-score what it touches, award once, start and finish
programs, and read boards.

Scoring is incremental but never order-dependent: a new fact re-scores only its lead (the domain scores a lead
from the set of its facts), then re-tallies only the participants whose contributions changed. Two locks make
concurrent consumers safe: the lead's (so two facts of one lead are scored one after the other, the second
seeing the first) and each participant's `program_scores` row (so a tally is never written from contributions
another transaction is changing). Every query is in adapters/repository/programs.py.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from salesflow_shared.app import ServiceContext, Worker, run_periodically
from salesflow_shared.clock import Clock
from salesflow_shared.errors import Conflict, FieldError, ValidationFailed
from salesflow_shared.events import (
    BadgeEarnedV1,
    ProgramMilestoneReachedV1,
    ProgramRulesChangedV1,
    ProgramStartedV1,
    ProgramWonV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters.program_codec import as_time, definition_from_json, definition_to_json
from ..adapters.repository import programs as repo
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
    await repo.insert_program(uow.session, row, definition.participants)
    return row


async def get_program(session: Any, org_id: str, program_id: str, *, lock: bool = False) -> Row | None:
    return await repo.get_program(session, org_id, program_id, lock=lock)


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
    await repo.update_program(uow.session, row["org_id"], row["program_id"], status="running", started_at=now,
                              version=row["version"] + 1)
    row = {**row, "status": "running", "started_at": now, "version": row["version"] + 1}
    leads = await repo.leads_with_facts_between(uow.session, row["org_id"], definition.starts_at,
                                                definition.ends_at)
    if leads:
        facts = await repo.facts_of_leads(uow.session, row["org_id"], leads)
        await _rescore_leads(uow, row, definition, {lead_id: facts.get(lead_id, []) for lead_id in leads}, now)
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
    await repo.update_program(uow.session, row["org_id"], row["program_id"],
                              definition=definition_to_json(revised), version=version)
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
    await repo.update_program(uow.session, row["org_id"], row["program_id"], only_if_status="running",
                              status="ended", ended_at=now, version=row["version"] + 1)
    return awards


async def finish_due_programs(uow: UnitOfWork, now: datetime, limit: int = 20) -> int:
    """Finish running programs whose period is over (the sweep); the number finished."""
    rows = await repo.due_programs(uow.session, now, limit)
    for row in rows:
        await finish_program(uow, row, now)
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


async def record_facts(uow: UnitOfWork, org_id: str, facts: list[Fact], now: datetime) -> int:
    """Keep the facts (once each: a key already known changes nothing) and re-score their leads in every
    running program; the number of new facts. A batch of events costs a handful of statements whatever its
    size: the leads locked, the facts kept (with their leads' earlier facts and the running programs read back),
    and per program the leads' contributions read, the changed ones written and the tallies extended."""
    if not facts:
        return 0
    await repo.lock_leads_for_scoring(uow.session, org_id, (f.lead_id for f in facts))
    added = await repo.add_facts(uow.session, org_id, facts)
    for row in added.programs:  # (read with the facts, when one was new)
        await _rescore_leads(uow, row, definition_of(row), added.by_lead, now, new_keys=added.keys)
    return len(added.keys)


async def record_fact(uow: UnitOfWork, org_id: str, fact: Fact, now: datetime) -> bool:
    """One fact (see `record_facts`); False for a fact already known."""
    return await record_facts(uow, org_id, [fact], now) == 1


async def record_close_date(uow: UnitOfWork, org_id: str, *, lead_id: str, lead_version: int,
                            owner_id: str | None, close_date: Any, changed_at: datetime,
                            likely_new: bool = False) -> None:
    """The lead's latest expected close date; a push past a running program's end in its last days is flagged.
    `likely_new` (the lead's first snapshot): try storing it as the lead's first at once."""
    session = uow.session
    values = {"lead_version": lead_version, "owner_id": owner_id, "close_date": close_date}
    if likely_new and await repo.add_lead_snapshot(session, org_id, lead_id, **values):
        return  # the lead's first snapshot: no close date before it
    # Usually the lead's row holds an older snapshot: written over in one statement (the row as it was).
    lead = await repo.update_newer_lead_snapshot(session, org_id, lead_id, **values)
    if lead is None:  # no row yet, or a stale snapshot (or SQLite)
        lead = await repo.lock_lead_snapshot(session, org_id, lead_id)
        if lead is None:
            if await repo.add_lead_snapshot(session, org_id, lead_id, **values):
                return
            lead = await repo.lock_lead_snapshot(session, org_id, lead_id)  # another transaction stored it meanwhile
            assert lead is not None
        if lead_version <= lead["lead_version"]:
            return  # an older snapshot than the one we hold
        await repo.update_lead_snapshot(session, org_id, lead_id, **values)
    previous = lead["expected_close_date"]
    if previous is None or close_date is None or previous == close_date:
        return
    for row in await repo.running_programs(uow.session, org_id):
        definition = definition_of(row)
        flag = sandbagging_flag(definition, lead_id=lead_id, rep_id=owner_id, changed_at=changed_at,
                                previous_close=previous, new_close=close_date)
        if flag is not None and (owner_id is None or definition.is_participant(owner_id)):
            await repo.insert_flag(uow.session, org_id, row["program_id"], lead_id=lead_id, changed_at=changed_at,
                                   rep_id=owner_id, kind="sandbagging", reason=flag.reason)


async def _rescore_leads(uow: UnitOfWork, row: Row, definition: ProgramDefinition,
                         facts: Mapping[str, list[Fact]], now: datetime, new_keys: set[str] | None = None) -> None:
    """Score the leads of `facts` (all of each lead's facts) in the program, rewrite the contributions that
    differ from those stored, and bring the tallies they change up to date. A lead all of whose facts are
    `new_keys` (recorded in this transaction) has no contributions stored yet: none are read for it."""
    session, org_id, program_id = uow.session, row["org_id"], row["program_id"]
    lead_ids = sorted(facts)
    known = [lead_id for lead_id in lead_ids
             if new_keys is None or any(f.key not in new_keys for f in facts[lead_id])]
    old = await repo.contributions_of_leads(session, program_id, known) if known else {}
    inserts: list[repo.LeadContribution] = []
    stale: list[str] = []
    added: dict[str, list[Contribution]] = defaultdict(list)  # per participant: new contributions only
    full: set[str] = set()  # participants who lost or changed a contribution: re-tallied in full
    for lead_id in lead_ids:
        new = {c.fact_key: c for c in score_lead(definition, facts[lead_id]).contributions}
        before = old.get(lead_id, {})
        same = {k for k, c in new.items()
                if k in before and (before[k].participant, before[k].points) == (c.participant, c.points)}
        if len(same) == len(new) == len(before):
            continue
        # Only the rows that differ are rewritten: a new fact usually adds one contribution to a lead's few.
        kept = {k for k, c in new.items() if before.get(k) == c}
        full |= {c.participant for k, c in before.items() if k not in same}
        for key, c in new.items():
            if key not in same:
                added[c.participant].append(c)
        stale += [k for k in before if k not in kept]
        inserts += [repo.LeadContribution(lead_id, c) for k, c in new.items() if k not in kept]
    if not stale and not inserts:
        return
    await repo.replace_contributions(session, org_id, program_id, stale, inserts)
    await _retally(uow, row, definition, added, full, now)


async def _retally(uow: UnitOfWork, row: Row, definition: ProgramDefinition,
                   added: dict[str, list[Contribution]], full: set[str], now: datetime) -> None:
    """Bring the tallies of the participants who gained (`added`) or lost (`full`) contributions up to date, and
    award what they newly reached. A participant who only gained contributions later than their tally is
    extended in place, in one statement for all; the others (and those who may still earn a badge) are
    re-tallied from all of theirs."""
    session, program_id = uow.session, row["program_id"]
    participants = sorted(set(added) | full)
    # Between milestones and badges, the awards a tally can bring (places come at the end): none to look up
    # when the program has neither.
    awarded = await repo.awarded_keys(session, program_id, participants) \
        if definition.milestones or definition.badges else set()
    gains = []
    for p in participants:
        mine = sorted(added.get(p, ()), key=lambda c: (c.at, c.fact_key))
        extendable = mine and p not in full and all(f"badge:{b.id}:{p}" in awarded for b in definition.badges)
        gains.append(repo.TallyGain(p, sum(c.points for c in mine), mine[0].at, mine[-1].at) if extendable
                     else repo.TallyGain(p, 0, None, None))
    stored = await repo.add_to_tallies(session, row["org_id"], program_id, gains, now)
    thresholds = definition.thresholds()
    tallies: dict[str, Tally] = {}
    rewrite: dict[str, Tally] = {}
    for gain in gains:
        t = stored.get(gain.participant)
        if t is None:
            continue
        # The points and the moment are the database's (other transactions may have added theirs first); the
        # thresholds the gain crossed are worked out here, from the total before it.
        extended = extend_tally(Tally(t.points - gain.points, None, t.crossings), added[gain.participant],
                                thresholds)
        assert extended is not None  # `before` has no reached_at: nothing comes before it
        tallies[gain.participant] = extended
        if extended.crossings != t.crossings:
            rewrite[gain.participant] = extended
    reread = [p for p in participants if p not in tallies]
    contributions = await repo.contributions_of_participants(session, program_id, reread) if reread else {}
    for p in reread:
        tallies[p] = rewrite[p] = tally(contributions.get(p, ()), thresholds)
    await repo.write_tallies(session, program_id, rewrite, now)
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
    if not await repo.insert_award(uow.session, repo.AwardRecord(
            org_id=row["org_id"], program_id=row["program_id"], key=award.key, participant=award.participant,
            kind=kind, name=name, badge=award.reward.badge, cash=award.reward.cash,
            currency=award.reward.currency, earned_by=earned_by, earned_at=award.at or now), now):
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
    return (await program_cash_rewards_of(session, org_id, [participant], start, end))[participant]


async def program_cash_rewards_of(session: Any, org_id: str, participants: list[str], start: date, end: date
                                  ) -> dict[str, list[CashReward]]:
    """`program_cash_rewards` of many participants in one query (a period's statements computed together)."""
    return await repo.cash_rewards_of(session, org_id, participants, start, end)


# ====================================================================== reading


async def score_tallies(session: Any, program_id: str) -> dict[str, Tally]:
    return await repo.read_tallies(session, program_id)


async def current_standings(session: Any, row: Row, definition: ProgramDefinition | None = None, *,
                            now: datetime) -> Standings:
    definition = definition or definition_of(row)
    rounds: list[Mapping[str, Tally]] | None = None
    if definition.format == "head_to_head":
        by_participant = await repo.contributions_of_participants(session, row["program_id"], None)
        rounds = [{p: tally([c for c in cs if r.starts_at <= c.at < r.ends_at]) for p, cs in by_participant.items()}
                  for r in definition.rounds]
    # The threshold crossings only where the board shows them (a race's finish, milestones reached).
    tallies = await repo.read_tallies(session, row["program_id"], with_crossings=bool(definition.thresholds()))
    return standings(definition, tallies, rounds, now=now)


def program_json(row: Row) -> dict[str, Any]:
    return {"id": row["program_id"], "name": row["name"], "format": row["format"], "template": row["template"],
            "status": row["status"], "hidden": row["hidden"], "version": row["version"],
            **{k: v for k, v in row["definition"].items() if k not in ("name", "format", "hidden")},
            "created_by": row["created_by"],
            "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
            "ended_at": _iso(row["ended_at"])}


def _iso(value: Any) -> str | None:
    return as_time(value).isoformat() if value is not None else None


def award_json(a: repo.AwardRecord) -> dict[str, Any]:
    return {"program_id": a.program_id, "key": a.key, "participant": a.participant, "kind": a.kind, "name": a.name,
            "badge": a.badge, "cash": None if a.cash is None else str(a.cash), "currency": a.currency,
            "earned_by": a.earned_by, "earned_at": _iso(a.earned_at)}


__all__ = ["create_program", "start_program", "revise_program_rules", "finish_program", "finish_due_programs",
           "record_fact", "record_close_date", "current_standings", "score_tallies",
           "program_json", "award_json", "get_program", "definition_of", "program_cash_rewards",
           "program_cash_rewards_of"]
