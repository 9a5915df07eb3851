"""Commission plans as data: parsing and validating the JSON document (pure).

Problems are reported as (path, message) with paths like "tiers.bands[1].from" so a 422 points at the part that
is wrong. docs/commission-plans.md describes the document for people who write plans.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

from .money import HUNDRED, PERIODS, ZERO

TIER_MODES = ("retroactive", "marginal")
SPIFF_KINDS = ("product_line", "large_deal", "new_logo")
CLOSER = "closer"
MAX_ITEMS = 50
# Plans are about real periods: dates far out would only make periods that cannot be represented.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
MAX_MONEY = Decimal("1000000000000")  # per line, well inside the NUMERIC(18, 2) columns statements use


class PlanProblems(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


@dataclass(frozen=True)
class Coverage:
    participants: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()

    def specificity(self, participant_id: str, team_ids: tuple[str, ...], role: str | None) -> int:
        """3 when it names the participant, 2 one of their teams, 1 their role, 0 when it does not cover them."""
        if participant_id in self.participants:
            return 3
        if set(team_ids) & set(self.teams):
            return 2
        if role is not None and role in self.roles:
            return 1
        return 0


@dataclass(frozen=True)
class Split:
    to: str  # "closer" or a participant id
    percent: Decimal


@dataclass(frozen=True)
class Overlay:
    participant: str
    teams: tuple[str, ...]
    percent: Decimal


@dataclass(frozen=True)
class Band:
    start: Decimal  # attainment %, inclusive
    end: Decimal | None  # exclusive; None for the last band
    rate: Decimal

    def label(self) -> str:
        upper = f"{self.end.normalize():f}%" if self.end is not None else "∞"
        return f"[{self.start.normalize():f}%, {upper})"


@dataclass(frozen=True)
class Tiers:
    mode: str
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class Spiff:
    name: str
    kind: str
    amount: Decimal
    product_line: str | None = None
    min_value: Decimal | None = None


@dataclass(frozen=True)
class Draw:
    amount: Decimal
    recoverable: bool


@dataclass(frozen=True)
class Plan:
    name: str
    currency: str
    period: str
    effective_from: date
    effective_to: date | None
    coverage: Coverage
    splits: tuple[Split, ...] = (Split(CLOSER, HUNDRED),)
    overlays: tuple[Overlay, ...] = ()
    base_rate: Decimal | None = None
    tiers: Tiers | None = None
    cap: Decimal | None = None
    hurdle: Decimal | None = None  # attainment %
    spiffs: tuple[Spiff, ...] = ()
    draw: Draw | None = None
    clawback_days: int | None = None
    description: str = ""

    def covers(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on < self.effective_to)

    def named_participants(self) -> set[str]:
        """Participants credited by name (split targets and overlay managers): they earn on others' wins."""
        return {s.to for s in self.splits if s.to != CLOSER} | {o.participant for o in self.overlays}

    def to_json(self) -> dict[str, Any]:
        def num(value: Decimal | None) -> str | None:
            return None if value is None else f"{value.normalize():f}"

        doc: dict[str, Any] = {
            "name": self.name, "description": self.description, "currency": self.currency, "period": self.period,
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
            "coverage": {"participants": list(self.coverage.participants), "teams": list(self.coverage.teams),
                         "roles": list(self.coverage.roles)},
            "credit": {"splits": [{"to": s.to, "percent": num(s.percent)} for s in self.splits],
                       "overlays": [{"participant": o.participant, "teams": list(o.teams), "percent": num(o.percent)}
                                    for o in self.overlays]},
            "base_rate": num(self.base_rate),
            "tiers": None if self.tiers is None else {
                "mode": self.tiers.mode,
                "bands": [{"from": num(b.start), "to": num(b.end), "rate": num(b.rate)} for b in self.tiers.bands]},
            "cap": num(self.cap), "hurdle": num(self.hurdle),
            "spiffs": [{"name": s.name, "kind": s.kind, "amount": num(s.amount), "product_line": s.product_line,
                        "min_value": num(s.min_value)} for s in self.spiffs],
            "draw": None if self.draw is None else {"amount": num(self.draw.amount),
                                                     "recoverable": self.draw.recoverable},
            "clawback": None if self.clawback_days is None else {"days": self.clawback_days},
        }
        return doc


# ------------------------------------------------------------------ parsing
@dataclass
class _Reader:
    problems: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def obj(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path or "body", "must be an object")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else key, "unknown field")
        return value

    def text(self, value: Any, path: str, *, required: bool = True, max_length: int = 200) -> str | None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
            return None
        if len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters")
            return None
        return value.strip()

    def number(self, value: Any, path: str, *, required: bool = True, low: Decimal | None = ZERO,
               high: Decimal | None = None, low_inclusive: bool = True) -> Decimal | None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail(path, "must be a decimal number (a string such as \"0.10\")")
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            self.fail(path, "must be a decimal number (a string such as \"0.10\")")
            return None
        if not number.is_finite():
            self.fail(path, "must be a finite number")
            return None
        if low is not None and (number < low or (number == low and not low_inclusive)):
            self.fail(path, f"must be {'at least' if low_inclusive else 'more than'} {low}")
            return None
        if high is not None and number > high:
            self.fail(path, f"must be at most {high}")
            return None
        return number

    def day(self, value: Any, path: str, *, required: bool = True) -> date | None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        try:
            day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else _bad()
        except ValueError:
            self.fail(path, "must be a date (YYYY-MM-DD)")
            return None
        if not FIRST_DAY <= day <= LAST_DAY:
            self.fail(path, f"must be between {FIRST_DAY} and {LAST_DAY}")
            return None
        return day

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > 1000:
            self.fail(path, "must be a list of at most 1000 strings")
            return ()
        out = []
        for i, item in enumerate(value):
            text = self.text(item, f"{path}[{i}]", max_length=100)
            if text is not None:
                out.append(text)
        return tuple(out)

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            self.fail(path, f"must be a list of at most {MAX_ITEMS} entries")
            return []
        return value


def _bad() -> date:
    raise ValueError


def parse_plan(raw: Any) -> Plan:
    """The plan, or PlanProblems naming every part that does not make sense."""
    r = _Reader()
    doc = r.obj(raw, "", {"name", "description", "currency", "period", "effective_from", "effective_to", "coverage",
                          "credit", "base_rate", "tiers", "cap", "hurdle", "spiffs", "draw", "clawback"})
    name = r.text(doc.get("name"), "name")
    description = "" if doc.get("description") == "" else \
        r.text(doc.get("description"), "description", required=False, max_length=2000) or ""
    currency = doc.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()
            and currency.isalpha()):
        r.fail("currency", "must be an ISO 4217 code such as EUR")
    period = doc.get("period", "quarter")
    if period not in PERIODS:
        r.fail("period", f"must be one of {', '.join(PERIODS)}")
    effective_from = r.day(doc.get("effective_from"), "effective_from")
    effective_to = r.day(doc.get("effective_to"), "effective_to", required=False)
    if effective_from and effective_to and effective_to <= effective_from:
        r.fail("effective_to", "must be after effective_from")

    cov = r.obj(doc.get("coverage"), "coverage", {"participants", "teams", "roles"})
    coverage = Coverage(r.strings(cov.get("participants"), "coverage.participants"),
                        r.strings(cov.get("teams"), "coverage.teams"), r.strings(cov.get("roles"), "coverage.roles"))
    if isinstance(doc.get("coverage"), dict) and not (coverage.participants or coverage.teams or coverage.roles):
        r.fail("coverage", "must name at least one participant, team or role")

    credit = r.obj(doc.get("credit") or {}, "credit", {"splits", "overlays"})
    splits: list[Split] = []
    for i, item in enumerate(r.items(credit.get("splits"), "credit.splits")):
        part = r.obj(item, f"credit.splits[{i}]", {"to", "percent"})
        to = r.text(part.get("to"), f"credit.splits[{i}].to", max_length=100)
        percent = r.number(part.get("percent"), f"credit.splits[{i}].percent", low=ZERO, high=HUNDRED,
                           low_inclusive=False)
        if to is not None and percent is not None:
            if any(s.to == to for s in splits):
                r.fail(f"credit.splits[{i}].to", f"{to} is credited twice")
            splits.append(Split(to, percent))
    if "splits" in credit and credit["splits"] is not None:
        if not splits:
            r.fail("credit.splits", "must credit someone (e.g. [{\"to\": \"closer\", \"percent\": \"100\"}])")
        elif sum((s.percent for s in splits), ZERO) != HUNDRED:
            r.fail("credit.splits", f"percentages must sum to 100, not {sum((s.percent for s in splits), ZERO)}")
    overlays = []
    for i, item in enumerate(r.items(credit.get("overlays"), "credit.overlays")):
        part = r.obj(item, f"credit.overlays[{i}]", {"participant", "teams", "percent"})
        who = r.text(part.get("participant"), f"credit.overlays[{i}].participant", max_length=100)
        teams = r.strings(part.get("teams"), f"credit.overlays[{i}].teams")
        if not teams:
            r.fail(f"credit.overlays[{i}].teams", "must name the teams whose wins credit the overlay")
        percent = r.number(part.get("percent"), f"credit.overlays[{i}].percent", low=ZERO, high=HUNDRED,
                           low_inclusive=False)
        if who is not None and teams and percent is not None:
            overlays.append(Overlay(who, teams, percent))

    base_rate = r.number(doc.get("base_rate"), "base_rate", required=False, high=Decimal(1))
    tiers = None
    if doc.get("tiers") is not None:
        tier_doc = r.obj(doc["tiers"], "tiers", {"mode", "bands"})
        mode = tier_doc.get("mode", "retroactive")
        if mode not in TIER_MODES:
            r.fail("tiers.mode", f"must be one of {', '.join(TIER_MODES)}")
        bands: list[Band] = []
        raw_bands = r.items(tier_doc.get("bands"), "tiers.bands")
        if not raw_bands:
            r.fail("tiers.bands", "must list at least one band")
        for i, item in enumerate(raw_bands):
            part = r.obj(item, f"tiers.bands[{i}]", {"from", "to", "rate"})
            start = r.number(part.get("from"), f"tiers.bands[{i}].from")
            end = r.number(part.get("to"), f"tiers.bands[{i}].to", required=False)
            rate = r.number(part.get("rate"), f"tiers.bands[{i}].rate", high=Decimal(1))
            if start is None or rate is None:
                continue
            if end is not None and end <= start:
                r.fail(f"tiers.bands[{i}].to", "must be above from")
                continue
            if bands:
                previous = bands[-1]
                if previous.end is None or start < previous.end:
                    r.fail(f"tiers.bands[{i}].from", f"overlaps band {i - 1} {previous.label()}")
                elif start > previous.end:
                    r.fail(f"tiers.bands[{i}].from", f"leaves a gap after band {i - 1} {previous.label()}")
            elif start != ZERO:
                r.fail(f"tiers.bands[{i}].from", "the first band must start at 0")
            bands.append(Band(start, end, rate))
        if bands and bands[-1].end is not None:
            r.fail(f"tiers.bands[{len(bands) - 1}].to", "the last band must be open-ended (to: null)")
        if mode in TIER_MODES and bands:
            tiers = Tiers(mode, tuple(bands))
    if base_rate is None and doc.get("tiers") is None:
        r.fail("base_rate", "is required when the plan has no tiers")

    cap = r.number(doc.get("cap"), "cap", required=False, low_inclusive=False, high=MAX_MONEY)
    hurdle = r.number(doc.get("hurdle"), "hurdle", required=False, high=Decimal(1000))
    spiffs = []
    for i, item in enumerate(r.items(doc.get("spiffs"), "spiffs")):
        part = r.obj(item, f"spiffs[{i}]", {"name", "kind", "amount", "product_line", "min_value"})
        kind = part.get("kind")
        if kind not in SPIFF_KINDS:
            r.fail(f"spiffs[{i}].kind", f"must be one of {', '.join(SPIFF_KINDS)}")
        amount = r.number(part.get("amount"), f"spiffs[{i}].amount", low_inclusive=False, high=MAX_MONEY)
        spiff_name = r.text(part.get("name"), f"spiffs[{i}].name", required=False) or str(kind)
        line = r.text(part.get("product_line"), f"spiffs[{i}].product_line", required=kind == "product_line",
                      max_length=100)
        min_value = r.number(part.get("min_value"), f"spiffs[{i}].min_value", required=kind == "large_deal",
                             low_inclusive=False, high=MAX_MONEY)
        if kind in SPIFF_KINDS and amount is not None:
            spiffs.append(Spiff(spiff_name, kind, amount, line if kind == "product_line" else None,
                                min_value if kind == "large_deal" else None))
    draw = None
    if doc.get("draw") is not None:
        draw_doc = r.obj(doc["draw"], "draw", {"amount", "recoverable"})
        amount = r.number(draw_doc.get("amount"), "draw.amount", low_inclusive=False, high=MAX_MONEY)
        recoverable = draw_doc.get("recoverable", True)
        if not isinstance(recoverable, bool):
            r.fail("draw.recoverable", "must be true or false")
        elif amount is not None:
            draw = Draw(amount, recoverable)
    clawback_days = None
    if doc.get("clawback") is not None:
        claw = r.obj(doc["clawback"], "clawback", {"days"})
        days = claw.get("days")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            r.fail("clawback.days", "must be a whole number of days from 1 to 3650")
        else:
            clawback_days = days

    if r.problems:
        raise PlanProblems(r.problems)
    assert name is not None and effective_from is not None and isinstance(currency, str)
    return Plan(name=name, description=description, currency=currency, period=period,
                effective_from=effective_from, effective_to=effective_to, coverage=coverage,
                splits=tuple(splits) or (Split(CLOSER, HUNDRED),), overlays=tuple(overlays), base_rate=base_rate,
                tiers=tiers, cap=cap, hurdle=hurdle, spiffs=tuple(spiffs), draw=draw, clawback_days=clawback_days)


# ------------------------------------------------------------------ versions in force
@dataclass(frozen=True)
class PlanVersion:
    plan_id: str
    version: int
    plan: Plan

    @cached_property  # on every credit of the plan's wins
    def label(self) -> str:
        return f"{self.plan.name} (plan {self.plan_id} v{self.version})"


def _ranges_overlap(a_from: date, a_to: date | None, b_from: date, b_to: date | None) -> bool:
    return (b_to is None or a_from < b_to) and (a_to is None or b_from < a_to)


def overlap_problems(new: Plan, plan_id: str | None, others: list[PlanVersion],
                     members: dict[str, tuple[tuple[str, ...], str | None]]) -> list[tuple[str, str]]:
    """Another plan in force on the same dates for the same participant: refused (a participant has one plan at a
    time). `others` are the versions in force of the org's other plans; `members` maps participant id to (teams,
    role), so a plan naming a team overlaps one naming a member of that team."""
    problems = []
    for other in others:
        if other.plan_id == plan_id or not _ranges_overlap(new.effective_from, new.effective_to,
                                                             other.plan.effective_from, other.plan.effective_to):
            continue
        a, b = new.coverage, other.plan.coverage
        shared = (set(a.participants) & set(b.participants)) | (set(a.teams) & set(b.teams)) \
            | (set(a.roles) & set(b.roles))
        if not shared:
            for participant, (teams, role) in members.items():
                if a.specificity(participant, teams, role) and b.specificity(participant, teams, role):
                    shared.add(participant)
        if shared:
            problems.append(("effective_from", f"{other.label} already covers {', '.join(sorted(shared))} from "
                             f"{other.plan.effective_from} to {other.plan.effective_to or 'open end'}"))
    return problems


def plan_for(participant_id: str, team_ids: tuple[str, ...], role: str | None, on: date,
             versions: list[PlanVersion]) -> PlanVersion | None:
    """The plan version in force for a participant on a date: the most specific coverage wins (named > team >
    role), then the latest effective date."""
    best: tuple[int, date, int] | None = None
    chosen = None
    for version in versions:
        if not version.plan.covers(on):
            continue
        level = version.plan.coverage.specificity(participant_id, team_ids, role)
        if level == 0:
            continue
        rank = (level, version.plan.effective_from, version.version)
        if best is None or rank > best:
            best, chosen = rank, version
    return chosen
