"""Making, recording and announcing assignment decisions.

`decide` runs the pure rule evaluation and owner strategy against the org's directory. For a real decision
it first locks the rotation row and then the candidate reps' rows (in id order), so concurrent consumers
(replicas) take rotation slots one after the other and never exceed a rep's capacity; a simulation only
reads. `apply_decision` stores the explanation, updates the lead projection and publishes LeadRouted /
LeadAssigned through the outbox in the same transaction.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.clock import rfc3339
from salesflow_shared.events import LeadAssignedV1, LeadRoutedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..domain.directory import Territory, resolve_territory
from ..domain.rules import (
    LEAD_CREATED,
    LEAD_WON,
    STAGE_ENTRY,
    RoutingConfig,
    Rule,
    RuleMatch,
    RuleSet,
    evaluate,
    lead_facts,
)
from ..domain.strategies import (
    SPECIFIC_REP,
    TERRITORY_REPS,
    WEIGHTED_ROUND_ROBIN,
    Candidate,
    OwnerChoice,
    OwnerRequest,
    RotationState,
    counts_matter,
    select_owner,
)

MANUAL, BULK, LEAD_UPDATED = "manual", "bulk", "lead_updated"
_KEEP_OWNER_WHEN_NOBODY = (STAGE_ENTRY, LEAD_WON, LEAD_UPDATED)


@dataclass
class Decision:
    lead_id: str
    trigger: str
    rule_set_version: int | None
    rule: Rule | None
    territory: Territory | None
    evaluations: list[dict[str, Any]]
    choice: OwnerChoice | None = None
    owner: Any = None  # the chosen rep's row
    team_id: str | None = None
    previous_owner_id: str | None = None
    reason: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    decided_at: datetime | None = None
    decided_by: str | None = None
    rotation_key: str | None = None

    @property
    def pipeline_id(self) -> str | None:
        return self.rule.pipeline_id if self.rule is not None and self.trigger in (LEAD_CREATED, LEAD_UPDATED) \
            else None

    @property
    def owner_id(self) -> str | None:
        return self.owner.id if self.owner is not None else None

    def explanation(self) -> dict[str, Any]:
        choice = self.choice
        return {
            "rule_name": self.rule.name if self.rule else None,
            "territory": {"id": self.territory.id, "name": self.territory.name} if self.territory else None,
            "evaluations": self.evaluations,
            "candidates": choice.candidates if choice else [],
            "skipped": choice.skipped if choice else [],
            "rotation": ({"key": self.rotation_key, **choice.rotation} if choice and choice.rotation else None),
            "strategy_note": choice.note if choice else None,
            "owner_name": self.owner.name if self.owner is not None else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "lead_id": self.lead_id, "trigger": self.trigger,
                "rule_set_version": self.rule_set_version, "rule_id": self.rule.id if self.rule else None,
                "strategy": self.rule.owner.strategy if self.rule else None, "pipeline_id": self.pipeline_id,
                "territory_id": self.territory.id if self.territory else None, "owner_id": self.owner_id,
                "previous_owner_id": self.previous_owner_id, "team_id": self.team_id, "reason": self.reason,
                "decided_at": rfc3339(self.decided_at),
                "decided_by": self.decided_by, **self.explanation()}


def match_rules(rule_set: RuleSet, snapshot: dict[str, Any], trigger: str, territories: list[Territory],
                stage: dict[str, Any] | None = None) -> tuple[RuleMatch, Territory | None, dict[str, Any]]:
    territory = resolve_territory(territories, snapshot.get("country"), snapshot.get("region"),
                                  snapshot.get("postcode"))
    facts = lead_facts(snapshot, territory_id=territory.id if territory else None, stage=stage)
    rules_trigger = LEAD_CREATED if trigger == LEAD_UPDATED else trigger
    return evaluate(rule_set.rules, facts, rules_trigger), territory, facts


async def decide(session: AsyncSession, org_id: str, lead_id: str, snapshot: dict[str, Any], trigger: str, *,
                 rule_set: RuleSet, config: RoutingConfig, now: datetime, stage: dict[str, Any] | None = None,
                 dry_run: bool = False, previous_owner_id: str | None = None) -> Decision:
    """The decision `rule_set` makes for the lead, with the org's territories and teams from `config` (its
    newest rule set is `rule_set` but for a draft's simulation)."""
    territories = config.territories
    match, territory, facts = match_rules(rule_set, snapshot, trigger, territories, stage)
    decision = Decision(lead_id, trigger, rule_set.version, match.rule, territory, match.evaluations,
                        previous_owner_id=previous_owner_id, decided_at=now)
    if match.rule is None:
        decision.reason = f"no rule of version {rule_set.version} matched at {trigger}"
        return decision
    rule = match.rule
    spec = rule.owner
    team = config.teams.get(spec.team_id) if spec.team_id else None
    decision.team_id = team.id if team else None
    if spec.strategy == SPECIFIC_REP:
        members: tuple[str, ...] = (spec.rep_id,) if spec.rep_id else ()
    elif spec.strategy == WEIGHTED_ROUND_ROBIN:
        order = team.member_ids if team else tuple(sorted(spec.weights))
        members = tuple(m for m in order if m in spec.weights)
    elif spec.strategy == TERRITORY_REPS:
        target = next((t for t in territories if t.id == (spec.territory_id or (territory and territory.id))), None)
        members = target.rep_ids if target else ()
    else:
        members = team.member_ids if team else ()
    decision.rotation_key = spec.rotation_key(territory.id if territory else None)
    await choose(session, org_id, decision, OwnerRequest(
        spec.strategy, members, dict(spec.weights), spec.respect_working_hours, spec.match_product_line,
        spec.match_language), facts, now, dry_run=dry_run)
    label = "fallback rule" if rule.fallback else "rule"
    decision.reason = f"{label} '{rule.name}' (rule set v{rule_set.version}): " + _owner_reason(decision)
    return decision


async def choose(session: AsyncSession, org_id: str, decision: Decision, request: OwnerRequest,
                 facts: dict[str, Any], now: datetime, *, dry_run: bool) -> None:
    """Run the owner strategy; outside a simulation, under the rotation and rep row locks (held until commit:
    `apply_decision` writes the rotation's new state with the decision)."""
    key = decision.rotation_key
    if key is not None and not dry_run:
        state, rows = await repo.lock_rotation_and_reps(session, org_id, key, list(request.member_ids), now)
    else:
        state = await repo.peek_rotation(session, org_id, key) if key is not None else RotationState()
        rows = await repo.reps_by_id(session, org_id, list(request.member_ids), lock=not dry_run)
    # after the locks (see the note there); not read when no count can change the choice or its explanation
    counts = await repo.open_lead_counts(session, org_id, list(rows)) \
        if counts_matter(request.strategy, [row.capacity for row in rows.values()]) else {}
    pool = {rep_id: Candidate(repo.rep_from_row(row), counts.get(rep_id, 0), row.last_assigned_at)
            for rep_id, row in rows.items()}
    choice = select_owner(request, pool, facts, now, state)
    decision.choice = choice
    decision.owner = rows.get(choice.rep_id) if choice.rep_id else None


def _owner_reason(decision: Decision) -> str:
    choice = decision.choice
    assert choice is not None
    if decision.owner is None:
        where = f"left with team {decision.team_id}" if decision.team_id else "left unassigned"
        return f"{choice.note}; {where}"
    return f"{decision.owner.name} by {decision.rule.owner.strategy if decision.rule else 'manual'} ({choice.note})"


async def apply_decision(uow: UnitOfWork, org_id: str, lead_row: Any, decision: Decision, *,
                         source_event_id: str | None = None, publish_route: bool | None = None) -> None:
    """Store the decision, move the lead in the projection and publish LeadRouted / LeadAssigned (their outbox rows
    written by the decision's statement, with whatever else the transaction published before)."""
    session = uow.session
    now = decision.decided_at
    keep_owner = decision.owner is None and lead_row.owner_id is not None and \
        decision.trigger in _KEEP_OWNER_WHEN_NOBODY and decision.rule is not None
    if keep_owner:
        # A hand-off or re-route that finds nobody available leaves the lead with the rep who has it.
        decision.reason += f"; the lead stays with {lead_row.owner_id}"
    decision_row = dict(
        id=decision.id, org_id=org_id, lead_id=decision.lead_id, trigger=decision.trigger,
        rule_set_version=decision.rule_set_version, rule_id=decision.rule.id if decision.rule else None,
        strategy=decision.rule.owner.strategy if decision.rule else None, pipeline_id=decision.pipeline_id,
        territory_id=decision.territory.id if decision.territory else None, owner_id=decision.owner_id,
        previous_owner_id=decision.previous_owner_id, team_id=decision.team_id, reason=decision.reason,
        explanation=decision.explanation(), source_event_id=source_event_id, decided_by=decision.decided_by,
        created_at=now)
    changes: dict[str, Any] = {"updated_at": now}
    routes = decision.pipeline_id is not None and (publish_route if publish_route is not None else True)
    if decision.pipeline_id is not None:
        changes.update(pipeline_id=decision.pipeline_id, rule_id=decision.rule.id if decision.rule else None,
                       rule_set_version=decision.rule_set_version,
                       territory_id=decision.territory.id if decision.territory else None)
        if decision.trigger == LEAD_CREATED:
            changes["routed_at"] = now
    assigns = (decision.owner is not None or decision.team_id is not None) and not keep_owner and \
        (decision.owner_id != lead_row.owner_id or decision.team_id != lead_row.team_id)
    if assigns:
        changes.update(owner_id=decision.owner_id, team_id=decision.team_id)
    version = lead_row.out_version
    if routes:
        version += 1
        uow.publish(LeadRoutedV1(
            lead_id=decision.lead_id, pipeline_id=decision.pipeline_id,
            rule_id=decision.rule.id if decision.rule else None, rule_set_version=decision.rule_set_version,
            territory_id=decision.territory.id if decision.territory else None,
            trigger=decision.trigger, reason=decision.reason,
            owner_id=decision.owner_id if assigns else None, team_id=decision.team_id if assigns else None,
            owner_timezone=decision.owner.timezone if assigns and decision.owner is not None else None,
        ), org_id=org_id, subject_id=decision.lead_id, subject_version=version, occurred_at=now)
    if assigns:
        version += 1
        owner = decision.owner
        uow.publish(LeadAssignedV1(
            lead_id=decision.lead_id, owner_id=decision.owner_id,
            owner_name=owner.name if owner is not None else None,
            owner_email=owner.email if owner is not None else None,
            owner_timezone=owner.timezone if owner is not None else None,
            team_id=decision.team_id, previous_owner_id=lead_row.owner_id,
            territory_id=decision.territory.id if decision.territory else None,
            rule_id=decision.rule.id if decision.rule else None, rule_set_version=decision.rule_set_version,
            strategy=decision.rule.owner.strategy if decision.rule else decision.trigger,
            candidates=decision.choice.candidates if decision.choice else [],
            trigger=decision.trigger, reason=decision.reason, decision_id=decision.id,
        ), org_id=org_id, subject_id=decision.lead_id, subject_version=version, occurred_at=now)
    changes["out_version"] = version
    choice = decision.choice
    await repo.record_decision(
        session, org_id, decision.lead_id, decision_row, changes,
        rotation=(decision.rotation_key, choice.new_state)
        if decision.rotation_key is not None and choice is not None and choice.new_state is not None else None,
        assigned_rep_id=decision.owner.id if assigns and decision.owner is not None else None, now=now,
        outbox_rows=uow.take_outbox_rows())


async def decisions_for(session: AsyncSession, org_id: str, *, lead_id: str | None = None,
                        owner_id: str | None = None, limit: int = 50,
                        after: tuple[str, str] | None = None) -> list[Any]:
    return await repo.decisions_page(
        session, org_id, lead_id=lead_id, owner_id=owner_id, limit=limit + 1,
        after=(datetime.fromisoformat(after[0]), after[1]) if after is not None else None)


def decision_row_to_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "lead_id": row.lead_id, "trigger": row.trigger, "rule_set_version": row.rule_set_version,
            "rule_id": row.rule_id, "strategy": row.strategy, "pipeline_id": row.pipeline_id,
            "territory_id": row.territory_id, "owner_id": row.owner_id, "previous_owner_id": row.previous_owner_id,
            "team_id": row.team_id, "reason": row.reason, "decided_at": rfc3339(row.created_at),
            "decided_by": row.decided_by, "source_event_id": row.source_event_id, **(row.explanation or {})}


async def was_owner(session: AsyncSession, org_id: str, lead_id: str, rep_id: str) -> bool:
    """Whether a decision ever gave the lead to the rep (it owned it, now or before)."""
    return await repo.ever_owned(session, org_id, lead_id, rep_id)


async def lead_row(session: AsyncSession, org_id: str, lead_id: str) -> Any:
    return await repo.get_lead(session, org_id, lead_id)
