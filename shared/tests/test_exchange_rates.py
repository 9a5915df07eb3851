"""The one conversion model (salesflow_shared.currency.ExchangeRates), with hand-computed amounts."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from salesflow_shared.currency import ExchangeRates, Rate

RATES = [
    Rate("EUR", "USD", date(2026, 1, 1), D("1.10")),
    Rate("EUR", "USD", date(2026, 3, 1), D("1.20")),
    Rate("GBP", "EUR", date(2026, 1, 1), D("1.25")),
    Rate("USD", "JPY", date(2026, 1, 1), D("150")),
]


def test_the_rate_in_force_on_the_day():
    rates = ExchangeRates(RATES)
    assert rates.convert(D("100"), "EUR", "USD", date(2026, 2, 28)).amount == D("110.00")
    assert rates.convert(D("100"), "EUR", "USD", date(2026, 3, 1)).amount == D("120.00")
    assert rates.convert(D("100"), "EUR", "USD", date(2025, 12, 31)) is None  # before any rate
    assert rates.convert(D("100"), "EUR", "EUR", date(2020, 1, 1)).amount == D("100")
    assert rates.convert(D("100"), None, "EUR", date(2026, 2, 1)) is None  # no currency given: never summed


def test_an_inverse_divides_so_the_round_trip_is_exact():
    rates = ExchangeRates(RATES)
    usd = rates.convert(D("4000.25"), "EUR", "USD", date(2026, 2, 1))
    assert usd.amount == D("4400.275")
    back = rates.convert(usd.amount, "USD", "EUR", date(2026, 2, 1))
    assert back.amount == D("4000.25")
    assert back.explanation == "1 EUR = 1.1 USD (from 2026-01-01), inverted"


def test_the_later_of_a_pair_and_its_inverse_wins():
    rates = ExchangeRates(RATES + [Rate("USD", "EUR", date(2026, 2, 1), D("0.8"))])
    assert rates.convert(D("100"), "EUR", "USD", date(2026, 2, 15)).amount == D("125")  # 100 / 0.8
    assert rates.convert(D("100"), "EUR", "USD", date(2026, 3, 15)).amount == D("120.00")  # EUR→USD is newer


def test_through_the_reporting_currency_only_when_no_pair_says():
    # GBP → USD: no pair; through EUR, the reporting currency: 100 GBP = 125 EUR = 137.5 USD on 1 February.
    rates = ExchangeRates(RATES, reporting_currency="EUR")
    through = rates.convert(D("100"), "GBP", "USD", date(2026, 2, 1))
    assert through.amount == D("137.5000")
    assert through.explanation == ("1 GBP = 1.25 EUR (from 2026-01-01); then 1 EUR = 1.1 USD (from 2026-01-01)")
    assert ExchangeRates(RATES).convert(D("100"), "GBP", "USD", date(2026, 2, 1)) is None
    # JPY has no path to EUR: named by the caller, never summed.
    assert rates.convert(D("100"), "JPY", "GBP", date(2026, 2, 1)) is None
