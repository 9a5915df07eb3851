"""Which assignments (LeadAssigned) change a lead's position: plain functions of the versions and owners involved."""
from __future__ import annotations

# Who a lead is assigned to: (owner id, team id, the owner's time zone).
Assignee = tuple[str | None, str | None, str | None]


def changes_nothing(known_version: int, known: Assignee, version: int, told: Assignee) -> bool:
    """An assignment at `version` that tells nothing the position does not hold: it names the owner, team and time
    zone of the assignment known at the version just before (as the routing of the same decision names them), and
    no other decision lies between the two. Recording its version would change nothing (no other event has it);
    the owner's open tasks are the owner's already (every change of owner moves them). With no assignment known
    (`known_version` 0) the lead's own snapshot may still move its owner: that is a change."""
    return known_version > 0 and version == known_version + 1 and told == known
