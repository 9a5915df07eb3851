"""ISO 4217 currency codes, checked against the real list (pycountry's copy of the ISO 4217 data).

Every service that takes a currency from outside (a lead's value, a quota, an exchange rate, an org's
reporting currency) checks it here, so "EUR" passes and "XYZ" or "EURO" is refused with the same message.
"""
from __future__ import annotations

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
    return code  # type: ignore[return-value]


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
