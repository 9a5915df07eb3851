"""The plan maths: from won deals to credits, from credits to a statement's lines (pure functions).

1. Credits (`credits_for_win`): the closer's plan's credit rule says who is credited for a win and with what
   share: splits (percentages summing to 100; "closer" is the owner at the win) and overlays (a team manager
   credited a percentage of every win of their teams, on top of the splits).
2. A statement (`compute_statement`) for one participant and period, in the currency of their plan:
   - each credit is converted at the org's rate on the day of the win, and counts towards attainment
     (credited value / quota) unless it was clawed back: the deal was lost, reopened or refunded within the
     plan's clawback days of the win;
   - commission per credit: the base rate, or the tier rates by attainment — retroactive (the band reached at
     the end of the period pays on every credit from the first one) or marginal (each slice of credit is paid
     at the rate of the band it falls in, in the order the deals were won). Each credit uses the plan in force
     on its win date (a mid-period plan change pays earlier deals on the old terms, later ones on the new);
   - hurdle: below it no commission is paid; cap: commission stops at the cap (the deal that crosses it is
     paid up to it); both, and the draw, are the terms of the plan in force at the end of the period;
   - SPIFFs (per product line, per deal above a size, per new logo) on split credits, pro rata of the share,
     outside hurdle and cap;
   - adjustments and corrections (of locked periods) as given;
   - the draw last: earnings below it are topped up (recoverable draws are owed back and recovered from later
     earnings above the draw).
   The total is the sum of the lines; every line carries the steps that explain it.
3. `recalculation_lines` and `corrections` turn a recomputation into adjustment lines against what was already
   approved or locked, so nothing already seen is rewritten silently.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from .money import HUNDRED, ZERO, ExchangeRates, cents, pct, show
from .plans import CLOSER, Band, Plan, PlanVersion

DEAL_KINDS = ("commission", "clawback", "spiff")  # lines about a deal (corrected after a lock)


# ------------------------------------------------------------------ credits
@dataclass(frozen=True)
class Win:
    event_id: str
    lead_id: str
    at: datetime
    value: Decimal
    currency: str
    closer_id: str | None
    team_id: str | None = None
    product_line: str | None = None
    new_logo: bool = False


@dataclass(frozen=True)
class Reversal:
    """A won deal lost, reopened or refunded afterwards."""

    lead_id: str
    at: datetime
    kind: str  # lost, reopened, refunded


@dataclass(frozen=True)
class Credit:
    credit_id: str
    win: Win
    participant_id: str
    kind: str  # split, overlay
    percent: Decimal
    rule: str  # the credit rule that produced it, e.g. "credit.splits[1]"
    source: str  # the plan whose credit rule it is
    reversal: Reversal | None = None  # the first reversal after the win (a clawback if within the days)


def first_reversal(win: Win, reversals: Iterable[Reversal], later_wins: Iterable[datetime] = ()) -> Reversal | None:
    """The first loss/reopening/refund after this win and before the deal was won again."""
    next_win = min((at for at in later_wins if at > win.at), default=None)
    candidates = [r for r in reversals if r.at >= win.at and (next_win is None or r.at < next_win)]
    return min(candidates, key=lambda r: r.at, default=None)


def credits_for_win(win: Win, closer_plan: PlanVersion | None, reversal: Reversal | None = None) -> list[Credit]:
    """Who the closer's plan credits for this win. Without a plan the closer gets it all."""
    credits: list[Credit] = []
    if closer_plan is None:
        if win.closer_id:
            credits.append(Credit(f"{win.event_id}:{win.closer_id}:split", win, win.closer_id, "split", HUNDRED,
                                  "closer (no plan covers the closer)", "none", reversal))
        return credits
    plan, source = closer_plan.plan, closer_plan.label
    split_of: dict[str, int] = {}  # participant -> their split credit's index in `credits`
    for i, split in enumerate(plan.splits):
        who = win.closer_id if split.to == CLOSER else split.to
        if not who:
            continue
        if who in split_of:  # the closer also named: one credit with both shares
            existing = credits[split_of[who]]
            credits[split_of[who]] = replace(existing, percent=existing.percent + split.percent,
                                             rule=f"{existing.rule}+credit.splits[{i}]")
            continue
        split_of[who] = len(credits)
        credits.append(Credit(f"{win.event_id}:{who}:split", win, who, "split", split.percent,
                              f"credit.splits[{i}]", source, reversal))
    for i, overlay in enumerate(plan.overlays):
        if win.team_id in overlay.teams and overlay.participant != win.closer_id:
            credits.append(Credit(f"{win.event_id}:{overlay.participant}:overlay", win, overlay.participant,
                                  "overlay", overlay.percent, f"credit.overlays[{i}]", source, reversal))
    return credits


# ------------------------------------------------------------------ statements
@dataclass(frozen=True)
class Line:
    kind: str  # commission, clawback, spiff, adjustment, correction, recalculation, draw, draw_recovery, program_spiff
    key: str  # what it is about, stable across recomputations
    amount: Decimal
    description: str
    steps: tuple[str, ...] = ()
    lead_id: str | None = None
    plan_id: str | None = None
    plan_version: int | None = None
    rule: str | None = None
    reason: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class PlannedCredit:
    """A credit with the recipient's plan in force on the win date (None: no plan covers them then)."""

    credit: Credit
    plan: PlanVersion | None


@dataclass(frozen=True)
class Quota:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Adjustment:
    adjustment_id: str
    amount: Decimal
    reason: str
    author: str
    kind: str = "adjustment"


@dataclass(frozen=True)
class StatementInput:
    participant_id: str
    period_start: date
    period_end: date  # exclusive
    period_plan: PlanVersion  # in force at the end of the period: currency, hurdle, cap, draw
    credits: Sequence[PlannedCredit]
    rates: ExchangeRates = field(default_factory=ExchangeRates)
    quota: Quota | None = None
    draw_balance_before: Decimal = ZERO  # recoverable draw still owed from earlier periods
    adjustments: Sequence[Adjustment] = ()
    corrections: Sequence[Line] = ()
    rewards: Sequence[Line] = ()  # incentive programs' cash rewards (domain/programs/rewards.py), as given


@dataclass
class Statement:
    lines: list[Line]
    currency: str
    attained: Decimal
    quota: Decimal | None
    attainment_pct: Decimal | None
    draw_balance_after: Decimal
    warnings: list[str]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    def summary(self) -> dict[str, object]:
        return {"attained": str(cents(self.attained)),
                "quota": None if self.quota is None else str(cents(self.quota)),
                "attainment_pct": (None if self.attainment_pct is None
                                   else str(self.attainment_pct.quantize(Decimal("0.01")))),
                "draw_balance_after": str(cents(self.draw_balance_after)), "warnings": self.warnings}


@dataclass
class _Priced:
    entry: PlannedCredit
    plan: PlanVersion
    credited: Decimal  # in the statement currency, unrounded
    steps: list[str]
    clawed_back: bool
    # Shown in more than one step or description of the line: formatted once.
    shown_value: str = ""  # the deal's value, in the deal's currency
    shown_credited: str = ""  # the credited amount, in the statement currency


def _band_for(bands: Sequence[Band], attainment: Decimal) -> tuple[int, Band]:
    for i, band in enumerate(bands):
        if attainment >= band.start and (band.end is None or attainment < band.end):
            return i, band
    return 0, bands[0]


@dataclass(frozen=True)
class _FlatRate:
    """How every credit of a statement under one plan is paid when they all take one rate (base rate, or
    retroactive tiers: the band the period's attainment falls in). The same for all of them, so worked out once
    per statement and plan, with the text its steps share."""

    rate: Decimal
    rule: str
    explained: str  # the step that explains the rate
    separate: bool  # the rate's explanation is a step of its own (else it prefixes the product)
    times: str  # " × 5% = ", between the credited amount and the commission


def _flat_rate(plan: Plan, attainment: Decimal | None, quota: Decimal | None) -> _FlatRate | None:
    """None for marginal tiers (each credit is paid by the bands it covers)."""
    if plan.tiers is None or quota is None or attainment is None:
        # union-attr: parse_plan refuses a plan with neither a base rate nor tiers
        rate = plan.base_rate if plan.base_rate is not None else plan.tiers.bands[0].rate  # type: ignore[union-attr]
        rule = "base_rate" if plan.base_rate is not None else "tiers.bands[0]"
        note = "" if plan.tiers is None else " (no quota for the period: tiers cannot apply)"
        shown_rate = pct(rate * HUNDRED)
        return _FlatRate(rate, rule, f"rate {shown_rate} ({rule}){note}: ", False, f" × {shown_rate} = ")
    if plan.tiers.mode == "retroactive":
        i, band = _band_for(plan.tiers.bands, attainment)
        shown_rate = pct(band.rate * HUNDRED)
        return _FlatRate(band.rate, f"tiers.bands[{i}]", (
            f"retroactive tiers: attainment {pct(attainment)} falls in band {i} {band.label()} at {shown_rate}, "
            "paid on every credit of the period"), True, f" × {shown_rate} = ")
    return None


def _marginal(item: _Priced, quota: Decimal | None, cumulative: Decimal,
              currency: str) -> tuple[Decimal, str, list[str]]:
    """(unrounded commission, rule, steps) of one credit under marginal tiers, before hurdle and cap: the credit
    occupies [cumulative, cumulative + credited) of the quota; each part is paid at its band."""
    plan = item.plan.plan
    amount = item.credited
    assert plan.tiers is not None and quota is not None
    bands = plan.tiers.bands
    low, high = cumulative, cumulative + amount
    total, used, steps = ZERO, [], [
        f"marginal tiers: this credit covers {pct(low / quota * HUNDRED)} to {pct(high / quota * HUNDRED)} of the "
        f"quota {show(quota, currency)}"]
    for i, band in enumerate(bands):
        band_low = band.start / HUNDRED * quota
        band_high = None if band.end is None else band.end / HUNDRED * quota
        part = (high if band_high is None else min(high, band_high)) - max(low, band_low)
        if part > 0:
            total += part * band.rate
            used.append(f"tiers.bands[{i}]")
            steps.append(f"band {i} {band.label()}: {show(part, currency)} × {pct(band.rate * HUNDRED)} = "
                         f"{show(part * band.rate, currency)}")
    if amount == 0:
        used.append("tiers")
    return total, ",".join(used), steps


_WON_ORDER = attrgetter("credit.win.at", "credit.credit_id")  # in the order the deals were won


def compute_statement(inp: StatementInput) -> Statement:
    period_plan = inp.period_plan.plan
    currency = period_plan.currency
    warnings: list[str] = []
    priced: list[_Priced] = []
    # Thousands of credits share a few currencies and days: each (currency, day)'s rate is looked up once.
    day_rates: dict[tuple[str, date], tuple[Decimal, str] | None] = {}
    for entry in sorted(inp.credits, key=_WON_ORDER):
        credit, win = entry.credit, entry.credit.win
        plan = entry.plan
        won_on = win.at.date()
        if plan is None:
            warnings.append(f"{win.lead_id}: no plan covers {inp.participant_id} on {won_on}; not paid")
            continue
        rate_key = (win.currency, won_on)
        if rate_key not in day_rates:
            day_rates[rate_key] = inp.rates.rate(win.currency, currency, won_on)
        found = day_rates[rate_key]
        if found is None:
            warnings.append(f"{win.lead_id}: no exchange rate from {win.currency} to {currency} on {won_on}; "
                            "not paid until one is set")
            continue
        converted = win.value * found[0]
        credited = converted * credit.percent / HUNDRED
        shown_value, shown_credited = show(win.value, win.currency), show(credited, currency)
        steps = [f"deal {win.lead_id} won {won_on} for {shown_value}"]
        if win.currency != currency:
            steps.append(f"converted at {found[1]}: {show(converted, currency)}")
        steps.append(f"credit {pct(credit.percent)} ({credit.kind}, {credit.rule} of {credit.source}) = "
                     f"{shown_credited}")
        clawed = False
        if credit.reversal is not None and plan.plan.clawback_days is not None:
            days = (credit.reversal.at - win.at).total_seconds() / 86400
            clawed = days <= plan.plan.clawback_days
            if clawed:
                steps.append(f"{credit.reversal.kind} on {credit.reversal.at.date()}, {days:.0f} days after the win: "
                             f"within the clawback of {plan.plan.clawback_days} days")
        priced.append(_Priced(entry, plan, credited, steps, clawed, shown_value, shown_credited))

    quota = None
    if inp.quota is not None:
        conversion = inp.rates.convert(inp.quota.amount, inp.quota.currency, currency, inp.period_start)
        if conversion is None:
            warnings.append(f"quota: no exchange rate from {inp.quota.currency} to {currency} on {inp.period_start}")
        else:
            quota = conversion.amount
    attained = sum((p.credited for p in priced if not p.clawed_back), ZERO)
    attainment = attained / quota * HUNDRED if quota else None
    if quota is None and any(p.plan.plan.tiers is not None for p in priced):
        warnings.append("no quota for the period: tiers cannot apply; paid at the base rate")

    lines: list[Line] = []
    hurdle = period_plan.hurdle
    below_hurdle = hurdle is not None and attainment is not None and attainment < hurdle
    if hurdle is not None and attainment is None:
        warnings.append("no quota for the period: the hurdle cannot be checked and does not apply")
    cap, paid, cumulative = period_plan.cap, ZERO, ZERO
    shown_cap = show(cap, currency) if cap is not None else ""
    flat_rates: dict[int, _FlatRate | None] = {}  # by plan (the same for all its credits)
    hurdle_step = f"attainment {pct(attainment)} is below the hurdle of {pct(hurdle)}: nothing is paid" \
        if below_hurdle else ""
    for item in priced:
        credit, win, plan = item.entry.credit, item.entry.credit.win, item.plan
        if item.clawed_back:
            lines.append(Line("clawback", f"commission:{credit.credit_id}", ZERO,
                              f"{win.lead_id}: clawed back, no commission",
                              (*item.steps, "not counted towards attainment; no commission"),
                              win.lead_id, plan.plan_id, plan.version, "clawback"))
            continue
        if id(plan.plan) not in flat_rates:
            flat_rates[id(plan.plan)] = _flat_rate(plan.plan, attainment, quota)
        flat = flat_rates[id(plan.plan)]
        shown_raw = ""  # the unrounded commission as shown (rounded like the line)
        if flat is not None:
            raw, rule = item.credited * flat.rate, flat.rule
            shown_raw = show(raw, currency)
            product = f"{item.shown_credited}{flat.times}{shown_raw}"
            steps = [*item.steps, flat.explained, product] if flat.separate else \
                [*item.steps, flat.explained + product]
        else:
            raw, rule, marginal = _marginal(item, quota, cumulative, currency)
            steps = item.steps + marginal
        cumulative += item.credited
        amount = cents(raw)
        if below_hurdle:
            steps.append(hurdle_step)
            amount, rule, shown_raw = ZERO, f"{rule},hurdle", ""
        shown_amount = shown_raw  # show(amount) is show(raw): show rounds as cents() does
        if cap is not None and amount > 0:
            room = max(cap - paid, ZERO)
            if amount > room:
                shown_amount = show(room, currency)
                steps.append(f"cap {shown_cap} per period: {show(paid, currency)} already paid, so "
                             f"{shown_amount} of {shown_raw or show(amount, currency)}")
                amount, rule = room, f"{rule},cap"
        paid += amount
        steps.append(f"commission = {shown_amount or show(amount, currency)}")
        lines.append(Line("commission", f"commission:{credit.credit_id}", amount,
                          f"{win.lead_id}: commission on {pct(credit.percent)} of {item.shown_value}",
                          tuple(steps), win.lead_id, plan.plan_id, plan.version, rule))
    spiff_steps: dict[tuple[int, int, Decimal], tuple[Decimal, str]] = {}  # (plan, spiff, share) -> amount, step
    for item in priced:
        credit, plan = item.entry.credit, item.plan
        if item.clawed_back or credit.kind != "split" or not plan.plan.spiffs:
            continue
        win = credit.win
        for i, spiff in enumerate(plan.plan.spiffs):
            if spiff.kind == "product_line":
                if win.product_line != spiff.product_line:
                    continue
                why = f"product line {win.product_line}"
            elif spiff.kind == "large_deal":
                full_value = item.credited * HUNDRED / credit.percent
                if spiff.min_value is None or full_value < spiff.min_value:
                    continue
                why = (f"deal of {show(full_value, plan.plan.currency)} >= "
                       f"{show(spiff.min_value or ZERO, plan.plan.currency)}")
            else:
                if not win.new_logo:
                    continue
                why = "the customer's first won deal (new logo)"
            paid_for = (id(plan.plan), i, credit.percent)
            if paid_for not in spiff_steps:
                share = cents(spiff.amount * credit.percent / HUNDRED)
                spiff_steps[paid_for] = share, (f"{show(spiff.amount, currency)} × {pct(credit.percent)} credit = "
                                                f"{show(share, currency)}")
            amount, product = spiff_steps[paid_for]
            lines.append(Line("spiff", f"spiff:{credit.credit_id}:{i}", amount,
                              f"{win.lead_id}: SPIFF {spiff.name}",
                              (*item.steps, f"SPIFF {spiff.name} (spiffs[{i}]): {why}", product),
                              win.lead_id, plan.plan_id, plan.version, f"spiffs[{i}]"))
    for adjustment in inp.adjustments:
        lines.append(Line(adjustment.kind, f"adjustment:{adjustment.adjustment_id}", cents(adjustment.amount),
                          f"adjustment: {adjustment.reason}",
                          (f"{show(adjustment.amount, currency)} entered by {adjustment.author}: {adjustment.reason}",),
                          reason=adjustment.reason, author=adjustment.author))
    lines.extend(inp.corrections)
    lines.extend(inp.rewards)

    balance = inp.draw_balance_before
    draw = period_plan.draw
    if draw is not None:
        earned = sum((line.amount for line in lines), ZERO)
        plan_ref: dict[str, Any] = {"plan_id": inp.period_plan.plan_id, "plan_version": inp.period_plan.version}
        kind = "recoverable" if draw.recoverable else "non-recoverable"
        if earned < draw.amount:
            top_up = draw.amount - earned
            if draw.recoverable:
                balance += top_up
            lines.append(Line("draw", "draw", top_up, f"{kind} draw of {show(draw.amount, currency)}", (
                f"earned {show(earned, currency)} is below the draw of {show(draw.amount, currency)}: topped up by "
                f"{show(top_up, currency)}",
                f"draw balance owed: {show(balance, currency)}" if draw.recoverable else "not owed back"),
                rule="draw", **plan_ref))
        elif draw.recoverable and balance > 0:
            recovered = min(balance, earned - draw.amount)
            balance -= recovered
            lines.append(Line("draw_recovery", "draw_recovery", -recovered,
                              f"recovery of the draw ({show(recovered, currency)})", (
                                  f"earned {show(earned, currency)} is above the draw of {show(draw.amount, currency)} "
                                  f"by {show(earned - draw.amount, currency)}",
                                  f"recovered {show(recovered, currency)} of the {show(balance + recovered, currency)} "
                                  f"owed; still owed {show(balance, currency)}"), rule="draw", **plan_ref))
    return Statement(lines, currency, attained, quota, attainment, balance, warnings)


# ------------------------------------------------------------------ versions and corrections
def amounts_by_key(lines: Iterable[Line]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for line in lines:
        totals[line.key] = totals.get(line.key, ZERO) + line.amount
    return totals


def recalculation_lines(previous: Sequence[Line], recomputed: Sequence[Line], reason: str) -> list[Line]:
    """The adjustment lines that take a statement from what was seen (`previous`, its lines as approved) to the
    recomputation: one per line whose amount changed, appeared or disappeared."""
    before, after = amounts_by_key(previous), amounts_by_key(recomputed)
    source = {line.key: line for line in previous} | {line.key: line for line in recomputed}
    out = []
    for key in list(dict.fromkeys([*before, *after])):
        delta = after.get(key, ZERO) - before.get(key, ZERO)
        if delta == 0:
            continue
        line = source[key]
        out.append(Line("recalculation", key, delta,
                        f"recalculated ({reason}): {line.description}",
                        (f"was {show(before.get(key, ZERO))}, now {show(after.get(key, ZERO))}: {show(delta)}",
                         *line.steps), lead_id=line.lead_id, plan_id=line.plan_id, plan_version=line.plan_version,
                        rule=line.rule, reason=reason))
    return out


def corrections(period_start: date, locked: Sequence[Line], carried: Sequence[Line],
                recomputed: Sequence[Line]) -> list[Line]:
    """Lines for the next open statement that correct a locked period: for each deal line, what the period pays
    now minus what was locked and what earlier corrections already carried. A deal clawed back after the lock
    gives a `clawback` line taking its commission back."""
    prefix = f"correction:{period_start.isoformat()}:"
    deal_lines = [line for line in recomputed if line.kind in DEAL_KINDS]
    locked_by_key = amounts_by_key(line for line in locked if line.key.split(":")[0] in ("commission", "spiff"))
    carried_by_key = {key[len(prefix):]: amount for key, amount in amounts_by_key(carried).items()
                      if key.startswith(prefix)}
    now = amounts_by_key(deal_lines)
    source = {line.key: line for line in locked} | {line.key: line for line in deal_lines}
    clawed_back = {line.lead_id for line in deal_lines if line.kind == "clawback"}
    out = []
    for key in list(dict.fromkeys([*locked_by_key, *now])):
        delta = now.get(key, ZERO) - locked_by_key.get(key, ZERO) - carried_by_key.get(key, ZERO)
        if delta == 0:
            continue
        line = source[key]
        clawback = line.lead_id is not None and line.lead_id in clawed_back
        out.append(Line("clawback" if clawback else "correction", prefix + key, delta,
                        f"{'clawback' if clawback else 'correction'} for the locked period from {period_start}: "
                        f"{line.description}",
                        (f"locked {show(locked_by_key.get(key, ZERO))}, already corrected "
                         f"{show(carried_by_key.get(key, ZERO))}, due now {show(now.get(key, ZERO))}: {show(delta)}",
                         *line.steps), lead_id=line.lead_id, plan_id=line.plan_id,
                        plan_version=line.plan_version, rule=line.rule))
    return out
