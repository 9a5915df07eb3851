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
    for row, nxt in zip(ordered, [*ordered[1:], None]):
        out[row["event_id"]] = ((nxt["at_ts"], nxt["kind"], nxt["position"], nxt["reason"]) if nxt
                                else (None, None, None, None))
    return out


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
