"""Money, periods and the org's dated exchange rates (pure).

Amounts are Decimals rounded to cents half-up at each statement line (the line is what is paid, so the total
is exactly the sum of the lines). Conversions use the org's dated exchange rates with the
model every service shares (salesflow_shared.currency.ExchangeRates), the same as metrics-service's reports.
"""
from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from salesflow_shared.currency import Conversion, ExchangeRates, Rate

__all__ = ["Conversion", "ExchangeRates", "Rate", "cents", "pct", "period_bounds", "show"]

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


