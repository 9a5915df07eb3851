"""Converting money into one currency with the org's dated exchange rates (plain functions, no framework).

A rate says 1 `base` = `rate` `quote`, in force from `valid_from` (a UTC day) until the next rate of the same
pair. An amount in currency C on day d becomes currency T by the rate of the pair (C, T) in force on d, else by
the inverse of the pair (T, C) in force on d; with neither it cannot be converted: it is named, never summed.
Amounts are converted unrounded and each total is rounded to cents once, at the end (formulas.money).
"""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

EPOCH = date(1970, 1, 1)
UNKNOWN = ""  # an amount whose currency nobody gave


@dataclass(frozen=True)
class Rate:
    base: str
    quote: str
    valid_from: date
    rate: Decimal


class Rates:
    """The org's rates, looked up by pair and day."""

    def __init__(self, rates: Iterable[Rate] = ()) -> None:
        per_pair: dict[tuple[str, str], list[Rate]] = defaultdict(list)
        for r in rates:
            per_pair[(r.base, r.quote)].append(r)
        self._days = {pair: [r.valid_from for r in sorted(rs, key=lambda r: r.valid_from)]
                      for pair, rs in per_pair.items()}
        self._rates = {pair: [r.rate for r in sorted(rs, key=lambda r: r.valid_from)]
                       for pair, rs in per_pair.items()}

    def _in_force(self, pair: tuple[str, str], day: date) -> Decimal | None:
        days = self._days.get(pair)
        if not days:
            return None
        i = bisect_right(days, day)
        return self._rates[pair][i - 1] if i else None

    def convert(self, amount: Decimal, source: str, target: str, day: date) -> Decimal | None:
        """`amount` of `source` in `target` on `day` (times the pair's rate, or divided by the inverse pair's,
        so a rate and its inverse give back the same amount); None when no rate says."""
        if source == target:
            return amount
        if not source:
            return None
        direct = self._in_force((source, target), day)
        if direct is not None:
            return amount * direct
        inverse = self._in_force((target, source), day)
        return None if not inverse else amount / inverse


def day_of(day_number: int) -> date:
    """A UTC day number (days since 1970-01-01) as a date."""
    return EPOCH + timedelta(days=int(day_number))


@dataclass
class Converted:
    """A money figure in `currency`, with the original amounts it was made of and those it could not take."""

    currency: str
    amount: Decimal = Decimal(0)
    by_currency: dict[str, Decimal] = field(default_factory=dict)
    unconverted: dict[str, Decimal] = field(default_factory=dict)

    def add(self, rates: Rates, currency: str | None, amount: Any, day: date) -> None:
        value = Decimal(amount or 0)
        code = currency or UNKNOWN
        self.by_currency[code] = self.by_currency.get(code, Decimal(0)) + value
        if not value:
            return
        converted = rates.convert(value, code, self.currency, day)
        if converted is None:
            self.unconverted[code] = self.unconverted.get(code, Decimal(0)) + value
        else:
            self.amount += converted

    def merge(self, other: Converted) -> None:
        self.amount += other.amount
        for target, source in ((self.by_currency, other.by_currency), (self.unconverted, other.unconverted)):
            for code, value in source.items():
                target[code] = target.get(code, Decimal(0)) + value


def amounts(values: dict[str, Decimal]) -> list[dict[str, Any]]:
    """Per-currency amounts as report rows (an unknown currency as null), by currency code."""
    return [{"currency": code or None, "amount": f"{value.quantize(Decimal('0.01'))}"}
            for code, value in sorted(values.items())]
