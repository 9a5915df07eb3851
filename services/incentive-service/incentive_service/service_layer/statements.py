"""Statements: computing them from what the service knows, versioning them, and their workflow.

A statement is one participant's earnings for one period of their plan, as lines (domain/commissions.py).
Versions: while the newest version is only `computed` (nobody signed it off), a recomputation replaces its lines
in place. Once it was reviewed or approved, a recomputation that changes anything makes a new version whose lines
are the old version's plus adjustment lines for each difference (the old version stays readable, `superseded`).
A locked (or paid) statement never changes: what its period pays differently later (a clawback, a late plan
change) lands as correction lines on the participant's first open statement after it.
"""
from __future__ import annotations

import asyncio
import gc
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from salesflow_shared.app import ServiceContext, Worker, run_periodically
from salesflow_shared.errors import Conflict, NotFound
from salesflow_shared.events import (
    EventData,
    StatementApprovedV1,
    StatementComputedV1,
    StatementFigures,
    StatementLockedV1,
    StatementPaidV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import recalculation as queued
from ..adapters.repository import sources as repo
from ..adapters.repository import statements as stored
from ..adapters.repository.sources import StatementRow
from ..domain.commissions import (
    Adjustment,
    Credit,
    Line,
    PlannedCredit,
    Quota,
    Statement,
    StatementInput,
    Win,
    compute_statement,
    corrections,
    credits_for_win,
    first_reversal,
    recalculation_lines,
)
from ..domain.money import cents, period_bounds
from ..domain.plans import PlanVersion, plan_for
from ..domain.programs.rewards import CashReward, reward_lines
from . import audit
from .programs import program_cash_rewards_of
from .recalculation import WHOLE_ORG

log = structlog.get_logger(__name__)

OPEN = ("computed", "reviewed", "approved")
CLOSED = ("locked", "paid")
TRANSITIONS = {"review": ("computed", "reviewed"), "approve": ("reviewed", "approved"),
               "lock": ("approved", "locked"), "pay": ("locked", "paid")}


@dataclass
class OrgData:
    """What every statement of an org is computed with, loaded once per batch."""

    org_id: str
    plans: list[PlanVersion]
    payees: dict[str, repo.Payee]
    rates: Any
    named: set[str] = field(default_factory=set)  # participants credited on others' wins (splits, overlays)
    # plan_of's answers: an org's statements ask it for the same few participants and days thousands of times.
    _plan_on: dict[tuple[str, date], PlanVersion | None] = field(default_factory=dict, repr=False)

    @classmethod
    async def load(cls, uow: UnitOfWork, org_id: str) -> OrgData:
        plans = await repo.load_plans(uow.session, org_id)
        data = cls(org_id, plans, await repo.load_payees(uow.session, org_id),
                   await repo.load_rates(uow.session, org_id))
        for version in plans:
            data.named |= version.plan.named_participants()
        return data

    def payee(self, participant_id: str) -> repo.Payee:
        return self.payees.get(participant_id) or repo.Payee(participant_id)

    def plan_of(self, participant_id: str, on: date) -> PlanVersion | None:
        key = (participant_id, on)
        if key not in self._plan_on:
            payee = self.payee(participant_id)
            self._plan_on[key] = plan_for(participant_id, payee.team_ids, payee.role, on, self.plans)
        return self._plan_on[key]

    def period_of(self, participant_id: str, on: date) -> tuple[date, date] | None:
        plan = self.plan_of(participant_id, on)
        return None if plan is None else period_bounds(plan.plan.period, on)

    def credits_of(self, win: Win, reversal: Any) -> list[Credit]:
        closer = self.plan_of(win.closer_id, win.at.date()) if win.closer_id else None
        return credits_for_win(win, closer, reversal)


# ------------------------------------------------------------------ computing
async def credits_in_period(uow: UnitOfWork, data: OrgData, start: date, end: date, closer: str | None = None,
                            extra_wins: Sequence[Win] = ()) -> dict[str, list[PlannedCredit]]:
    """Every credit of the wins in [start, end) (of one closer, or of the whole org), by participant, each with the
    participant's plan on the win date. Loaded once when many statements of a period are computed together."""
    wins, reversals, later_wins = await repo.load_wins(uow.session, data.org_id, start, end, closer)
    found: dict[str, list[PlannedCredit]] = {}
    for win in [*wins, *extra_wins]:
        # Most deals were never lost or reopened: no reversal to look for.
        reversal = first_reversal(win, reversals[win.lead_id], later_wins.get(win.lead_id, ())) \
            if win.lead_id in reversals else None
        won_on = win.at.date()
        for credit in data.credits_of(win, reversal):
            found.setdefault(credit.participant_id, []).append(
                PlannedCredit(credit, data.plan_of(credit.participant_id, won_on)))
    return found


@dataclass
class PeriodInputs:
    """What the statements of one period take besides the credits, for many participants, read in one query
    each: their earlier statements (the draw balance carried in, locked periods to correct), quotas,
    adjustments and program cash rewards."""

    history: dict[str, list[Any]]
    quotas: dict[str, Quota | None]
    adjustments: dict[str, list[Adjustment]]
    rewards: dict[str, list[CashReward]]

    @classmethod
    async def load(cls, uow: UnitOfWork, data: OrgData, participant_ids: Sequence[str], start: date,
                   end: date) -> PeriodInputs:
        session, org_id = uow.session, data.org_id
        return cls(await repo.statement_histories(session, org_id, participant_ids, before=start),
                   await repo.load_quotas(session, org_id, participant_ids, start, end),
                   await repo.load_adjustments_of(session, org_id, participant_ids, start),
                   await program_cash_rewards_of(session, org_id, list(participant_ids), start, end))


async def statement_input(uow: UnitOfWork, data: OrgData, participant_id: str, start: date, end: date,
                          with_corrections: bool = True, extra_wins: Sequence[Win] = (),
                          credits: dict[str, list[PlannedCredit]] | None = None,
                          inputs: PeriodInputs | None = None) -> StatementInput | None:
    """`credits` and `inputs`: preloaded for many participants of the period (see `recompute_many`)."""
    period_plan = data.plan_of(participant_id, end - timedelta(days=1)) or data.plan_of(participant_id, start)
    if period_plan is None:
        return None
    if credits is None:
        closer = None if participant_id in data.named else participant_id
        credits = await credits_in_period(uow, data, start, end, closer, extra_wins)
    if inputs is None:
        inputs = await PeriodInputs.load(uow, data, [participant_id], start, end)
    # The participant's earlier statements (newest version each): the draw balance carried in, and the locked
    # periods whose corrections land here.
    history = inputs.history[participant_id]
    previous = next((s for s in history if s.period_end == start), None)
    balance = Decimal(previous.summary.get("draw_balance_after") or 0) if previous is not None else Decimal(0)
    return StatementInput(
        participant_id, start, end, period_plan, credits.get(participant_id, []), rates=data.rates,
        quota=inputs.quotas[participant_id], draw_balance_before=balance,
        adjustments=inputs.adjustments[participant_id],
        corrections=await _corrections(uow, data, participant_id, history) if with_corrections else (),
        rewards=reward_lines(inputs.rewards[participant_id], period_plan.plan.currency, data.rates)[0])


async def _corrections(uow: UnitOfWork, data: OrgData, participant_id: str, history: list[Any]) -> list[Line]:
    """Corrections of the locked periods (in `history`, the earlier statements) for which this (open) period is
    the first open one after them."""
    out: list[Line] = []
    for i, locked in enumerate(history):
        if locked.status not in CLOSED or any(s.status not in CLOSED for s in history[i + 1:]):
            continue
        inp = await statement_input(uow, data, participant_id, locked.period_start, locked.period_end,
                                    with_corrections=False)
        if inp is None:
            continue
        recomputed = compute_statement(inp)
        locked_lines = [repo.line_of(r) for r in await repo.statement_lines_of(uow.session, data.org_id,
                                                                                locked.statement_id)]
        carried = [repo.line_of(r) for later in history[i + 1:]
                   for r in await repo.statement_lines_of(uow.session, data.org_id, later.statement_id)]
        out += corrections(locked.period_start, locked_lines, carried, recomputed.lines)
    return out


_UNSET = "\x00"  # stands for None in a fingerprint (no text field holds a NUL: the API refuses them)


def _fingerprint(result: Statement, payout: tuple[str, Decimal]) -> str:
    """Of everything stored: an unchanged recomputation writes nothing. Each line's fields joined by separators
    no text holds (a repr of 100,000 dataclasses was a tenth of computing the statements), all lines encoded and
    hashed at once."""
    digest = hashlib.sha256()
    digest.update("".join([
        f"{line.kind}\x1f{line.key}\x1f{line.amount}\x1f{line.description}\x1f{chr(0x1e).join(line.steps)}\x1f"
        f"{_UNSET if line.lead_id is None else line.lead_id}\x1f{_UNSET if line.plan_id is None else line.plan_id}\x1f"
        f"{_UNSET if line.plan_version is None else line.plan_version}\x1f{_UNSET if line.rule is None else line.rule}"
        f"\x1f{_UNSET if line.reason is None else line.reason}\x1f{_UNSET if line.author is None else line.author}\x1d"
        for line in result.lines]).encode())
    digest.update(repr((sorted(result.summary().items()), payout)).encode())
    return digest.hexdigest()


def _payout(data: OrgData, participant_id: str, result: Statement, end: date) -> tuple[str, Decimal, str | None]:
    wanted = data.payee(participant_id).currency or result.currency
    conversion = data.rates.convert(result.total, result.currency, wanted, end - timedelta(days=1))
    if conversion is None:
        return result.currency, cents(result.total), (f"no exchange rate from {result.currency} to {wanted}: paid "
                                                      f"in {result.currency}")
    return wanted, cents(conversion.amount), None if wanted == result.currency else \
        f"payout converted at {conversion.explanation}"


def figures(row: Any) -> StatementFigures:
    return StatementFigures(statement_id=row.statement_id, participant_id=row.participant_id,
                            period_start=row.period_start, period_end=row.period_end, version=row.version,
                            total=Decimal(row.total), plan_currency=row.plan_currency, payout=Decimal(row.payout),
                            payout_currency=row.payout_currency)


@dataclass
class _Computed:
    """A recomputed statement waiting to be stored with the others of its period."""

    participant_id: str
    start: date
    end: date
    current: Any  # the newest version before (a row), or None
    outcome: str  # created, updated, new_version
    version: int
    statement_id: str
    lines: list[Line]
    total: Decimal
    values: dict[str, Any]
    reason: str


@dataclass
class _Evaluated:
    """A statement recomputed from its inputs (pure), before it is composed with what was already seen."""

    participant_id: str
    start: date
    end: date
    current: Any  # the newest version before (a row), or None
    reason: str
    result: Statement
    payout: tuple[str, Decimal]
    summary: dict[str, Any]
    fingerprint: str


async def _statement_input_of(uow: UnitOfWork, data: OrgData, participant_id: str, start: date, current: Any,
                              credits: dict[str, list[PlannedCredit]] | None,
                              inputs: PeriodInputs | None) -> tuple[date, StatementInput] | None:
    """What one statement is computed from (the period's end and the input); None when it cannot change (closed,
    no plan)."""
    if current is not None and current.status in CLOSED:
        return None  # immutable; differences land on the next open statement
    end = current.period_end if current is not None else None
    if end is None:
        plan = data.plan_of(participant_id, start)
        if plan is None:
            return None
        end = period_bounds(plan.plan.period, start)[1]
    inp = await statement_input(uow, data, participant_id, start, end, credits=credits,
                                inputs=inputs if inputs is not None and participant_id in inputs.history else None)
    return None if inp is None else (end, inp)


def _evaluate(data: OrgData, participant_id: str, start: date, end: date, current: Any, reason: str,
              inp: StatementInput) -> _Evaluated | None:
    """The statement computed (no I/O); None when it is the same as the current version."""
    result = compute_statement(inp)
    payout_currency, payout, payout_note = _payout(data, participant_id, result, end)
    fingerprint = _fingerprint(result, (payout_currency, payout))
    if current is not None and current.fingerprint == fingerprint:
        return None
    summary = result.summary()
    if payout_note:
        summary["payout_note"] = payout_note
    return _Evaluated(participant_id, start, end, current, reason, result, (payout_currency, payout), summary,
                      fingerprint)


async def _compose(uow: UnitOfWork, data: OrgData, evaluated: _Evaluated, now: datetime) -> _Computed:
    """The statement's version and lines: a version already seen (reviewed or approved) is kept and a new one made
    of its lines plus adjustment lines for the differences."""
    e, current = evaluated, evaluated.current
    lines = e.result.lines
    if current is not None and current.status in ("reviewed", "approved"):
        base = [repo.line_of(r) for r in await repo.statement_lines_of(uow.session, data.org_id, current.statement_id)]
        lines = base + recalculation_lines(base, e.result.lines, e.reason)
        outcome, version = "new_version", current.version + 1
        statement_id = str(uuid.uuid4())
    elif current is not None:
        version, statement_id, outcome = current.version, current.statement_id, "updated"
        if version > 1:  # a draft after a seen version: that version's lines plus the differences
            seen = await stored.statement_version(uow.session, data.org_id, e.participant_id, e.start, version - 1)
            base = [repo.line_of(r) for r in await repo.statement_lines_of(uow.session, data.org_id, seen.statement_id)]
            lines = base + recalculation_lines(base, e.result.lines, e.reason)
    else:
        version, statement_id, outcome = 1, str(uuid.uuid4()), "created"
    total = sum((line.amount for line in lines), Decimal(0))
    if total != e.result.total:  # the composed lines must pay what the recomputation pays
        raise AssertionError(f"statement lines sum to {total}, the computation to {e.result.total}")
    values = {"status": "computed", "plan_currency": e.result.currency, "total": total,
              "payout_currency": e.payout[0], "payout": e.payout[1], "summary": e.summary,
              "fingerprint": e.fingerprint, "reason": e.reason, "computed_at": now}
    return _Computed(e.participant_id, e.start, e.end, current, outcome, version, statement_id, lines, total, values,
                     e.reason)


# Statements are computed in groups of about this many credits; above one group, each group is computed in a
# worker thread while the lines of the one before are written, so that PostgreSQL stores lines (~60 % of the
# time of a COPY is the server's) while the next ones are computed. The computation is pure: only the event
# loop's thread touches the database.
CREDITS_PER_GROUP = 5000


# (participant, period start, period end, current version, reason, input)
_ToCompute = tuple[str, date, date, Any, str, StatementInput]


async def _compute_and_write(uow: UnitOfWork, data: OrgData, todo: list[_ToCompute],
                             now: datetime) -> list[_Computed]:
    """Compute these statements, write the lines of those that changed, and return them (their rows are stored by
    `_store`)."""
    groups: list[list[_ToCompute]] = [[]]
    size = 0
    for item in todo:
        if size >= CREDITS_PER_GROUP:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += len(item[5].credits) + 1

    def evaluate(group: list[_ToCompute]) -> list[_Evaluated | None]:
        return [_evaluate(data, *item) for item in group]

    computed: list[_Computed] = []
    written = 0
    pending: asyncio.Future[list[_Evaluated | None]] | None = None
    try:
        for group in groups:
            if len(groups) == 1:
                evaluated = evaluate(group)
            else:
                pending = asyncio.ensure_future(asyncio.to_thread(evaluate, group))
                if written < len(computed):  # the group before's lines, while this one is computed
                    await stored.replace_lines(uow.session, data.org_id,
                                               {c.statement_id: c.lines for c in computed[written:]})
                    written = len(computed)
                evaluated = await pending
                pending = None
            for one in evaluated:
                if one is not None:
                    computed.append(await _compose(uow, data, one, now))
        if written < len(computed):
            await stored.replace_lines(uow.session, data.org_id, {c.statement_id: c.lines for c in computed[written:]})
    finally:
        if pending is not None:  # a write failed: let the thread finish before the transaction is given up
            await asyncio.wait([pending])
    return computed


async def _store(uow: UnitOfWork, data: OrgData, computed: list[_Computed], now: datetime) -> None:
    """Store a period's recomputed statements (their lines are written already) together: a few statements for all
    of them, not a few each, and announce them."""
    if not computed:
        return
    org_id = data.org_id
    # The rows are locked (recompute_many read them FOR UPDATE), so the revision read is the one to bump.
    await stored.update_statements(uow.session, org_id, [
        stored.StatementChange(c.current.statement_id, c.current.revision + 1, {"status": "superseded"})
        for c in computed if c.outcome == "new_version"])
    await stored.insert_statements(uow.session, org_id, [
        stored.NewStatement(c.statement_id, c.participant_id, c.start, c.end, c.version, c.values)
        for c in computed if c.outcome != "updated"])
    await stored.update_statements(uow.session, org_id, [
        stored.StatementChange(c.statement_id, c.current.revision + 1, c.values)
        for c in computed if c.outcome == "updated"])
    for c in computed:
        revision = 1 if c.outcome != "updated" else c.current.revision + 1
        statement = StatementFigures(statement_id=c.statement_id, participant_id=c.participant_id,
                                     period_start=c.start, period_end=c.end, version=c.version,
                                     total=cents(c.total), plan_currency=c.values["plan_currency"],
                                     payout=cents(c.values["payout"]), payout_currency=c.values["payout_currency"])
        uow.publish(StatementComputedV1(statement=statement, reason=c.reason, computed_at=now),
                    org_id=org_id, subject_id=c.statement_id, subject_version=revision)
        if c.outcome == "new_version":
            await audit.record(uow, org_id, "system", now, "statement_recalculated", "statement", c.statement_id,
                               {"statement_id": c.current.statement_id, "version": c.current.version,
                                "total": str(c.current.total)},
                               {"statement_id": c.statement_id, "version": c.version, "total": str(c.total),
                                "reason": c.reason})


async def recompute(uow: UnitOfWork, data: OrgData, participant_id: str, start: date, reason: str,
                    now: datetime, credits: dict[str, list[PlannedCredit]] | None = None) -> str | None:
    """Compute one statement; returns what happened: created, updated, new_version, or None (no change).
    `credits`: the period's credits preloaded for many participants (see `recompute_many`)."""
    current = (await repo.latest_statements(uow.session, data.org_id, [participant_id], start,
                                            for_update=True)).get(participant_id)
    prepared = await _statement_input_of(uow, data, participant_id, start, current, credits, None)
    if prepared is None:
        return None
    computed = await _compute_and_write(uow, data, [(participant_id, start, prepared[0], current, reason,
                                                      prepared[1])], now)
    await _store(uow, data, computed, now)
    return computed[0].outcome if computed else None


# Above this many statements of one period, the whole org's wins are read once instead of each closer's.
BULK_FROM = 8


async def recompute_many(uow: UnitOfWork, data: OrgData, targets: dict[tuple[str, date], str],
                         now: datetime) -> dict[str, int]:
    """Recompute many statements ((participant, period start) -> reason), in period order so draw balances carry
    forward; returns counts by outcome. Each period's statements are read, computed and stored together."""
    by_period: dict[tuple[date, date], list[str]] = {}
    for participant, start in targets:
        plan = data.plan_of(participant, start)
        if plan is not None:
            by_period.setdefault(period_bounds(plan.plan.period, start), []).append(participant)
    outcomes: dict[str, int] = {}
    with _without_cyclic_gc() if len(targets) >= BULK_FROM else nullcontext():
        await _recompute_periods(uow, data, targets, by_period, now, outcomes)
    return outcomes


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while many statements are computed: they make hundreds of thousands of
    objects that live until stored (wins, credits, lines), and the collector went through all of them again and
    again (a third of the CPU of an org's quarter). Their garbage is freed by reference counting as usual;
    collections resume when this ends. Re-entrant across tasks: whoever disabled it enables it again."""
    disabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if disabled:
            gc.enable()


async def _recompute_periods(uow: UnitOfWork, data: OrgData, targets: dict[tuple[str, date], str],
                             by_period: dict[tuple[date, date], list[str]], now: datetime,
                             outcomes: dict[str, int]) -> None:
    for (start, end), participants in sorted(by_period.items()):
        participants = sorted(participants)
        credits = await credits_in_period(uow, data, start, end) if len(participants) >= BULK_FROM else None
        current = await repo.latest_statements(uow.session, data.org_id, participants, start, for_update=True)
        # The period's other inputs, for everyone whose statement may change and ends with the period (a
        # statement kept from an earlier plan with other period bounds reads its own).
        open_ = [p for p in participants if p not in current or current[p].status not in CLOSED]
        same_end = [p for p in open_ if p not in current or current[p].period_end == end]
        inputs = await PeriodInputs.load(uow, data, same_end, start, end) if len(same_end) > 1 else None
        todo = []
        for participant in participants:
            prepared = await _statement_input_of(uow, data, participant, start, current.get(participant), credits,
                                                 inputs)
            if prepared is not None:
                todo.append((participant, start, prepared[0], current.get(participant),
                             targets[(participant, start)], prepared[1]))
        computed = await _compute_and_write(uow, data, todo, now)
        await _store(uow, data, computed, now)
        changed = {one.participant_id: one.outcome for one in computed}
        for participant in participants:
            outcome = changed.get(participant, "unchanged")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1


async def get_statement_row(uow: UnitOfWork, org_id: str, statement_id: str) -> StatementRow:
    row = await stored.statement_of(uow.session, org_id, statement_id)
    if row is None:
        raise NotFound(f"no statement {statement_id}")
    return row


# ------------------------------------------------------------------ what to recompute
async def targets_for_lead(uow: UnitOfWork, data: OrgData, lead_id: str, today: date) -> set[tuple[str, date]]:
    outcomes = await repo.lead_outcomes(uow.session, data.org_id, lead_id)
    found: set[tuple[str, date]] = set()
    for won in (o for o in outcomes if o.kind == "won"):
        win = Win(won.event_id, lead_id, repo.aware(won.at), Decimal(won.value or 0), won.currency or "",
                  won.owner_id, won.team_id)
        for credit in data.credits_of(win, None):
            for day in {won.at.date(), today, *(o.at.date() for o in outcomes if o.kind != "won")}:
                period = data.period_of(credit.participant_id, day)
                if period is not None:
                    found.add((credit.participant_id, period[0]))
    return found


async def targets_for_participant(data: OrgData, participant_id: str, since: date,
                                  today: date) -> set[tuple[str, date]]:
    """The participant's periods from the one containing `since` to the current one (a plan created or changed
    for past dates computes the statements of those periods too)."""
    if not data.plans:
        return set()
    day = max(since, min(v.plan.effective_from for v in data.plans))
    found: set[tuple[str, date]] = set()
    for _ in range(400):  # at most ~33 years of months, however old `since` is
        if day > today:
            break
        period = data.period_of(participant_id, day)
        if period is not None:
            found.add((participant_id, period[0]))
            day = period[1]
        else:
            later = [v.plan.effective_from for v in data.plans if v.plan.effective_from > day]
            if not later:
                break
            day = min(later)
    if not found and since > today and (period := data.period_of(participant_id, since)) is not None:
        found.add((participant_id, period[0]))
    return found


async def targets_for_org(uow: UnitOfWork, data: OrgData, since: date, today: date) -> set[tuple[str, date]]:
    """Every open statement from `since` on, and every period from `since` to now of everyone a plan covers."""
    found = await stored.open_statement_periods(uow.session, data.org_id, OPEN, since)
    people = set(data.payees) | {p for v in data.plans for p in v.plan.coverage.participants} | data.named
    for participant in people:
        found |= await targets_for_participant(data, participant, since, today)
    return found


async def recalculate_queued(context: ServiceContext, now: datetime, batch: int = 50) -> int:
    """Take up to `batch` queued changes, recompute the statements they affect; returns how many were taken."""
    async with context.uow() as uow:
        rows = await queued.take_queued(uow.session, batch)
        if not rows:
            return 0
        by_org: dict[str, list[queued.QueuedRecalculation]] = {}
        for row in rows:
            by_org.setdefault(row.org_id, []).append(row)
        for org_id, items in by_org.items():
            data = await OrgData.load(uow, org_id)
            targets: dict[tuple[str, date], str] = {}
            for item in items:
                if item.subject_kind == "lead":
                    found = await targets_for_lead(uow, data, item.subject_id, now.date())
                elif item.subject_kind == "participant":
                    found = await targets_for_participant(data, item.subject_id, item.on_date, now.date())
                else:
                    assert item.subject_id == WHOLE_ORG
                    found = await targets_for_org(uow, data, item.on_date, now.date())
                for target in found:
                    targets.setdefault(target, item.reason)
            await recompute_many(uow, data, targets, now)
        await uow.commit()
        return len(rows)


def recalculation_worker(clock: Any, interval_s: float, batch: int) -> Worker:
    """Recompute what is queued, within `interval_s` of the commit that queued it. The queue is read only when
    this process committed a recalculation since the last read, while a backlog drains, and at the safety-net
    interval (`worker_idle_poll_s`: notes another process queued), not at every tick: idle, it costs nothing."""
    async def recalculation_worker(context: ServiceContext) -> None:
        queued_here = asyncio.Event()
        queued_here.set()  # whatever was queued before this process started
        queued.when_queued(context.database.engine, queued_here.set)
        next_read = 0.0
        backlog = False

        async def tick() -> int:
            nonlocal next_read, backlog
            if not (queued_here.is_set() or backlog or time.monotonic() >= next_read):
                return 0
            queued_here.clear()  # before the read: a commit during it sets it again
            next_read = time.monotonic() + context.settings.worker_idle_poll_s
            taken = await recalculate_queued(context, clock.now(), batch)
            backlog = taken > 0
            return taken

        await run_periodically(context, tick, interval_s, "recalculation", wake_on_commit=True)
    return recalculation_worker


# ------------------------------------------------------------------ workflow
async def transition(uow: UnitOfWork, org_id: str, statement_id: str, action: str, actor: str, now: datetime,
                     payment_reference: str | None = None) -> Any:
    """review, approve, lock or pay the newest version of a statement (409 from any other state)."""
    row = await get_statement_row(uow, org_id, statement_id)
    source, target = TRANSITIONS[action]
    if row.status != source:
        raise Conflict(f"statement {statement_id} is {row.status}; {action} needs it {source}")
    stamp = {"review": "reviewed", "approve": "approved", "lock": "locked", "pay": "paid"}[action]
    values: dict[str, Any] = {"status": target, f"{stamp}_by": actor, f"{stamp}_at": now,
                              "revision": row.revision + 1}
    if action == "pay":
        values["payment_reference"] = payment_reference
    if not await stored.move_statement(uow.session, org_id, statement_id, source, values):
        raise Conflict(f"statement {statement_id} changed meanwhile; read it again")
    updated = await get_statement_row(uow, org_id, statement_id)
    announcements: dict[str, Callable[[StatementFigures], EventData]] = {
        "approve": lambda f: StatementApprovedV1(statement=f, approved_by=actor, approved_at=now),
        "lock": lambda f: StatementLockedV1(statement=f, locked_by=actor, locked_at=now),
        "pay": lambda f: StatementPaidV1(statement=f, paid_by=actor, paid_at=now,
                                         payment_reference=payment_reference)}
    event = announcements.get(action)
    if event is not None:
        uow.publish(event(figures(updated)), org_id=org_id, subject_id=statement_id, subject_version=updated.revision)
    await audit.record(uow, org_id, actor, now, f"statement_{stamp}", "statement", statement_id,
                       {"status": source}, {"status": target, "version": row.version})
    return updated
