"""Mailchimp sync decisions: which list operations a lead's stage entry, loss, disqualification, erasure or
changed email address needs. Each is recorded as a delivery (pending) and carried out by the delivery worker."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from salesflow_shared.inbox import dialect_insert
from salesflow_shared.uow import UnitOfWork

from ..adapters.mailchimp import subscriber_hash
from ..adapters.orm import deliveries, mailchimp_accounts, mailchimp_members, mailchimp_rules
from ..domain.rendering import lead_variables
from .deliveries import record_delivery


async def account(uow: UnitOfWork, org_id: str) -> dict[str, Any] | None:
    row = (await uow.session.execute(sa.select(mailchimp_accounts).where(
        mailchimp_accounts.c.org_id == org_id))).mappings().first()
    return dict(row) if row else None


async def _remember_member(uow: UnitOfWork, org_id: str, lead_id: str, list_id: str, member: str,
                           now: datetime, **how: Any) -> None:
    """Record that the lead is on the list as `member`, subscribed with `how` (tags, merge_fields,
    status_if_new); the latest subscription wins."""
    insert = dialect_insert(uow.session)
    values = dict(subscriber_hash=member, subscribed=True, updated_at=now, **how)
    await uow.session.execute(insert(mailchimp_members).values(org_id=org_id, lead_id=lead_id, list_id=list_id,
                                                               **values)
                              .on_conflict_do_update(index_elements=["org_id", "lead_id", "list_id"], set_=values))


def _subscribe_ops(lead: dict[str, Any], list_id: str, tags: list[str], merge_fields: dict[str, str],
                   status_if_new: str) -> list[dict[str, Any]]:
    """Upsert the lead's current address (merge fields from the lead's current values), then tag it."""
    email = lead["email"]
    member = subscriber_hash(email)
    values = lead_variables(lead)
    merge = {tag: values.get(field) for tag, field in merge_fields.items() if values.get(field) is not None}
    ops: list[dict[str, Any]] = [{"op": "upsert", "list_id": list_id, "email": email, "hash": member,
                                  "status_if_new": status_if_new, "merge_fields": merge}]
    if tags:
        ops.append({"op": "tags", "list_id": list_id, "hash": member, "tags": tags})
    return ops


async def subscribe(uow: UnitOfWork, *, org_id: str, lead: dict[str, Any], list_id: str, tags: list[str],
                    merge_fields: dict[str, str], status_if_new: str, reason: str, idem_key: str, now: datetime,
                    rule_id: str | None = None) -> bool:
    email = lead.get("email")
    if not email or lead.get("erased") or lead.get("unsubscribed"):
        return False
    await _remember_member(uow, org_id, lead["lead_id"], list_id, subscriber_hash(email), now, tags=tags,
                           merge_fields=merge_fields, status_if_new=status_if_new)
    row = await record_delivery(uow.session, org_id=org_id, idem_key=idem_key, kind="mailchimp",
                                recipient_kind="list", recipient=f"mailchimp:{list_id}", lead_id=lead["lead_id"],
                                rep_id=lead.get("owner_id"), reason=reason, rule_id=rule_id, now=now,
                                payload={"list_id": list_id, "action": "subscribed", "tags": tags,
                                         "ops": _subscribe_ops(lead, list_id, tags, merge_fields, status_if_new)})
    return row is not None


async def _after_in_flight(uow: UnitOfWork, org_id: str, lead_id: str, now: datetime) -> datetime | None:
    """When a new call about the lead may run: after any Mailchimp call for it still pending or in flight (its
    lease), never before it (an older subscribe must not land after a newer unsubscribe)."""
    in_flight = (await uow.session.execute(sa.select(sa.func.max(deliveries.c.next_attempt_at)).where(
        deliveries.c.org_id == org_id, deliveries.c.lead_id == lead_id, deliveries.c.kind == "mailchimp",
        deliveries.c.status.in_(("pending", "sending"))))).scalar_one_or_none()
    return max(in_flight, now) if in_flight is not None else None


async def remove(uow: UnitOfWork, *, org_id: str, lead_id: str, list_id: str, member: str, archive: bool,
                 reason: str, idem_key: str, now: datetime, rule_id: str | None = None) -> bool:
    not_before = await _after_in_flight(uow, org_id, lead_id, now)
    await uow.session.execute(sa.update(mailchimp_members).where(
        mailchimp_members.c.org_id == org_id, mailchimp_members.c.lead_id == lead_id,
        mailchimp_members.c.list_id == list_id, mailchimp_members.c.subscriber_hash == member,
    ).values(subscribed=False, updated_at=now))
    action = "archived" if archive else "unsubscribed"
    row = await record_delivery(uow.session, org_id=org_id, idem_key=idem_key, kind="mailchimp",
                                recipient_kind="list", recipient=f"mailchimp:{list_id}", lead_id=lead_id,
                                reason=reason, rule_id=rule_id, now=now, not_before=not_before,
                                payload={"list_id": list_id, "action": action, "tags": [],
                                         "ops": [{"op": "archive" if archive else "unsubscribe", "list_id": list_id,
                                                  "hash": member}]})
    return row is not None


async def on_email_changed(uow: UnitOfWork, *, org_id: str, lead: dict[str, Any], version: int,
                           now: datetime) -> int:
    """The lead's address changed: on every list it is subscribed to, the old member is archived and the new
    address subscribed with the same tags and merge fields, in that order (one delivery per list; its key
    holds the lead version, so a redelivered or replayed update adds nothing). Archived rather than
    unsubscribed: the person did not opt out, and an unsubscribed address is one Mailchimp will not re-add."""
    email = lead.get("email")
    if not email or lead.get("erased") or lead.get("unsubscribed") or await account(uow, org_id) is None:
        return 0
    new_member = subscriber_hash(email)
    members = (await uow.session.execute(sa.select(mailchimp_members).where(
        mailchimp_members.c.org_id == org_id, mailchimp_members.c.lead_id == lead["lead_id"],
        mailchimp_members.c.subscribed.is_(True), mailchimp_members.c.subscriber_hash != new_member,
    ))).mappings().all()
    not_before = await _after_in_flight(uow, org_id, lead["lead_id"], now)
    moved = 0
    for m in members:
        tags, merge_fields = list(m["tags"] or []), dict(m["merge_fields"] or {})
        status_if_new = m["status_if_new"] or "subscribed"
        await _remember_member(uow, org_id, lead["lead_id"], m["list_id"], new_member, now, tags=tags,
                               merge_fields=merge_fields, status_if_new=status_if_new)
        ops = [{"op": "archive", "list_id": m["list_id"], "hash": m["subscriber_hash"]},
               *_subscribe_ops(lead, m["list_id"], tags, merge_fields, status_if_new)]
        key = f"mailchimp:email_changed:{m['list_id']}:lead:{lead['lead_id']}:v{version}"
        row = await record_delivery(uow.session, org_id=org_id, kind="mailchimp", recipient_kind="list", idem_key=key,
                                    recipient=f"mailchimp:{m['list_id']}", lead_id=lead["lead_id"],
                                    rep_id=lead.get("owner_id"), reason="email_changed", now=now,
                                    not_before=not_before,
                                    payload={"list_id": m["list_id"], "action": "subscribed", "tags": tags,
                                             "ops": ops})
        moved += 1 if row is not None else 0
    return moved


async def remove_everywhere(uow: UnitOfWork, *, org_id: str, lead_id: str, archive: bool, reason: str,
                            key_suffix: str, now: datetime) -> int:
    members = (await uow.session.execute(sa.select(mailchimp_members).where(
        mailchimp_members.c.org_id == org_id, mailchimp_members.c.lead_id == lead_id))).mappings().all()
    done = 0
    for m in members:
        done += await remove(uow, org_id=org_id, lead_id=lead_id, list_id=m["list_id"], member=m["subscriber_hash"],
                             archive=archive, reason=reason, now=now,
                             idem_key=f"mailchimp:{reason}:{m['list_id']}:lead:{lead_id}:{key_suffix}")
    return done


async def on_stage_entry(uow: UnitOfWork, *, org_id: str, lead: dict[str, Any], pipeline_id: str, stage_id: str,
                         transition: str, now: datetime) -> int:
    if await account(uow, org_id) is None:
        return 0
    rules = (await uow.session.execute(sa.select(mailchimp_rules).where(
        mailchimp_rules.c.org_id == org_id, mailchimp_rules.c.stage_id == stage_id))).mappings().all()
    done = 0
    for rule in rules:
        if rule["pipeline_id"] and rule["pipeline_id"] != pipeline_id:
            continue
        key = f"mailchimp:rule:{rule['id']}:lead:{lead['lead_id']}:{transition}"
        if rule["action"] == "subscribe":
            done += await subscribe(uow, org_id=org_id, lead=lead, list_id=rule["list_id"], tags=list(rule["tags"]),
                                    merge_fields=dict(rule["merge_fields"]), status_if_new=rule["status_if_new"],
                                    reason="stage_rule", idem_key=key, now=now, rule_id=rule["id"])
        elif lead.get("email"):
            done += await remove(uow, org_id=org_id, lead_id=lead["lead_id"], list_id=rule["list_id"],
                                 member=subscriber_hash(lead["email"]), archive=False, reason="stage_rule",
                                 idem_key=key, now=now, rule_id=rule["id"])
    return done


async def on_lost(uow: UnitOfWork, *, org_id: str, lead: dict[str, Any], transition: str, now: datetime) -> bool:
    settings = await account(uow, org_id)
    if settings is None or not settings.get("nurture_list_id"):
        return False
    tag = settings.get("nurture_tag") or "nurture"
    return await subscribe(uow, org_id=org_id, lead=lead, list_id=settings["nurture_list_id"], tags=[tag],
                           merge_fields={"FNAME": "first_name", "LNAME": "last_name"}, status_if_new="subscribed",
                           reason="nurture", idem_key=f"mailchimp:nurture:lead:{lead['lead_id']}:{transition}", now=now)

