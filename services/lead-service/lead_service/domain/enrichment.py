"""Enrichment from the email address (bundled lists) and the circuit breaker guarding the HTTP provider."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

# Second-level public suffixes common enough to matter for a company guess.
_SECOND_LEVEL = {"co.uk", "org.uk", "ac.uk", "com.au", "net.au", "co.nz", "co.jp", "co.in", "com.br", "com.mx",
                 "co.za", "com.sg", "com.cn", "com.tr", "co.kr", "com.ar", "com.hk", "co.il", "com.pl"}


@cache
def _bundled(name: str) -> frozenset[str]:
    text = resources.files("lead_service.domain.data").joinpath(name).read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def free_mail_domains() -> frozenset[str]:
    return _bundled("free_mail_domains.txt")


def disposable_domains() -> frozenset[str]:
    return _bundled("disposable_domains.txt")


def role_local_parts() -> frozenset[str]:
    return _bundled("role_local_parts.txt")


@dataclass(frozen=True)
class EmailInsights:
    domain: str
    is_free_mail: bool
    is_disposable: bool
    is_role_address: bool
    company_guess: str | None

    @property
    def is_business(self) -> bool:
        return not (self.is_free_mail or self.is_disposable)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "is_business": self.is_business}


def registrable_part(domain: str) -> str:
    labels = domain.split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in _SECOND_LEVEL:
        return labels[-3]
    return labels[-2] if len(labels) >= 2 else labels[0]


def guess_company(domain: str) -> str:
    name = registrable_part(domain).replace("-", " ").replace("_", " ")
    return " ".join(word.capitalize() for word in name.split()) or domain


def analyse_email(email: str | None) -> EmailInsights | None:
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    base_local = local.split("+", 1)[0]
    disposable = domain in disposable_domains() or any(domain.endswith("." + d) for d in ("mailinator.com",))
    free = domain in free_mail_domains()
    return EmailInsights(
        domain=domain, is_free_mail=free, is_disposable=disposable,
        is_role_address=base_local in role_local_parts(),
        company_guess=None if (free or disposable) else guess_company(domain),
    )


class CircuitOpen(Exception):
    pass


class CircuitBreaker:
    """closed → (threshold consecutive failures) → open → (after reset_after_s) half-open: one trial call."""

    def __init__(self, clock: Callable[[], float], failure_threshold: int = 5, reset_after_s: float = 30.0) -> None:
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        state = self.state
        if state == "open" or (state == "half_open" and self._trial_in_flight):
            raise CircuitOpen("the enrichment provider is failing; calls are paused")
        if state == "half_open":
            self._trial_in_flight = True

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()


# What a provider answer may hold: only these fields, strings of at most this many characters (the lead's own
# column sizes). Anything else is dropped; the answer is data from outside, never trusted.
PROVIDER_FIELDS: dict[str, dict[str, int]] = {
    "company": {"name": 200, "size": 50, "industry": 100},
    "location": {"country": 2, "region": 100},
}
MAX_PROVIDER_ANSWER_BYTES = 16_384


def _clean_text(value: Any, max_length: int) -> str | None:
    """A string without control characters (NUL included), whitespace-trimmed and cut to `max_length`;
    None for anything else or an empty result."""
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if ch.isprintable() or ch == " ").strip()
    return text[:max_length].strip() or None


def clean_provider_answer(data: Any) -> dict[str, dict[str, str]]:
    """The known, typed, bounded part of a provider answer: {"company": {...}, "location": {...}} with
    only non-empty printable strings; a country must be two letters."""
    if not isinstance(data, dict):
        return {}
    clean: dict[str, dict[str, str]] = {}
    for section, fields in PROVIDER_FIELDS.items():
        part = data.get(section)
        if not isinstance(part, dict):
            continue
        # a country is checked whole (two letters), never cut down to two
        values = {key: text for key, limit in fields.items()
                  if (text := _clean_text(part.get(key), 100 if key == "country" else limit))}
        country = values.get("country")
        if country is not None and not (len(country) == 2 and country.isascii() and country.isalpha()):
            del values["country"]
        elif country is not None:
            values["country"] = country.upper()
        if values:
            clean[section] = values
    return clean
