"""Metric formulas, pure: the reports compute the same definitions in SQL, these are the reference."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol, TypeVar

CENT = Decimal("0.01")
Number = TypeVar("Number", float, Decimal)  # a median of decimals (money) is exact, of floats a float


class Values(Protocol):
    """What the percentiles read: a list of floats, or a float64 numpy array (the rollups' durations, which
    are never turned into a list)."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> float: ...
    def __iter__(self) -> Iterator[float]: ...


def money(value: object) -> str | None:
    """A decimal string with two places (money is never a float in a report)."""
    if value is None:
        return None
    return str(Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP))


def pct(numerator: float | int | Decimal | None, denominator: float | int | Decimal | None) -> float | None:
    """numerator / denominator × 100, rounded to 2 places; None when the denominator is 0 or missing."""
    if numerator is None or not denominator:
        return None
    return round(float(numerator) * 100.0 / float(denominator), 2)


def median(values: Sequence[Number]) -> Number | None:
    """Mean of the two middle values (the middle one when the count is odd)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    return (ordered[(n + 1) // 2 - 1] + ordered[(n + 2) // 2 - 1]) / 2


def percentile_cont(ordered: Values, fraction: float) -> float | None:
    """PostgreSQL's percentile_cont over values already in ascending order, with its arithmetic (so a median
    computed here equals the SQL one to the last bit): lo + fraction_between × (hi − lo)."""
    n = len(ordered)
    if n == 0:
        return None
    position = fraction * (n - 1)
    first = math.floor(position)
    if first == math.ceil(position):
        return ordered[first]
    lo, hi = ordered[first], ordered[first + 1]
    return lo + (position - first) * (hi - lo)


def nearest_rank(values: Values, percent: int, *, presorted: bool = False) -> float | None:
    """The value at rank ceil(percent/100 × n) in ascending order (nearest-rank percentile)."""
    ordered = values if presorted else sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    rank = (percent * n + 99) // 100
    return ordered[max(rank, 1) - 1]


def win_rate(won: int, lost: int) -> float | None:
    return pct(won, won + lost)


def forecast_accuracy(forecast: Decimal, actual: Decimal) -> float | None:
    """1 − |forecast − actual| / actual, as a percentage; None when nothing was won (actual = 0)."""
    if not actual:
        return None
    return round((1 - abs(float(forecast) - float(actual)) / float(actual)) * 100.0, 2)


def forecast_bias(forecast: Decimal, actual: Decimal) -> Decimal:
    """Signed error: positive = over-forecast."""
    return Decimal(forecast) - Decimal(actual)


def pace(attainment_pct: float | None, elapsed_share: float) -> float | None:
    """Attainment relative to the share of the period elapsed: 100 = exactly on pace."""
    if attainment_pct is None or elapsed_share <= 0:
        return None
    return round(attainment_pct / elapsed_share, 2)
