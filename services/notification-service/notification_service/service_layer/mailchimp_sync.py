"""Mailchimp sync decisions: which list operations a lead's stage entry, loss, disqualification or erasure
needs. Each is recorded as a delivery (pending) and carried out by the delivery worker."""
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
                           now: datetime) -> None:
    insert = dialect_insert(uow.session)
    await uow.session.execute(insert(mailchimp_members).values(
        org_id=org_id, lead_id=lead_id, list_id=list_id, subscriber_hash=member, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["org_id", "lead_id", "list_id"]))


async def subscribe(uow: UnitOfWork, *, org_id: str, lead: dict[str, Any], list_id: str, tags: list[str],
                    merge_fields: dict[str, str], status_if_new: str, reason: str, idem_key: str, now: datetime,
                    rule_id: str | None = None) -> bool:
    email = lead.get("email")
    if not email or lead.get("erased") or lead.get("unsubscribed"):
        return False
    member = subscriber_hash(email)
    values = lead_variables(lead)
    merge = {tag: values.get(field) for tag, field in merge_fields.items() if values.get(field) is not None}
    ops: list[dict[str, Any]] = [{"op": "upsert", "list_id": list_id, "email": email, "hash": member,
                                  "status_if_new": status_if_new, "merge_fields": merge}]
    if tags:
        ops.append({"op": "tags", "list_id": list_id, "hash": member, "tags": tags})
    await _remember_member(uow, org_id, lead["lead_id"], list_id, member, now)
    row = await record_delivery(uow.session, org_id=org_id, idem_key=idem_key, kind="mailchimp",
                                recipient_kind="list", recipient=f"mailchimp:{list_id}", lead_id=lead["lead_id"],
                                rep_id=lead.get("owner_id"), reason=reason, rule_id=rule_id, now=now,
                                payload={"list_id": list_id, "action": "subscribed", "tags": tags, "ops": ops})
    return row is not None


async def remove(uow: UnitOfWork, *, org_id: str, lead_id: str, list_id: str, member: str, archive: bool,
                 reason: str, idem_key: str, now: datetime, rule_id: str | None = None) -> bool:
    # Runs after any subscribe for this lead still in flight (its lease), never before it.
    in_flight = (await uow.session.execute(sa.select(sa.func.max(deliveries.c.next_attempt_at)).where(
        deliveries.c.org_id == org_id, deliveries.c.lead_id == lead_id, deliveries.c.kind == "mailchimp",
        deliveries.c.status.in_(("pending", "sending"))))).scalar_one_or_none()
    action = "archived" if archive else "unsubscribed"
    row = await record_delivery(uow.session, org_id=org_id, idem_key=idem_key, kind="mailchimp",
                                recipient_kind="list", recipient=f"mailchimp:{list_id}", lead_id=lead_id,
                                reason=reason, rule_id=rule_id, now=now,
                                not_before=max(in_flight, now) if in_flight is not None else None,
                                payload={"list_id": list_id, "action": action, "tags": [],
                                         "ops": [{"op": "archive" if archive else "unsubscribe", "list_id": list_id,
                                                  "hash": member}]})
    return row is not None


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
