"""Mailchimp sync decisions: which list operations a lead's life (stages, outcomes, reopening, disqualification;
`reconcile`), erasure, unsubscription or changed email address needs. Each is recorded as a delivery (pending)
and carried out by the delivery worker."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.mailchimp import subscriber_hash
from ..adapters.repository import ListSettings, MailchimpMember, MailchimpRule
from ..domain.leads import KnownLead
from ..domain.mailchimp_lists import LeadLife, ListRule, changes, desired_lists, holds, nurture_rule
from ..domain.rendering import lead_variables
from .deliveries import new_delivery, record_delivery


def _subscribe_ops(lead: KnownLead, email: str, list_id: str, tags: list[str], merge_fields: dict[str, str],
                   status_if_new: str, again: bool = False) -> list[dict[str, Any]]:
    """Upsert the lead's current address `email` (merge fields from the lead's current values), then tag it.
    `again`: the lead was on the list and we took it off (archived): it is put back with that status, not left
    archived."""
    member = subscriber_hash(email)
    values = lead_variables(lead)
    merge = {tag: values.get(field) for tag, field in merge_fields.items() if values.get(field) is not None}
    upsert: dict[str, Any] = {"op": "upsert", "list_id": list_id, "email": email, "hash": member,
                              "status_if_new": status_if_new, "merge_fields": merge}
    if again:
        upsert["status"] = status_if_new
    ops: list[dict[str, Any]] = [upsert]
    if tags:
        ops.append({"op": "tags", "list_id": list_id, "hash": member, "tags": tags})
    return ops


async def subscribe(uow: UnitOfWork, *, org_id: str, lead: KnownLead, list_id: str, tags: list[str],
                    merge_fields: dict[str, str], status_if_new: str, reason: str, idem_key: str, now: datetime,
                    not_before: datetime | None, rule_id: str | None = None, again: bool = False) -> bool:
    """`not_before`: see `_after_in_flight`."""
    email = lead.email
    if not email or lead.erased or lead.unsubscribed:
        return False
    delivery = new_delivery(org_id=org_id, idem_key=idem_key, kind="mailchimp", recipient_kind="list",
                            recipient=f"mailchimp:{list_id}", lead_id=lead.lead_id, rep_id=lead.owner_id,
                            reason=reason, rule_id=rule_id, now=now, not_before=not_before,
                            payload={"list_id": list_id, "action": "subscribed", "tags": tags,
                                     "ops": _subscribe_ops(lead, email, list_id, tags, merge_fields, status_if_new,
                                                           again)})
    return await repository.add_delivery_remembering_member(uow.session, delivery, list_id, subscriber_hash(email),
                                                            tags=tags, merge_fields=merge_fields,
                                                            status_if_new=status_if_new)


async def _after_in_flight(uow: UnitOfWork, org_id: str, lead_id: str, now: datetime) -> datetime | None:
    """When a new call about the lead may run: after any Mailchimp call for it still pending or in flight (its
    lease), never before it (an older subscribe must not land after a newer unsubscribe). Read once for the
    calls one transaction adds: each of them is due at this time too, so none moves it."""
    return _not_before(await repository.last_mailchimp_call_due_at(uow.session, org_id, lead_id), now)


def _not_before(in_flight_until: datetime | None, now: datetime) -> datetime | None:
    return max(in_flight_until, now) if in_flight_until is not None else None


async def remove(uow: UnitOfWork, *, org_id: str, lead_id: str, list_id: str, member: str, archive: bool,
                 reason: str, idem_key: str, now: datetime, not_before: datetime | None,
                 rule_id: str | None = None) -> bool:
    """`not_before`: see `_after_in_flight`."""
    await repository.mark_member_removed(uow.session, org_id, lead_id, list_id, member, now)
    action = "archived" if archive else "unsubscribed"
    row = await record_delivery(uow.session, org_id=org_id, idem_key=idem_key, kind="mailchimp",
                                recipient_kind="list", recipient=f"mailchimp:{list_id}", lead_id=lead_id,
                                reason=reason, rule_id=rule_id, now=now, not_before=not_before,
                                payload={"list_id": list_id, "action": action, "tags": [],
                                         "ops": [{"op": "archive" if archive else "unsubscribe", "list_id": list_id,
                                                  "hash": member}]})
    return row is not None


async def follow_update(uow: UnitOfWork, state: ListSettings | None, *, org_id: str, lead: KnownLead, version: int,
                        now: datetime) -> int:
    """LeadUpdated stored (`lead`, as this transaction wrote it): the lead's address may have changed
    (`_move_to_address`) and its lists follow its state (`reconcile`), from one read of its Mailchimp settings
    (`state`, read in this transaction after the lead's lock: `lead_follow_ups`)."""
    if state is None:
        return 0
    moved, state = await _move_to_address(uow, state, org_id=org_id, lead=lead, version=version, now=now)
    return moved + await _reconcile(uow, state, org_id=org_id, lead=lead, transition=f"lead@{version}", now=now)


async def _move_to_address(uow: UnitOfWork, state: ListSettings, *, org_id: str, lead: KnownLead, version: int,
                           now: datetime) -> tuple[int, ListSettings]:
    """The lead's address changed: on every list it is subscribed to as another address, the old member is
    archived and the new address subscribed with the same tags and merge fields, in that order (one delivery per
    list; its key holds the lead version, so a redelivered or replayed update adds nothing). Archived rather than
    unsubscribed: the person did not opt out, and an unsubscribed address is one Mailchimp will not re-add.
    The members as a list holds them is what tells a changed address (the lists are kept under the lead's lock,
    which this transaction holds): no read of the address before the update. How many moved, and the settings
    as they now are."""
    email = lead.email
    if not email or lead.erased or lead.unsubscribed:
        return 0, state
    new_member = subscriber_hash(email)
    elsewhere = [m for m in state.members if m.subscribed and m.subscriber_hash != new_member]
    if not elsewhere:
        return 0, state
    not_before = _not_before(state.in_flight_until, now)
    moved = 0
    for m in elsewhere:
        tags, merge_fields = list(m.tags or []), dict(m.merge_fields or {})
        status_if_new = m.status_if_new or "subscribed"
        ops = [{"op": "archive", "list_id": m.list_id, "hash": m.subscriber_hash},
               *_subscribe_ops(lead, email, m.list_id, tags, merge_fields, status_if_new)]
        key = f"mailchimp:email_changed:{m.list_id}:lead:{lead.lead_id}:v{version}"
        delivery = new_delivery(org_id=org_id, kind="mailchimp", recipient_kind="list", idem_key=key,
                                recipient=f"mailchimp:{m.list_id}", lead_id=lead.lead_id, rep_id=lead.owner_id,
                                reason="email_changed", now=now, not_before=not_before,
                                payload={"list_id": m.list_id, "action": "subscribed", "tags": tags, "ops": ops})
        added = await repository.add_delivery_remembering_member(uow.session, delivery, m.list_id, new_member,
                                                                 tags=tags, merge_fields=merge_fields,
                                                                 status_if_new=status_if_new)
        moved += 1 if added else 0
    moved_lists = {m.list_id for m in elsewhere}
    # As the rows now are: the new address on those lists, and the calls just added due when `not_before` says.
    members = [dataclasses.replace(m, subscriber_hash=new_member, updated_at=now, tags=list(m.tags or []),
                                   merge_fields=dict(m.merge_fields or {}),
                                   status_if_new=m.status_if_new or "subscribed") if m.list_id in moved_lists
               else m for m in state.members]
    due = not_before or now
    in_flight_until = due if state.in_flight_until is None else max(state.in_flight_until, due)
    return moved, dataclasses.replace(state, members=members, in_flight_until=in_flight_until)


async def remove_everywhere(uow: UnitOfWork, *, org_id: str, lead_id: str, archive: bool, reason: str,
                            key_suffix: str, now: datetime) -> int:
    # The lists the lead is on (one it was taken off already needs no second call).
    members = await repository.members_of_lead(uow.session, org_id, lead_id, subscribed_only=True)
    if not members:
        return 0
    not_before = await _after_in_flight(uow, org_id, lead_id, now)
    done = 0
    for m in members:
        done += await remove(uow, org_id=org_id, lead_id=lead_id, list_id=m.list_id, member=m.subscriber_hash,
                             archive=archive, reason=reason, now=now, not_before=not_before,
                             idem_key=f"mailchimp:{reason}:{m.list_id}:lead:{lead_id}:{key_suffix}")
    return done


async def reconcile(uow: UnitOfWork, *, org_id: str, lead: KnownLead, transition: str, now: datetime) -> int:
    """Bring the lead's Mailchimp lists and tags to what its current state calls for (domain/mailchimp_lists.py):
    subscribe where a rule now holds, retag where the tags differ, take it off where none holds any more. Each
    change is one delivery keyed by list and `transition` (the event's version), so a redelivered or replayed
    event changes nothing; and since the lists follow the state, events arriving in another order end the same."""
    return await reconcile_as_read(uow, await repository.list_settings(uow.session, org_id, lead.lead_id),
                                   org_id=org_id, lead=lead, transition=transition, now=now)


async def reconcile_as_read(uow: UnitOfWork, state: ListSettings | None, *, org_id: str, lead: KnownLead,
                            transition: str, now: datetime) -> int:
    """`reconcile` with the org's and the lead's Mailchimp settings read already in this transaction (with the
    lead's lock held: `state` is what the lists are; None: Mailchimp is not configured)."""
    if state is None:
        return 0
    return await _reconcile(uow, state, org_id=org_id, lead=lead, transition=transition, now=now)


async def _reconcile(uow: UnitOfWork, state: ListSettings, *, org_id: str, lead: KnownLead, transition: str,
                     now: datetime) -> int:
    """`reconcile` with the org's and the lead's Mailchimp settings read already."""
    settings, rows, not_before = state.account, state.rules, _not_before(state.in_flight_until, now)
    by_id = {r.id: r for r in rows}
    rules = [ListRule(id=r.id, trigger=r.trigger, list_id=r.list_id, action=r.action,
                      stage_id=r.stage_id, pipeline_id=r.pipeline_id, tags=tuple(r.tags or ()))
             for r in rows]
    if settings.nurture_list_id:
        rules.append(nurture_rule(settings.nurture_list_id, settings.nurture_tag or "nurture"))
    members = {m.list_id: m for m in state.members}
    current = {list_id: frozenset(m.tags or ()) for list_id, m in members.items() if m.subscribed}
    life = lead_life(lead)
    vetoed = {r.list_id for r in rules if r.action == "unsubscribe" and holds(r, life)}
    done = 0
    for change in changes(current, desired_lists(rules, life)):
        key = f"mailchimp:list:{change.list_id}:lead:{lead.lead_id}:{transition}"
        rule = by_id.get(change.rule_id or "")
        if change.remove:
            # Off the list because a rule says so (unsubscribed), or because no rule holds any more (archived:
            # the person did not opt out, and may be put back on the list later).
            done += await remove(uow, org_id=org_id, lead_id=lead.lead_id, list_id=change.list_id,
                                 member=members[change.list_id].subscriber_hash,
                                 archive=change.list_id not in vetoed, reason="list_rule", idem_key=key, now=now,
                                 not_before=not_before)
        elif change.subscribe:
            merge_fields = dict(rule.merge_fields) if rule else {"FNAME": "first_name", "LNAME": "last_name"}
            status_if_new = rule.status_if_new if rule else "subscribed"
            done += await subscribe(uow, org_id=org_id, lead=lead, list_id=change.list_id, tags=sorted(change.add),
                                    merge_fields=merge_fields, status_if_new=status_if_new,
                                    reason=_reason(change.rule_id, rule), idem_key=key,
                                    now=now, not_before=not_before, rule_id=rule.id if rule else None,
                                    again=change.list_id in members)
        else:
            done += await retag(uow, org_id=org_id, lead=lead, member=members[change.list_id],
                                add=sorted(change.add), drop=sorted(change.drop), idem_key=key, now=now,
                                not_before=not_before)
    return done


async def retag(uow: UnitOfWork, *, org_id: str, lead: KnownLead, member: MailchimpMember, add: list[str],
                drop: list[str], idem_key: str, now: datetime, not_before: datetime | None) -> bool:
    """The lead stays on the list with other tags (`not_before`: see `_after_in_flight`)."""
    tags = sorted((set(member.tags or ()) | set(add)) - set(drop))
    await repository.set_member_tags(uow.session, org_id, lead.lead_id, member.list_id, tags, now)
    ops: list[dict[str, Any]] = []
    if add:
        ops.append({"op": "tags", "list_id": member.list_id, "hash": member.subscriber_hash, "tags": add})
    if drop:
        ops.append({"op": "tags", "list_id": member.list_id, "hash": member.subscriber_hash, "tags": drop,
                    "active": False})
    row = await record_delivery(uow.session, org_id=org_id, idem_key=idem_key, kind="mailchimp", recipient_kind="list",
                                recipient=f"mailchimp:{member.list_id}", lead_id=lead.lead_id,
                                rep_id=lead.owner_id, reason="list_rule", now=now,
                                not_before=not_before,
                                payload={"list_id": member.list_id, "action": "tagged", "tags": tags, "ops": ops})
    return row is not None


def _reason(rule_id: str | None, rule: MailchimpRule | None) -> str:
    """The delivery log's reason: the org's nurture list, a stage rule or an outcome rule."""
    if rule is None:
        return "nurture" if rule_id == "nurture" else "list_rule"
    return "stage_rule" if rule.trigger in ("stage_entry", "stage_exit") else "outcome_rule"


def lead_life(lead: KnownLead) -> LeadLife:
    return LeadLife(entered=frozenset((p, s) for p, s in lead.entered_stages or ()),
                    pipeline_id=lead.pipeline_id, stage_id=lead.stage_id, outcome=lead.outcome,
                    disqualified=lead.status == "disqualified", reopened=bool(lead.reopened),
                    reachable=bool(lead.email) and not lead.erased and not lead.unsubscribed)
