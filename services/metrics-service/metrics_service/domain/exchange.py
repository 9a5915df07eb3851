"""Converting money into one currency with the org's dated exchange rates (plain functions, no framework).

The rules of a conversion are salesflow_shared.currency.ExchangeRates' (the same as incentive-service's
statements): the pair or its inverse in force on the amount's day, else through the reporting currency; an
amount that cannot be converted is named, never summed.
Amounts are converted unrounded and each total is rounded to cents once, at the end (formulas.money).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from salesflow_shared.currency import ExchangeRates, Rate

__all__ = ["Converted", "ExchangeRates", "Rate", "amounts", "day_of"]

EPOCH = date(1970, 1, 1)
UNKNOWN = ""  # an amount whose currency nobody gave


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

    def add(self, rates: ExchangeRates, currency: str | None, amount: Any, day: date) -> None:
        value = Decimal(amount or 0)
        code = currency or UNKNOWN
        self.by_currency[code] = self.by_currency.get(code, Decimal(0)) + value
        if not value:
            return
        converted = rates.convert(value, code, self.currency, day)
        if converted is None:
            self.unconverted[code] = self.unconverted.get(code, Decimal(0)) + value
        else:
            self.amount += converted.amount

    def merge(self, other: Converted) -> None:
        self.amount += other.amount
        for target, source in ((self.by_currency, other.by_currency), (self.unconverted, other.unconverted)):
            for code, value in source.items():
                target[code] = target.get(code, Decimal(0)) + value


def amounts(values: dict[str, Decimal]) -> list[dict[str, Any]]:
    """Per-currency amounts as report rows (an unknown currency as null), by currency code."""
    return [{"currency": code or None, "amount": f"{value.quantize(Decimal('0.01'))}"}
            for code, value in sorted(values.items())]
