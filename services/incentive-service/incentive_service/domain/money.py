"""Money, periods and the org's dated exchange rates (pure).

Amounts are Decimals rounded to cents half-up at each statement line (the line is what is paid, so the total
is exactly the sum of the lines). A rate "1 base = rate quote" is in force from its date until the next rate of
the same pair; a conversion uses the direct pair, else the inverse one (whichever was set more recently), else
goes through the org's reporting currency — the model metrics-service's reports use.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

CENT = Decimal("0.01")
ZERO = Decimal("0")
HUNDRED = Decimal("100")


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def show(amount: Decimal, currency: str | None = None) -> str:
    """12345.6 -> '12,345.60 EUR' (for explanations; rounded half up like the lines)."""
    text = format(amount.quantize(CENT, rounding=ROUND_HALF_UP), ",f")
    return f"{text} {currency}" if currency else text


@lru_cache(maxsize=4096)  # rates, shares and attainments repeat on every line of a statement
def pct(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP).normalize():f}%"


# ------------------------------------------------------------------ periods
PERIODS = ("month", "quarter")


def period_bounds(period: str, on: date) -> tuple[date, date]:
    """The [start, end) of the month or quarter that contains `on`."""
    if period == "month":
        start = on.replace(day=1)
        months = 1
    elif period == "quarter":
        start = date(on.year, (on.month - 1) // 3 * 3 + 1, 1)
        months = 3
    else:
        raise ValueError(f"unknown period {period!r}")
    month = start.month - 1 + months
    return start, date(start.year + month // 12, month % 12 + 1, 1)


# ------------------------------------------------------------------ rates
@dataclass(frozen=True)
class Rate:
    base: str
    quote: str
    valid_from: date
    rate: Decimal


@dataclass(frozen=True)
class Conversion:
    amount: Decimal  # unrounded
    rate: Decimal
    explanation: str


class Rates:
    """The org's dated exchange rates and its reporting currency, for conversions on a given date."""

    def __init__(self, rates: Iterable[Rate] = (), reporting_currency: str | None = None) -> None:
        self.reporting_currency = reporting_currency
        by_pair: dict[tuple[str, str], list[Rate]] = {}
        for rate in rates:
            by_pair.setdefault((rate.base, rate.quote), []).append(rate)
        self._pairs = {pair: sorted(items, key=lambda r: r.valid_from) for pair, items in by_pair.items()}
        self._dates = {pair: [r.valid_from for r in items] for pair, items in self._pairs.items()}

    def _in_force(self, base: str, quote: str, on: date) -> Rate | None:
        dates = self._dates.get((base, quote))
        if not dates:
            return None
        index = bisect.bisect_right(dates, on) - 1
        return self._pairs[(base, quote)][index] if index >= 0 else None

    def _one_step(self, source: str, target: str, on: date) -> tuple[Decimal, str] | None:
        direct, inverse = self._in_force(source, target, on), self._in_force(target, source, on)
        if direct is not None and (inverse is None or direct.valid_from >= inverse.valid_from):
            return direct.rate, f"1 {source} = {direct.rate.normalize():f} {target} (from {direct.valid_from})"
        if inverse is not None:
            return (Decimal(1) / inverse.rate,
                    f"1 {target} = {inverse.rate.normalize():f} {source} (from {inverse.valid_from}), inverted")
        return None

    def rate(self, source: str, target: str, on: date) -> tuple[Decimal, str] | None:
        if source == target:
            return Decimal(1), f"same currency ({source})"
        step = self._one_step(source, target, on)
        if step is not None:
            return step
        middle = self.reporting_currency
        if middle and middle not in (source, target):
            first, second = self._one_step(source, middle, on), self._one_step(middle, target, on)
            if first is not None and second is not None:
                return first[0] * second[0], f"{first[1]}; then {second[1]}"
        return None

    def convert(self, amount: Decimal, source: str, target: str, on: date) -> Conversion | None:
        found = self.rate(source, target, on)
        if found is None:
            return None
        rate, explanation = found
        return Conversion(amount * rate, rate, explanation)
