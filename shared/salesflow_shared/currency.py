"""Currencies: ISO 4217 codes checked against the real list (pycountry's copy of the ISO 4217 data), and the
one model of dated exchange rates every service converts money with.

Every service that takes a currency from outside (a lead's value, a quota, an exchange rate, an org's
reporting currency) checks it here, so "EUR" passes and "XYZ" or "EURO" is refused with the same message.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Annotated

import pycountry
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

MESSAGE = "must be an ISO 4217 currency code such as 'EUR'"


@lru_cache(maxsize=1)
def iso_currencies() -> frozenset[str]:
    """The alphabetic codes of ISO 4217's list of currencies."""
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def is_iso_currency(code: str | None) -> bool:
    return isinstance(code, str) and code in iso_currencies()


def iso_currency(value: str) -> str:
    """The code in capitals; ValueError (the field's message) when it is not on the ISO 4217 list."""
    code = value.strip().upper() if isinstance(value, str) else value
    if not is_iso_currency(code):
        raise ValueError(MESSAGE)
    return code


def _text(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


# A pydantic field type: `currency: CurrencyCode` (capitalised, then checked against the list).
# Its schema lists the codes, so clients (and generated requests) know which three letters are a currency;
# lower case is accepted too and answered in capitals.
CURRENCY_SCHEMA = {"type": "string", "enum": sorted(iso_currencies()), "description": "ISO 4217 code"}
CurrencyCode = Annotated[str, BeforeValidator(_text), AfterValidator(iso_currency), WithJsonSchema(CURRENCY_SCHEMA)]


def _exact_iso_currency(value: str) -> str:
    if not is_iso_currency(value):
        raise ValueError(MESSAGE)
    return value


# The same list, taken exactly as written (capitals only), where an API has always refused "eur".
ExactCurrencyCode = Annotated[str, AfterValidator(_exact_iso_currency), WithJsonSchema(CURRENCY_SCHEMA)]


# ------------------------------------------------------------------ dated exchange rates
# One conversion model for every service that sums money (metrics-service's reports, incentive-service's
# statements), so a report and a commission statement never disagree about what a EUR win was worth in USD.


@dataclass(frozen=True)
class Rate:
    """1 `base` = `rate` `quote`, in force from `valid_from` (a UTC day) until the next rate of the same pair."""

    base: str
    quote: str
    valid_from: date
    rate: Decimal


@dataclass(frozen=True)
class Conversion:
    amount: Decimal  # unrounded: callers round once, where the figure is shown or paid
    rate: Decimal
    explanation: str


class ExchangeRates:
    """An org's dated rates and its reporting currency.

    An amount in currency S on day d becomes currency T by the rate of the pair (S, T) or the inverse of (T, S)
    in force on d, whichever was set for the later day (the direct pair on a tie); an inverse divides, so a
    rate and its inverse give back the same amount. With neither, it goes through the reporting currency
    (S → R → T, each step by the same rule). Otherwise it cannot be converted: `convert` answers None, and the
    caller names the amount instead of summing it.
    """

    def __init__(self, rates: Iterable[Rate] = (), reporting_currency: str | None = None) -> None:
        self.reporting_currency = reporting_currency
        by_pair: dict[tuple[str, str], list[Rate]] = {}
        for rate in rates:
            by_pair.setdefault((rate.base, rate.quote), []).append(rate)
        self._pairs = {pair: sorted(items, key=lambda r: r.valid_from) for pair, items in by_pair.items()}
        self._days = {pair: [r.valid_from for r in items] for pair, items in self._pairs.items()}

    def _in_force(self, base: str, quote: str, on: date) -> Rate | None:
        days = self._days.get((base, quote))
        if not days:
            return None
        index = bisect.bisect_right(days, on) - 1
        return self._pairs[(base, quote)][index] if index >= 0 else None

    def _one_step(self, amount: Decimal, source: str, target: str, on: date) -> Conversion | None:
        direct, inverse = self._in_force(source, target, on), self._in_force(target, source, on)
        if direct is not None and (inverse is None or direct.valid_from >= inverse.valid_from):
            return Conversion(amount * direct.rate, direct.rate,
                              f"1 {source} = {direct.rate.normalize():f} {target} (from {direct.valid_from})")
        if inverse is not None and inverse.rate:
            return Conversion(amount / inverse.rate, Decimal(1) / inverse.rate,
                              f"1 {target} = {inverse.rate.normalize():f} {source} (from {inverse.valid_from}), "
                              "inverted")
        return None

    def rate(self, source: str | None, target: str, on: date) -> tuple[Decimal, str] | None:
        """(what 1 `source` is in `target` on `on`, how that was found), or None: for converting many amounts of
        one currency and day with one lookup."""
        found = self.convert(Decimal(1), source, target, on)
        return None if found is None else (found.amount, found.explanation)

    def convert(self, amount: Decimal, source: str | None, target: str, on: date) -> Conversion | None:
        if source == target:
            return Conversion(amount, Decimal(1), f"same currency ({source})")
        if not source:  # an amount whose currency nobody gave
            return None
        step = self._one_step(amount, source, target, on)
        if step is not None:
            return step
        middle = self.reporting_currency
        if middle and middle not in (source, target):
            first = self._one_step(amount, source, middle, on)
            second = self._one_step(first.amount, middle, target, on) if first is not None else None
            if first is not None and second is not None:
                return Conversion(second.amount, first.rate * second.rate,
                                  f"{first.explanation}; then {second.explanation}")
        return None
