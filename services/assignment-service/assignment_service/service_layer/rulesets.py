"""Publishing and reading an org's versioned rule sets."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.errors import FieldError, ValidationFailed

from ..adapters import repository as repo
from ..domain.rules import References, Rule, RuleSet, parse_rules


@dataclass
class RuleReferences:
    reps: set[str] = field(default_factory=set)
    teams: set[str] = field(default_factory=set)
    territories: set[str] = field(default_factory=set)
    weighted_members: dict[str, set[str]] = field(default_factory=dict)  # team id → reps given weights


def references_of(rules: tuple[Rule, ...]) -> RuleReferences:
    refs = RuleReferences()
    for rule in rules:
        owner = rule.owner
        if owner.rep_id:
            refs.reps.add(owner.rep_id)
        refs.reps.update(owner.weights)
        if owner.team_id:
            refs.teams.add(owner.team_id)
            refs.weighted_members.setdefault(owner.team_id, set()).update(owner.weights)
        if owner.territory_id:
            refs.territories.add(owner.territory_id)
        for condition in rule.conditions:
            if condition.field == "territory" and condition.value is not None:
                values = condition.value if isinstance(condition.value, list) else [condition.value]
                refs.territories.update(str(v) for v in values)
    return refs


async def references_in_current_rules(session: AsyncSession, org_id: str) -> RuleReferences:
    current = await repo.current_rule_set(session, org_id)
    return references_of(current.rules) if current else RuleReferences()


async def directory_references(session: AsyncSession, org_id: str) -> References:
    rep_ids = await repo.rep_ids(session, org_id)
    territory_ids = await repo.territory_ids(session, org_id)
    teams = await repo.all_teams(session, org_id)
    return References(frozenset(rep_ids), {t.id: t.member_ids for t in teams.values()}, frozenset(territory_ids))


async def validate_rules(session: AsyncSession, org_id: str, raw_rules: Any) -> tuple[Rule, ...]:
    """Parse and check a rule set against the org's directory, or raise 422 naming every problem."""
    refs = await directory_references(session, org_id)
    rules, errors = parse_rules(raw_rules, new_id=lambda: str(uuid.uuid4()), refs=refs)
    if errors:
        # Territory conditions name territories too.
        raise ValidationFailed("; ".join(f"{f}: {m}" for f, m in errors),
                               errors=[FieldError(f, m) for f, m in errors])
    problems = []
    for index, rule in enumerate(rules):
        for c_index, condition in enumerate(rule.conditions):
            if condition.field != "territory" or condition.value is None:
                continue
            values = condition.value if isinstance(condition.value, list) else [condition.value]
            for value in values:
                if str(value) not in refs.territories:
                    problems.append(FieldError(f"rules[{index}].conditions[{c_index}].value",
                                               f"no territory '{value}' in this organization"))
    if problems:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in problems), errors=problems)
    return rules


async def publish_rule_set(session: AsyncSession, org_id: str, raw_rules: Any, user_id: str,
                           now: datetime) -> RuleSet:
    """Store a new version (the previous ones stay, so past decisions still name theirs)."""
    rules = await validate_rules(session, org_id, raw_rules)
    version = await repo.latest_rule_set_version(session, org_id) + 1
    # Two admins publishing at once collide on the primary key (org, version): one gets a 409 to retry.
    await repo.insert_rule_set(session, org_id, version, [r.to_dict() for r in rules], user_id, now)
    return RuleSet(version, rules)
