"""The org's reporting currency and dated exchange rates: read for the reports, set by admins (API and CSV).

Each change is published in the same transaction (ReportingCurrencySet, ExchangeRateSet) for the services that
pay or plan by these figures.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.currency import MESSAGE as NOT_ISO
from salesflow_shared.currency import is_iso_currency
from salesflow_shared.errors import FieldError, PreconditionFailed, ValidationFailed
from salesflow_shared.events import ExchangeRateSetV1, ReportingCurrencySetV1
from salesflow_shared.preconditions import check_if_match, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain.exchange import ExchangeRates, Rate

DEFAULT_REPORTING_CURRENCY = "USD"  # until an admin sets the org's own
MAX_RATE = Decimal("1e12")
CSV_COLUMNS = ("base_currency", "quote_currency", "rate", "valid_from")
MAX_CSV_ROWS = 20_000


@dataclass
class Setup:
    currency: str
    rates: ExchangeRates


SETUP_CACHE = "currency_setup"  # per session (one request or one worker transaction): read once


async def setup(session: AsyncSession, org_id: str) -> Setup:
    """The org's reporting currency and all its rates (a few hundred rows at most)."""
    cached = session.info.setdefault(SETUP_CACHE, {})
    if org_id not in cached:
        cached[org_id] = await _read_setup(session, org_id)
    found: Setup = cached[org_id]
    return found


async def _read_setup(session: AsyncSession, org_id: str) -> Setup:
    setting = await repository.reporting_currency(session, org_id)
    reporting = setting.currency if setting is not None else DEFAULT_REPORTING_CURRENCY
    return Setup(reporting, ExchangeRates(await repository.rates(session, org_id), reporting))


async def reporting_currency(session: AsyncSession, org_id: str) -> tuple[str, int]:
    """The org's reporting currency and its version (0 while the default was never changed)."""
    setting = await repository.reporting_currency(session, org_id)
    return (setting.currency, setting.version) if setting is not None else (DEFAULT_REPORTING_CURRENCY, 0)


async def set_reporting_currency(uow: UnitOfWork, org_id: str, currency: str,
                                 if_match: str | None) -> dict[str, Any]:
    """Set the currency if `if_match` is the version read (`"0"` before the first setting; 428/412 otherwise)."""
    uow.session.info.pop(SETUP_CACHE, None)
    current = await repository.reporting_currency(uow.session, org_id, for_update=True)
    check_if_match(if_match, None if current is None else strong_etag(current.version), what="reporting currency")
    if current is not None and current.currency == currency:
        return {"currency": currency, "version": current.version}
    version = 1 if current is None else current.version + 1
    if current is None:  # another admin's first setting committed meanwhile: theirs stands, as a stale If-Match
        if not await repository.insert_reporting_currency(uow.session, org_id, currency, uow.clock.now()):
            raise PreconditionFailed("the reporting currency was set meanwhile; read it again")
    else:
        await repository.update_reporting_currency(uow.session, org_id, currency, version, uow.clock.now())
    uow.publish(ReportingCurrencySetV1(currency=currency), org_id=org_id, subject_id=org_id, subject_version=version)
    return {"currency": currency, "version": version}


def rate_out(rate: Rate) -> dict[str, Any]:
    return {"base_currency": rate.base, "quote_currency": rate.quote, "rate": str(rate.rate),
            "valid_from": rate.valid_from.isoformat()}


async def set_rates(uow: UnitOfWork, org_id: str, rates: list[Rate]) -> list[dict[str, Any]]:
    """Insert or replace each (pair, valid_from); publishes ExchangeRateSet for each rate that changed."""
    uow.session.info.pop(SETUP_CACHE, None)
    changed = []
    for rate in rates:
        if await repository.rate_on(uow.session, org_id, rate.base, rate.quote, rate.valid_from) == rate.rate:
            continue
        await repository.store_rate(uow.session, org_id, rate, uow.clock.now())
        uow.publish(ExchangeRateSetV1(base_currency=rate.base, quote_currency=rate.quote, rate=rate.rate,
                                      valid_from=rate.valid_from), org_id=org_id,
                    subject_id=f"{rate.base}/{rate.quote}/{rate.valid_from.isoformat()}")
        changed.append(rate_out(rate))
    return changed


def check_rate(base: str, quote: str, rate: Decimal, field: str = "") -> list[FieldError]:
    errors = []
    for name, code in (("base_currency", base), ("quote_currency", quote)):
        if not is_iso_currency(code):
            errors.append(FieldError(f"{field}{name}", NOT_ISO))
    if base == quote and not errors:
        errors.append(FieldError(f"{field}quote_currency", "must differ from base_currency"))
    if not (Decimal(0) < rate < MAX_RATE):
        errors.append(FieldError(f"{field}rate", "must be greater than 0 and below 10^12"))
    return errors


def parse_rates_csv(text: str) -> list[Rate]:
    """The rows of a CSV with the header base_currency,quote_currency,rate,valid_from (any column order);
    all or nothing: ValidationFailed names each bad row and field (`rows[3].rate`, counting data rows from 1)."""
    try:
        return _parse_rates_csv(text)
    except csv.Error as exc:  # e.g. a quote left open at the end of the file
        raise ValidationFailed.single("file", f"not a CSV file: {exc}") from None


def _parse_rates_csv(text: str) -> list[Rate]:
    # newline="": the csv module reads a lone CR as the end of a line, as the other line endings
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ValidationFailed.single("file", f"the header must name {', '.join(CSV_COLUMNS)} (missing: "
                                              f"{', '.join(missing)})")
    rates, errors = [], []
    for number, raw in enumerate(reader, start=1):
        if number > MAX_CSV_ROWS:
            raise ValidationFailed.single("file", f"at most {MAX_CSV_ROWS} rows per upload")
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"rows[{number}]."
        base, quote = row["base_currency"].upper(), row["quote_currency"].upper()
        try:
            rate = Decimal(row["rate"])
            if not rate.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            errors.append(FieldError(f"{where}rate", "must be a decimal number such as 1.0825"))
            rate = Decimal(1)
        try:
            valid_from = date.fromisoformat(row["valid_from"])
        except ValueError:
            errors.append(FieldError(f"{where}valid_from", "must be a date such as 2026-01-31"))
            valid_from = date.min
        row_errors = check_rate(base, quote, rate, where)
        errors += row_errors
        rates.append(Rate(base, quote, valid_from, rate))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors[:20]), errors=errors)
    if not rates:
        raise ValidationFailed.single("file", "no rates in the file")
    return rates
