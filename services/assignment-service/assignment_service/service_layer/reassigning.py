"""Use cases a manager starts by hand: reassigning one lead, spreading a departing rep's open leads over a team,
and simulating a decision.

Each takes the unit of work and writes in its transaction without committing: the caller stores its
idempotent answer in the same transaction and commits once, so a retry never sees half an effect.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from salesflow_shared.errors import NotFound, ValidationFailed
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..adapters.orm import reps
from ..domain.rules import RuleSet, assumed_facts
from ..domain.strategies import LEAST_LOADED, ROUND_ROBIN, SPECIFIC_REP, OwnerRequest
from .assigning import BULK, MANUAL, Decision, apply_decision, choose, decide
from .rep_events import publish_rep
from .rulesets import validate_rules

BulkStrategy = Literal["round_robin", "least_loaded"]


async def reassign_by_hand(uow: UnitOfWork, org_id: str, *, lead_id: str, owner_id: str, team_id: str | None,
                           note: str | None, decided_by: str) -> Decision:
    """Give the lead to `owner_id` (within `team_id` if named), recorded with the reason `manual` and the manager
    who decided; LeadAssigned is published. 404 for a lead this service does not know, 422 naming the field for a
    team or rep that is not there or a rep who cannot take leads now."""
    row = await repo.lock_lead(uow.session, org_id, lead_id)
    if row is None:
        raise NotFound(f"no lead {lead_id} known to assignment-service")
    if team_id is not None and team_id not in await repo.all_teams(uow.session, org_id):
        raise ValidationFailed.single("team_id", f"no team '{team_id}' in this organization")
    now = uow.clock.now()
    decision = Decision(lead_id, MANUAL, None, None, None, [], team_id=team_id, previous_owner_id=row.owner_id,
                        decided_at=now, decided_by=decided_by)
    # A manager's choice overrides working hours: the rep only has to be in the directory and able to take leads.
    await choose(uow.session, org_id, decision, OwnerRequest(SPECIFIC_REP, (owner_id,), respect_working_hours=False),
                 {}, now, dry_run=False)
    if decision.owner is None:
        reason = decision.choice.skipped[0]["reason"] if decision.choice and decision.choice.skipped else "unknown"
        if reason == "not_in_directory":
            raise ValidationFailed.single("owner_id", f"no rep '{owner_id}' in this organization")
        raise ValidationFailed.single("owner_id", f"rep '{owner_id}' cannot take leads now ({reason})")
    assert decision.choice is not None, "an owner is only ever set with the choice that picked it"
    decision.choice.note = "chosen by a manager"
    decision.reason = f"manual: reassigned by {decided_by}" + (f" ({note})" if note else "")
    await apply_decision(uow, org_id, row, decision)
    return decision


@dataclass(frozen=True)
class LeadHandedOver:
    lead_id: str
    owner_id: str | None  # None: nobody in the team could take it; it stays with the team
    decision_id: str


@dataclass(frozen=True)
class BulkReassignment:
    rep_id: str
    team_id: str
    items: list[LeadHandedOver] = field(default_factory=list)

    @property
    def reassigned(self) -> int:
        return sum(1 for item in self.items if item.owner_id is not None)

    @property
    def left_with_team(self) -> int:
        return len(self.items) - self.reassigned


async def reassign_open_leads(uow: UnitOfWork, org_id: str, rep_id: str, *, team_id: str, strategy: BulkStrategy,
                              deactivate: bool, note: str | None, decided_by: str) -> BulkReassignment:
    """Spread the departing rep's open leads over the other members of the team (round robin or least loaded),
    one recorded decision (reason `bulk`) per lead; with `deactivate` the rep is marked inactive first (and
    RepDeactivated published), so it takes no new leads. A lead nobody can take stays with the team."""
    if await repo.get_row(uow.session, reps, org_id, rep_id, for_update=True) is None:
        raise NotFound(f"no rep {rep_id}")
    team = (await repo.all_teams(uow.session, org_id)).get(team_id)
    if team is None:
        raise ValidationFailed.single("team_id", f"no team '{team_id}' in this organization")
    members = tuple(m for m in team.member_ids if m != rep_id)
    if not members:
        raise ValidationFailed.single("team_id", "the team has no other member to take the leads")
    if deactivate:
        await repo.bump_row(uow.session, reps, org_id, rep_id, uow.clock.now(), active=False)
        await publish_rep(uow, org_id, rep_id, "deactivated")
    owner_strategy = ROUND_ROBIN if strategy == ROUND_ROBIN else LEAST_LOADED
    result = BulkReassignment(rep_id, team.id)
    for lead_id in await repo.open_leads_of(uow.session, org_id, rep_id):
        row = await repo.lock_lead(uow.session, org_id, lead_id)
        now = uow.clock.now()
        decision = Decision(lead_id, BULK, None, None, None, [], team_id=team.id, previous_owner_id=rep_id,
                            decided_at=now, decided_by=decided_by,
                            rotation_key=f"rr:team:{team.id}" if owner_strategy == ROUND_ROBIN else None)
        await choose(uow.session, org_id, decision, OwnerRequest(owner_strategy, members), row.snapshot or {}, now,
                     dry_run=False)
        assert decision.choice is not None
        decision.reason = (f"bulk: {rep_id}'s open leads spread over team {team.name} by {strategy} "
                           f"({decision.choice.note})" + (f"; {note}" if note else ""))
        await apply_decision(uow, org_id, row, decision)
        result.items.append(LeadHandedOver(lead_id, decision.owner_id, decision.id))
    return result


async def simulate(uow: UnitOfWork, org_id: str, *, lead: dict[str, Any], trigger: str,
                   draft_rules: list[dict[str, Any]] | None, stage: dict[str, Any] | None,
                   at: datetime | None) -> dict[str, Any]:
    """The decision the current rule set (or the draft) would make for the lead, with the facts it assumed.
    A dry run: no rotation advances, no rep row is locked, nothing is written."""
    config = await repo.routing_config(uow.session, org_id)
    if draft_rules is not None:
        rule_set = RuleSet(0, await validate_rules(uow.session, org_id, draft_rules))
    elif config.rule_set is not None:
        rule_set = config.rule_set
    else:
        raise NotFound("no routing rules published yet; pass a draft in `rules`")
    snapshot = dict(lead)
    if snapshot.get("value") is not None:
        snapshot["value"] = str(snapshot["value"])
    decision = await decide(uow.session, org_id, lead.get("lead_id") or "simulated", snapshot, trigger,
                            rule_set=rule_set, config=config, now=at or uow.clock.now(), stage=stage, dry_run=True)
    result = decision.to_dict()
    result.update(simulated=True, draft=draft_rules is not None, id=None,
                  assumed=assumed_facts(rule_set, snapshot, trigger))
    return result
