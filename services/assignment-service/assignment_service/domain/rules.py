"""Routing rules: an org's ordered, versioned rule set; first match wins; a fallback is mandatory.

A rule fires on one or more triggers (`lead_created`, `stage_entry`, `lead_won`), has conditions that must
all hold, and chooses the pipeline (lead_created rules) and the owner strategy. Parsing collects every
problem with the path of the offending part so the API answers 422 naming it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .conditions import STAGE_FIELDS, Condition, matches, parse_condition
from .directory import Team, Territory
from .strategies import (
    BEST_TIER_FIRST,
    LEAST_LOADED,
    ROUND_ROBIN,
    SPECIFIC_REP,
    STRATEGIES,
    TERRITORY_REPS,
    WEIGHTED_ROUND_ROBIN,
)

LEAD_CREATED, STAGE_ENTRY, LEAD_WON = "lead_created", "stage_entry", "lead_won"
TRIGGERS = (LEAD_CREATED, STAGE_ENTRY, LEAD_WON)
_TEAM_STRATEGIES = (ROUND_ROBIN, LEAST_LOADED, BEST_TIER_FIRST)
_RULE_KEYS = {"id", "name", "triggers", "conditions", "pipeline_id", "owner", "reroute_on_update", "fallback"}
_OWNER_KEYS = {"strategy", "rep_id", "team_id", "territory_id", "weights", "respect_working_hours",
               "match_product_line", "match_language"}

Errors = list[tuple[str, str]]


@dataclass(frozen=True)
class OwnerSpec:
    strategy: str
    rep_id: str | None = None
    team_id: str | None = None
    territory_id: str | None = None  # territory_reps: a fixed territory instead of the lead's own
    weights: dict[str, int] = field(default_factory=dict)
    respect_working_hours: bool = True
    match_product_line: bool = False
    match_language: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"strategy": self.strategy}
        for key in ("rep_id", "team_id", "territory_id"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        if self.weights:
            data["weights"] = dict(self.weights)
        data.update(respect_working_hours=self.respect_working_hours, match_product_line=self.match_product_line,
                    match_language=self.match_language)
        return data

    def rotation_key(self, territory_id: str | None) -> str | None:
        """The persistent rotation this decision advances (shared by every rule using the same pool)."""
        if self.strategy == ROUND_ROBIN:
            return f"rr:team:{self.team_id}"
        if self.strategy == WEIGHTED_ROUND_ROBIN:
            return f"wrr:{self.team_id or 'reps'}:" + ",".join(f"{k}={v}" for k, v in sorted(self.weights.items()))
        if self.strategy == TERRITORY_REPS:
            target = self.territory_id or territory_id
            return f"rr:territory:{target}" if target else None
        return None


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    triggers: tuple[str, ...]
    conditions: tuple[Condition, ...]
    owner: OwnerSpec
    pipeline_id: str | None = None
    reroute_on_update: bool = False
    fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "triggers": list(self.triggers),
                "conditions": [c.to_dict() for c in self.conditions], "pipeline_id": self.pipeline_id,
                "owner": self.owner.to_dict(), "reroute_on_update": self.reroute_on_update,
                "fallback": self.fallback}

    @property
    def fields(self) -> set[str]:
        return {c.field for c in self.conditions}


@dataclass(frozen=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]

    def rule(self, rule_id: str | None) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rules]


@dataclass(frozen=True)
class RoutingConfig:
    """What routing a lead reads of the org besides the candidate reps: its newest rule set (None before the
    first), its territories and its teams by id."""

    rule_set: RuleSet | None
    territories: list[Territory]
    teams: dict[str, Team]


@dataclass(frozen=True)
class References:
    """Ids that exist in the org's directory; a rule naming anything else is rejected."""

    reps: frozenset[str] = frozenset()
    teams: dict[str, tuple[str, ...]] = field(default_factory=dict)  # team id → member ids
    territories: frozenset[str] = frozenset()


# ------------------------------------------------------------------ parsing and validation
def _text(raw: dict[str, Any], key: str, path: str, errors: Errors, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            errors.append((f"{path}.{key}", f"{key} is required"))
        return None
    if not isinstance(value, str) or len(value) > 200:
        errors.append((f"{path}.{key}", f"{key} must be a text of at most 200 characters"))
        return None
    return value


def _flag(raw: dict[str, Any], key: str, default: bool, path: str, errors: Errors) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        errors.append((f"{path}.{key}", f"{key} must be true or false"))
        return default
    return value


def _parse_owner(raw: Any, path: str, refs: References | None, errors: Errors) -> OwnerSpec | None:
    if not isinstance(raw, dict):
        errors.append((path, "owner is required: an object with a strategy"))
        return None
    for key in sorted(set(raw) - _OWNER_KEYS):
        errors.append((f"{path}.{key}", f"unknown owner setting '{key}'"))
    strategy = raw.get("strategy")
    if strategy not in STRATEGIES:
        errors.append((f"{path}.strategy", f"unknown strategy '{strategy}' (strategies: {', '.join(STRATEGIES)})"))
        return None
    before = len(errors)
    rep_id = _text(raw, "rep_id", path, errors, required=strategy == SPECIFIC_REP)
    team_id = _text(raw, "team_id", path, errors, required=strategy in _TEAM_STRATEGIES)
    territory_id = _text(raw, "territory_id", path, errors)
    weights: dict[str, int] = {}
    if strategy == WEIGHTED_ROUND_ROBIN:
        raw_weights = raw.get("weights")
        if not isinstance(raw_weights, dict) or not raw_weights:
            errors.append((f"{path}.weights", "weighted_round_robin needs weights: {rep_id: positive integer}"))
        else:
            for rep, weight in raw_weights.items():
                if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 10_000:
                    errors.append((f"{path}.weights.{rep}", "a weight is an integer from 0 to 10000"))
                else:
                    weights[str(rep)] = weight
            if weights and not any(weights.values()):
                errors.append((f"{path}.weights", "at least one weight must be above zero"))
    spec = OwnerSpec(strategy, rep_id, team_id, territory_id, weights,
                     _flag(raw, "respect_working_hours", True, path, errors),
                     _flag(raw, "match_product_line", False, path, errors),
                     _flag(raw, "match_language", False, path, errors))
    if refs is not None and len(errors) == before:
        if rep_id and rep_id not in refs.reps:
            errors.append((f"{path}.rep_id", f"no rep '{rep_id}' in this organization"))
        if team_id and team_id not in refs.teams:
            errors.append((f"{path}.team_id", f"no team '{team_id}' in this organization"))
        if territory_id and territory_id not in refs.territories:
            errors.append((f"{path}.territory_id", f"no territory '{territory_id}' in this organization"))
        for rep in weights:
            if rep not in refs.reps:
                errors.append((f"{path}.weights.{rep}", f"no rep '{rep}' in this organization"))
            elif team_id in refs.teams and rep not in refs.teams[team_id]:
                errors.append((f"{path}.weights.{rep}", f"rep '{rep}' is not a member of team '{team_id}'"))
    return spec if len(errors) == before else None


def parse_rules(raw_rules: Any, *, new_id: Callable[[], str], refs: References | None = None) -> tuple[
        tuple[Rule, ...], Errors]:
    """Validate a whole rule set; return the rules (normalised) or every problem found."""
    errors: Errors = []
    if not isinstance(raw_rules, list) or not raw_rules:
        return (), [("rules", "a rule set is a non-empty list of rules ending with a fallback rule")]
    rules: list[Rule] = []
    seen_ids: set[str] = set()
    for index, raw in enumerate(raw_rules):
        path = f"rules[{index}]"
        if not isinstance(raw, dict):
            errors.append((path, "a rule is an object"))
            continue
        before = len(errors)
        for key in sorted(set(raw) - _RULE_KEYS):
            errors.append((f"{path}.{key}", f"unknown rule setting '{key}'"))
        rule_id = _text(raw, "id", path, errors) or new_id()
        if rule_id in seen_ids:
            errors.append((f"{path}.id", f"rule id '{rule_id}' is used twice"))
        seen_ids.add(rule_id)
        name = _text(raw, "name", path, errors) or f"rule {index + 1}"
        fallback = _flag(raw, "fallback", False, path, errors)
        triggers_raw = raw.get("triggers", [LEAD_CREATED])
        if not isinstance(triggers_raw, list) or not triggers_raw or \
                any(t not in TRIGGERS for t in triggers_raw):
            errors.append((f"{path}.triggers", f"triggers is a non-empty list of {', '.join(TRIGGERS)}"))
            triggers: tuple[str, ...] = ()
        else:
            triggers = tuple(dict.fromkeys(triggers_raw))
        conditions: list[Condition] = []
        raw_conditions = raw.get("conditions", [])
        if not isinstance(raw_conditions, list):
            errors.append((f"{path}.conditions", "conditions is a list"))
            raw_conditions = []
        for c_index, raw_condition in enumerate(raw_conditions):
            condition, problems = parse_condition(raw_condition, f"{path}.conditions[{c_index}]")
            errors.extend(problems)
            if condition is None:
                continue
            if condition.field in STAGE_FIELDS and LEAD_CREATED in triggers:
                errors.append((f"{path}.conditions[{c_index}].field",
                               f"field '{condition.field}' is only known at stage_entry or lead_won, "
                               "not at lead_created"))
            conditions.append(condition)
        pipeline_id = _text(raw, "pipeline_id", path, errors, required=LEAD_CREATED in triggers)
        if pipeline_id and LEAD_CREATED not in triggers:
            errors.append((f"{path}.pipeline_id", "only lead_created rules choose a pipeline"))
        owner = _parse_owner(raw.get("owner"), f"{path}.owner", refs, errors)
        if fallback:
            if conditions:
                errors.append((f"{path}.conditions", "the fallback rule has no conditions"))
            if LEAD_CREATED not in triggers:
                errors.append((f"{path}.triggers", "the fallback rule must fire at lead_created"))
        reroute = _flag(raw, "reroute_on_update", False, path, errors)
        if len(errors) == before and owner is not None:
            rules.append(Rule(rule_id, name, triggers, tuple(conditions), owner, pipeline_id, reroute, fallback))
    fallbacks = [i for i, r in enumerate(raw_rules) if isinstance(r, dict) and r.get("fallback") is True]
    if not fallbacks:
        errors.append(("rules", "no fallback rule: the last rule must have \"fallback\": true, no conditions, "
                                "fire at lead_created and name a pipeline and an owner"))
    elif len(fallbacks) > 1:
        errors.append((f"rules[{fallbacks[1]}].fallback", "only one fallback rule is allowed"))
    elif fallbacks[0] != len(raw_rules) - 1:
        errors.append((f"rules[{fallbacks[0]}].fallback", "the fallback rule must be the last rule"))
    return (tuple(rules), []) if not errors else ((), errors)


def load_rules(stored: Iterable[dict[str, Any]]) -> tuple[Rule, ...]:
    """Rules stored by `Rule.to_dict` (already validated when published)."""
    rules, errors = parse_rules(list(stored), new_id=lambda: "unnamed")
    if errors:
        raise ValueError(f"stored rule set is invalid: {errors}")
    return rules


# ------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class RuleMatch:
    rule: Rule | None
    evaluations: list[dict[str, Any]]


def evaluate(rules: Iterable[Rule], facts: dict[str, Any], trigger: str) -> RuleMatch:
    """First match wins among the rules that fire on `trigger`; each evaluated rule says why or why not."""
    evaluations: list[dict[str, Any]] = []
    for position, rule in enumerate(rules):
        if trigger not in rule.triggers:
            continue
        failed = next((c for c in rule.conditions if not matches(c, facts)), None)
        entry: dict[str, Any] = {"rule_id": rule.id, "name": rule.name, "position": position,
                                 "matched": failed is None}
        if failed is not None:
            entry["failed_condition"] = {**failed.to_dict(), "actual": _jsonable(facts.get(failed.field))}
        elif rule.fallback:
            entry["note"] = "fallback: no earlier rule matched"
        evaluations.append(entry)
        if failed is None:
            return RuleMatch(rule, evaluations)
    return RuleMatch(None, evaluations)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ------------------------------------------------------------------ lead facts
def lead_facts(lead: dict[str, Any], *, territory_id: str | None = None,
               stage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat field → value view of a lead snapshot that conditions read."""
    company = lead.get("company") or {}
    facts: dict[str, Any] = {
        "country": (lead.get("country") or None) and str(lead["country"]).upper(),
        "region": lead.get("region"), "postcode": lead.get("postcode"), "territory": territory_id,
        "product_line": lead.get("product_line"), "value": lead.get("value"), "currency": lead.get("currency"),
        "source": lead.get("source"), "score": lead.get("score"), "language": lead.get("language"),
        "status": lead.get("status"), "form_id": lead.get("form_id"),
        "company.size": company.get("size"), "company.industry": company.get("industry"),
    }
    for key, value in (lead.get("custom_fields") or {}).items():
        facts[f"custom.{key}"] = value
    for key, value in (lead.get("utm") or {}).items():
        facts[f"utm.{key}"] = value
    if stage:
        facts.update({"stage_id": stage.get("stage_id"), "stage_name": stage.get("stage_name"),
                      "pipeline_id": stage.get("pipeline_id")})
    return facts


_LOCATION = {"country", "region", "postcode"}


def routed_on(rule_fields: set[str], changed: Iterable[str]) -> set[str]:
    """Which changed lead fields (as lead-service names them) feed the given condition fields."""
    hit: set[str] = set()
    for name in changed:
        normal = name.replace("custom_fields.", "custom.")
        for field_name in rule_fields:
            related = {field_name}
            if field_name == "territory":
                related |= _LOCATION
            if any(normal == f or normal.startswith(f + ".") or f.startswith(normal + ".") for f in related) \
                    or (normal == "custom_fields" and field_name.startswith("custom.")):
                hit.add(name)
    return hit


# Facts a real lead carries when it is routed that lead-service computes at intake, not the person entering it.
INTAKE_FACTS: dict[str, str] = {
    "score": "lead-service scores every lead with the org's scoring rules before it is routed",
    "company.size": "lead-service's enrichment provider may add it, usually after the lead was routed",
    "company.industry": "lead-service's enrichment provider may add it, usually after the lead was routed",
}


def assumed_facts(rule_set: RuleSet, snapshot: dict[str, Any], trigger: str) -> list[dict[str, Any]]:
    """The intake-computed facts the rules for `trigger` read but a simulated lead did not carry: evaluated as
    missing, where a real lead may have them. Simulate the lead as lead-service's POST /v1/leads/preview returns
    it (its `snapshot`) to evaluate the very facts a real lead is routed on."""
    readers: dict[str, list[str]] = {}
    for rule in rule_set.rules:
        if trigger in rule.triggers or rule.fallback:
            for name in sorted(rule.fields & INTAKE_FACTS.keys()):
                readers.setdefault(name, []).append(rule.id)
    missing = []
    for name, rule_ids in sorted(readers.items()):
        head, _, tail = name.partition(".")
        value = (snapshot.get(head) or {}).get(tail) if tail else snapshot.get(head)
        if value is None:
            missing.append({"fact": name, "assumed": None, "read_by_rules": rule_ids, "why": INTAKE_FACTS[name]})
    return missing
