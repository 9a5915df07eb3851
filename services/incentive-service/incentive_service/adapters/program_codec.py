"""Program definitions and facts to and from the JSON stored in `programs.definition` and `program_facts.fact`
(the same shape the HTTP API takes and shows)."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..domain.programs.definitions import (
    BadgeRule,
    Guards,
    Milestone,
    ProgramDefinition,
    Reward,
    Round,
    RuleVersion,
    ScoringRule,
    Team,
)
from ..domain.programs.scoring import Fact


def as_time(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # SQLite hands back naive UTC


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def rule_to_json(rule: ScoringRule) -> dict[str, Any]:
    return {"behaviour": rule.behaviour, "points": rule.points, "min_duration_seconds": rule.min_duration_seconds,
            "outcomes": list(rule.outcomes), "points_per_value_unit": rule.points_per_value_unit,
            "value_unit": str(rule.value_unit)}


def rule_from_json(raw: dict[str, Any]) -> ScoringRule:
    return ScoringRule(behaviour=raw["behaviour"], points=int(raw.get("points") or 0),
                       min_duration_seconds=raw.get("min_duration_seconds"),
                       outcomes=tuple(raw.get("outcomes") or ()),
                       points_per_value_unit=int(raw.get("points_per_value_unit") or 0),
                       value_unit=Decimal(str(raw.get("value_unit") or 1000)))


def reward_to_json(reward: Reward) -> dict[str, Any]:
    return {"badge": reward.badge, "cash": None if reward.cash is None else str(reward.cash),
            "currency": reward.currency}


def reward_from_json(raw: dict[str, Any] | None) -> Reward:
    raw = raw or {}
    return Reward(badge=raw.get("badge"), cash=_dec(raw.get("cash")), currency=raw.get("currency"))


def definition_to_json(d: ProgramDefinition) -> dict[str, Any]:
    return {
        "name": d.name, "format": d.format, "starts_at": d.starts_at.isoformat(), "ends_at": d.ends_at.isoformat(),
        "rule_versions": [{"version": v.version, "effective_from": v.effective_from.isoformat(),
                           "rules": [rule_to_json(r) for r in v.rules]} for v in d.versions],
        "participants": list(d.participants),
        "teams": [{"id": t.id, "name": t.name, "members": list(t.members)} for t in d.teams],
        "guards": {"rep_logged_only": d.guards.rep_logged_only, "stage_revert_days": d.guards.stage_revert_days,
                   "sandbag_last_days": d.guards.sandbag_last_days},
        "currency": d.currency, "target": d.target,
        "milestones": [{"id": m.id, "name": m.name, "points": m.points, "reward": reward_to_json(m.reward)}
                       for m in d.milestones],
        "place_rewards": [reward_to_json(r) for r in d.place_rewards],
        "badges": [{"id": b.id, "name": b.name, "kind": b.kind, "behaviour": b.behaviour, "count": b.count}
                   for b in d.badges],
        "rounds": [{"starts_at": r.starts_at.isoformat(), "ends_at": r.ends_at.isoformat()} for r in d.rounds],
        "team_scoring": d.team_scoring, "hidden": d.hidden,
    }


def definition_from_json(raw: dict[str, Any]) -> ProgramDefinition:
    guards = raw.get("guards") or {}
    return ProgramDefinition(
        name=raw["name"], format=raw["format"], starts_at=as_time(raw["starts_at"]), ends_at=as_time(raw["ends_at"]),
        versions=tuple(RuleVersion(int(v["version"]), as_time(v["effective_from"]),
                                   tuple(rule_from_json(r) for r in v["rules"])) for v in raw["rule_versions"]),
        participants=tuple(raw.get("participants") or ()),
        teams=tuple(Team(t["id"], t["name"], tuple(t["members"])) for t in raw.get("teams") or ()),
        guards=Guards(**guards),
        currency=raw.get("currency") or "USD", target=raw.get("target"),
        milestones=tuple(Milestone(m["id"], m["name"], int(m["points"]), reward_from_json(m.get("reward")))
                         for m in raw.get("milestones") or ()),
        place_rewards=tuple(reward_from_json(r) for r in raw.get("place_rewards") or ()),
        badges=tuple(BadgeRule(b["id"], b["name"], b["kind"], b["behaviour"], int(b["count"]))
                     for b in raw.get("badges") or ()),
        rounds=tuple(Round(as_time(r["starts_at"]), as_time(r["ends_at"])) for r in raw.get("rounds") or ()),
        team_scoring=raw.get("team_scoring") or "sum", hidden=bool(raw.get("hidden")),
    )


_FACT_FIELDS = ("activity_kind", "duration_seconds", "outcome", "source", "stage_id", "stage_position",
                "from_stage_position", "currency")


def fact_to_json(f: Fact) -> dict[str, Any]:
    out: dict[str, Any] = {"rep_id": f.rep_id, "seq": f.seq, "value": None if f.value is None else str(f.value)}
    out.update({name: getattr(f, name) for name in _FACT_FIELDS})
    return out


def fact_from_row(row: Any) -> Fact:
    raw = row["fact"]
    return Fact(key=row["fact_key"], kind=row["kind"], lead_id=row["lead_id"], rep_id=raw.get("rep_id"),
                at=as_time(row["at"]), seq=int(raw.get("seq") or 0), value=_dec(raw.get("value")),
                **{name: raw.get(name) for name in _FACT_FIELDS if name != "source"},
                source=raw.get("source") or "rep")
