"""Which Mailchimp lists (and tags) a lead belongs on, as a function of where it is in its life. Pure code.

A rule names a moment of the lead's life (`trigger`) and a list; the lead is on the list (with the rule's tags)
from that moment on, for as long as the moment still holds of its current state:

- `stage_entry` (stage S): the lead has entered S (it stays on the list as it moves on);
- `stage_exit` (stage S): the lead has entered S and is no longer in it;
- `won` / `lost`: the lead's outcome is won / lost (nurturing); a reopened lead is neither any more;
- `reopened`: the lead was reopened and is open again;
- `disqualified`: the lead is disqualified — and then no other rule holds (it left the pipeline).

An `unsubscribe` rule that holds keeps the lead off its list, whatever subscribes it. The org's nurture list
(settings) is a `lost` rule with the nurture tag. An erased or unsubscribed lead, or one without an email
address, is on no list. Everything is decided from the current state only — the stages the lead has entered
(a set: the same whatever order the events came in), its current stage and outcome (the newest by version),
its status — so any order of the same events ends with the same lists and tags.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

RuleTrigger = Literal["stage_entry", "stage_exit", "won", "lost", "disqualified", "reopened"]
RULE_TRIGGERS: tuple[str, ...] = ("stage_entry", "stage_exit", "won", "lost", "disqualified", "reopened")
STAGE_TRIGGERS = frozenset({"stage_entry", "stage_exit"})
# Not stages: the outcomes have triggers of their own (a rule with stage_id "won" would never fire).
OUTCOME_WORDS = frozenset({"won", "lost", "nurturing", "disqualified", "reopened"})


@dataclass(frozen=True)
class ListRule:
    id: str
    trigger: str
    list_id: str
    action: str = "subscribe"  # subscribe, unsubscribe
    stage_id: str | None = None
    pipeline_id: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeadLife:
    """What the lists depend on, kept from events."""

    entered: frozenset[tuple[str, str]] = frozenset()  # (pipeline_id, stage_id) the lead has entered
    pipeline_id: str | None = None
    stage_id: str | None = None  # the current stage (newest StageAdvanced)
    outcome: str | None = None  # won, lost; None while open
    disqualified: bool = False
    reopened: bool = False  # reopened at least once
    reachable: bool = True  # has an email address, not erased, not unsubscribed


@dataclass(frozen=True)
class Membership:
    tags: frozenset[str] = field(default_factory=frozenset)
    rule_id: str | None = None  # the first rule that put the lead on the list (its merge fields are used)


def holds(rule: ListRule, life: LeadLife) -> bool:
    """Whether the rule's moment holds of the lead's current state."""
    if life.disqualified:
        return rule.trigger == "disqualified"
    if rule.trigger in STAGE_TRIGGERS:
        entered = [(p, s) for p, s in life.entered if s == rule.stage_id
                   and (rule.pipeline_id is None or rule.pipeline_id == p)]
        if not entered:
            return False
        if rule.trigger == "stage_entry":
            return True
        still_there = life.outcome is None and life.stage_id == rule.stage_id and \
            (rule.pipeline_id is None or rule.pipeline_id == life.pipeline_id)
        return not still_there
    if rule.trigger in ("won", "lost"):
        return life.outcome == rule.trigger and (rule.pipeline_id is None or rule.pipeline_id == life.pipeline_id)
    if rule.trigger == "reopened":
        return life.reopened and life.outcome is None and \
            (rule.pipeline_id is None or rule.pipeline_id == life.pipeline_id)
    return False  # disqualified, while the lead is not


def desired_lists(rules: Iterable[ListRule], life: LeadLife) -> dict[str, Membership]:
    """The lists the lead belongs on now, each with the union of the holding rules' tags."""
    if not life.reachable:
        return {}
    holding = [r for r in rules if holds(r, life)]
    blocked = {r.list_id for r in holding if r.action == "unsubscribe"}
    lists: dict[str, Membership] = {}
    for rule in holding:
        if rule.action != "subscribe" or rule.list_id in blocked:
            continue
        current = lists.get(rule.list_id)
        lists[rule.list_id] = Membership(tags=(current.tags if current else frozenset()) | set(rule.tags),
                                         rule_id=current.rule_id if current else rule.id)
    return lists


def nurture_rule(list_id: str, tag: str) -> ListRule:
    return ListRule(id="nurture", trigger="lost", list_id=list_id, tags=(tag,))


@dataclass(frozen=True)
class ListChange:
    """One list's change from what the lead is on to what it should be on."""

    list_id: str
    subscribe: bool = False  # (re)subscribe with `add` as tags
    remove: bool = False  # take the lead off the list
    add: frozenset[str] = frozenset()  # tags to add (on a list the lead stays on)
    drop: frozenset[str] = frozenset()  # tags to remove
    rule_id: str | None = None


def changes(current: dict[str, frozenset[str]], desired: dict[str, Membership]) -> list[ListChange]:
    """From `current` (list → tags the lead is subscribed with) to `desired`, list by list (sorted)."""
    out: list[ListChange] = []
    for list_id in sorted(set(current) | set(desired)):
        want, have = desired.get(list_id), current.get(list_id)
        if want is None and have is not None:
            out.append(ListChange(list_id, remove=True))
        elif want is not None and have is None:
            out.append(ListChange(list_id, subscribe=True, add=want.tags, rule_id=want.rule_id))
        elif want is not None and have is not None and want.tags != have:
            out.append(ListChange(list_id, add=want.tags - have, drop=have - want.tags, rule_id=want.rule_id))
    return out
