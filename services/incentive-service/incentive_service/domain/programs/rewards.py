"""Cash rewards of incentive programs (SPIFFs) as lines of the commission statement: one line per award, in
the statement's currency (converted with the org's rate on the day it was earned), each explained."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ..commissions import Line
from ..money import ExchangeRates, cents, show

LINE_KIND = "program_spiff"


@dataclass(frozen=True)
class CashReward:
    program_id: str
    program_name: str
    award_key: str  # milestone:<id>:<rep>, place:<n>:<rep>
    name: str  # what earned it: "Silver", "place 1"
    amount: Decimal
    currency: str
    earned_on: date


def reward_lines(rewards: Iterable[CashReward], currency: str, rates: ExchangeRates) -> tuple[list[Line], list[str]]:
    """The statement lines of `rewards` and a warning for each one that cannot be converted yet (no rate: it
    lands once the rate is known)."""
    lines: list[Line] = []
    warnings: list[str] = []
    for r in sorted(rewards, key=lambda r: (r.earned_on, r.program_id, r.award_key)):
        conversion = rates.convert(r.amount, r.currency, currency, r.earned_on)
        if conversion is None:
            warnings.append(f"{r.program_name}: {r.name} ({show(r.amount, r.currency)}) waits for a "
                            f"{r.currency}→{currency} rate on {r.earned_on}")
            continue
        amount = cents(conversion.amount)
        steps = [f"{r.program_name}: {r.name}, earned on {r.earned_on}: {show(r.amount, r.currency)}"]
        if r.currency != currency:
            steps.append(f"{conversion.explanation}: {show(amount, currency)}")
        lines.append(Line(LINE_KIND, f"program:{r.program_id}:{r.award_key}", amount,
                          f"SPIFF {r.name} — {r.program_name}", tuple(steps), rule=f"program:{r.program_id}"))
    return lines, warnings
