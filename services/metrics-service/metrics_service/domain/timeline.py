"""A lead's life in its pipeline, derived from its timeline rows (stage entries and outcomes) in time order.

The rows may have arrived in any order; the facts only depend on the set of rows, sorted by
(at_ts, rank, event_id). At equal times a reopening comes first, then stage entries, then outcomes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

TIE_RANK = {"reopened": 0, "stage": 1, "won": 2, "lost": 2, "disqualified": 2}
OUTCOMES = ("won", "lost", "disqualified", "reopened")


def sort_key(row: Mapping[str, Any]) -> tuple[float, int, str]:
    return (row["at_ts"], row["rank"], row["event_id"])


def lead_facts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The m_leads columns a lead's timeline decides.

    - pipeline_id: the pipeline of the latest stage entry; pipeline_entered_ts: the first stage entry;
    - first_position: position of the first stage entry; max_position: highest position entered in the
      current pipeline; ask_entered_ts: first entry into an ask stage;
    - current stage: the latest stage entry; outcome: the latest of won/lost/disqualified/reopened
      (reopened → open), closed_ts its time when closed; won_value/currency from LeadWon; reopen_count.
    """
    ordered = sorted(rows, key=sort_key)
    stages = [r for r in ordered if r["kind"] == "stage"]
    outcomes = [r for r in ordered if r["kind"] in OUTCOMES]
    facts: dict[str, Any] = {
        "pipeline_id": None, "pipeline_entered_ts": None, "first_position": None, "max_position": None,
        "ask_entered_ts": None, "current_stage_id": None, "current_position": None,
        "current_stage_entered_ts": None, "current_win_probability": None,
        "outcome": "open", "closed_ts": None, "won_value": None, "won_currency": None,
        "reopen_count": sum(1 for r in ordered if r["kind"] == "reopened"),
    }
    if stages:
        last = stages[-1]
        facts.update(
            pipeline_id=last["pipeline_id"], pipeline_entered_ts=stages[0]["at_ts"],
            first_position=stages[0]["position"],
            max_position=max(r["position"] for r in stages if r["pipeline_id"] == last["pipeline_id"]),
            ask_entered_ts=next((r["at_ts"] for r in stages if r["is_ask"]), None),
            current_stage_id=last["stage_id"], current_position=last["position"],
            current_stage_entered_ts=last["at_ts"], current_win_probability=last["win_probability"],
        )
    if outcomes and outcomes[-1]["kind"] != "reopened":
        final = outcomes[-1]
        facts.update(outcome=final["kind"], closed_ts=final["at_ts"])
        if final["kind"] == "won":
            facts.update(won_value=_decimal(final["value"]), won_currency=final["currency"])
    return facts


def successors(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, Any, Any, Any]]:
    """event_id → (next_ts, next_kind, next_position, next_reason) of the row that follows it."""
    ordered = sorted(rows, key=sort_key)
    out: dict[str, tuple[Any, Any, Any, Any]] = {}
    # Not strict: with no rows at all, the trailing None (the last row's missing successor) is left over.
    for row, nxt in zip(ordered, [*ordered[1:], None], strict=False):
        out[row["event_id"]] = ((nxt["at_ts"], nxt["kind"], nxt["position"], nxt["reason"]) if nxt
                                else (None, None, None, None))
    return out


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


# ------------------------------------------------------------------ credit: who owned the lead when
WIN_HANDOVER = "lead_won"  # an assignment the win itself triggered (the hand-over to account management)
Owner = tuple[Any, Any, Any]  # (owner_id, team_id, territory_id)
NOBODY: Owner = (None, None, None)


def _assignment_order(a: Mapping[str, Any]) -> tuple[int, str]:
    return (a["ver"], a["tb"])


def current_owner(assignments: Sequence[Mapping[str, Any]]) -> Owner:
    """The newest assignment (version, then occurred_at|event id): the lead's owner now."""
    if not assignments:
        return NOBODY
    a = max(assignments, key=_assignment_order)
    return (a["owner_id"], a["team_id"], a["territory_id"])


def owner_at(assignments: Sequence[Mapping[str, Any]], ts: float | None, *, at_win: bool = False) -> Owner:
    """Who owned the lead at `ts`: the newest assignment among those that occurred at or before it, else the
    first assignment (a lead is assigned moments after it is created or enters its first stage). At a win the
    hand-over the win triggered is not counted, whatever its timestamp says: it happens because of the win."""
    if ts is None:
        return current_owner(assignments)
    usable = [a for a in assignments if not (at_win and a["trigger"] == WIN_HANDOVER)] or list(assignments)
    before = [a for a in usable if a["at_ts"] <= ts]
    if before:
        return current_owner(before)
    if not usable:
        return NOBODY
    first = min(usable, key=lambda a: (a["at_ts"], a["ver"], a["tb"]))
    return (first["owner_id"], first["team_id"], first["territory_id"])


def row_credit(row: Mapping[str, Any], nxt: tuple[Any, Any, Any, Any],
               assignments: Sequence[Mapping[str, Any]]) -> Owner:
    """The owner credited with a timeline row: an ended stay → the owner at its exit (`nxt` = its successor);
    an open stay → the current owner; an outcome → the owner at that moment."""
    if row["kind"] == "stage":
        if nxt[0] is None:
            return current_owner(assignments)
        return owner_at(assignments, nxt[0], at_win=nxt[1] == "won")
    return owner_at(assignments, row["at_ts"], at_win=row["kind"] == "won")


def lead_credit(facts: Mapping[str, Any], created_ts: float | None,
                assignments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The m_leads credit columns: at the close for a closed lead (its current owner while open), at creation."""
    if facts["outcome"] != "open" and facts["closed_ts"] is not None:
        credit = owner_at(assignments, facts["closed_ts"], at_win=facts["outcome"] == "won")
    else:
        credit = current_owner(assignments)
    first = owner_at(assignments, created_ts) if created_ts is not None else owner_at(assignments, float("-inf"))
    return {"credit_owner_id": credit[0], "credit_team_id": credit[1], "credit_territory_id": credit[2],
            "first_owner_id": first[0], "first_team_id": first[1], "first_territory_id": first[2]}
