"""Reading and writing notification-service's tables: every query of the service is here (always org-scoped,
except the workers' claims of due rows, which span orgs). Rows come back as the typed records below.

The delivery worker's statements run for every message sent, so they are built once (module level, with bind
parameters): executing a prebuilt statement reuses its cache key and compiled form instead of building both again.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.db import cte_parameters, first_record, prefixed, records, row_values, rows_affected
from salesflow_shared.events import PipelineDefinedV1, RepSnapshot
from salesflow_shared.inbox import dialect_insert, dialect_name, per_dialect
from salesflow_shared.outbox_rows import KEYED_OUTBOX_ARRAYS, KeyedOutboxRows, insert_outbox_from
from salesflow_shared.ownership import owned_or_owned_before
from salesflow_shared.ownership import remember_past_owner as remember_owner
from salesflow_shared.uow import INSERT_OUTBOX

from ..domain.leads import KnownLead
from ..domain.milestones import MilestoneKind
from ..domain.sequences import Trigger
from .orm import (
    deliveries,
    enrollments,
    known_pipelines,
    lead_past_owners,
    leads,
    mailchimp_accounts,
    mailchimp_members,
    mailchimp_rules,
    milestone_rules,
    reps,
    sequences,
    task_assignees,
    templates,
    webhook_subscriptions,
)

R = TypeVar("R")


# ====================================================================== records
@dataclass(frozen=True)
class Template:
    id: str
    org_id: str
    name: str
    key: str | None
    audience: str
    subject: str
    html_body: str
    text_body: str
    version: int
    created_at: datetime
    updated_at: datetime

    def parts(self) -> dict[str, str]:
        return {"subject": self.subject, "html_body": self.html_body, "text_body": self.text_body}


@dataclass(frozen=True)
class SequenceRecord:
    id: str
    org_id: str
    name: str
    trigger: Trigger
    pipeline_id: str | None
    stage_id: str | None
    source: str | None
    steps: list[dict[str, Any]]  # [{template_id, delay_minutes, business_hours}] as the API took them
    business_timezone: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Enrollment:
    id: str
    org_id: str
    sequence_id: str
    lead_id: str
    trigger_key: str
    stage_id: str | None
    status: str
    stop_reason: str | None
    next_step: int
    next_due_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RunningEnrollment:
    """An active enrollment with its sequence's trigger: what decides whether a lifecycle fact stops it."""
    id: str
    stage_id: str | None
    trigger: str


@dataclass(frozen=True)
class Delivery:
    id: str
    org_id: str
    idem_key: str
    kind: str
    recipient_kind: str
    recipient: str | None
    lead_id: str | None
    rep_id: str | None
    reason: str
    sequence_id: str | None
    enrollment_id: str | None
    step: int | None
    template_id: str | None
    rule_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    payload: dict[str, Any] | None
    message_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None


@dataclass(frozen=True)
class MailchimpAccount:
    org_id: str
    api_key: str
    nurture_list_id: str | None
    nurture_tag: str | None
    updated_at: datetime


@dataclass(frozen=True)
class MailchimpMember:
    org_id: str
    lead_id: str
    list_id: str
    subscriber_hash: str
    updated_at: datetime
    subscribed: bool
    tags: list[str] | None
    merge_fields: dict[str, str] | None
    status_if_new: str | None


@dataclass(frozen=True)
class MailchimpRule:
    id: str
    org_id: str
    pipeline_id: str | None
    trigger: str
    stage_id: str | None
    action: str
    list_id: str
    tags: list[str]
    merge_fields: dict[str, str]
    status_if_new: str
    created_at: datetime


@dataclass(frozen=True)
class MilestoneRuleRecord:
    id: str
    org_id: str
    name: str
    kind: MilestoneKind
    stage_id: str | None
    min_value: Decimal | None
    currency: str | None
    channels: list[str]
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class WebhookSubscription:
    id: str
    org_id: str
    url: str
    secret: str
    reasons: list[str]
    rep_id: str | None
    active: bool
    created_at: datetime


def _prefixed(table: sa.Table | sa.CTE, prefix: str) -> list[Any]:
    """The table's (or a CTE's) columns labelled `prefix` + name, for a statement that reads several tables' rows at
    once."""
    return [column.label(prefix + column.name) for column in table.c]


def _unprefixed(row: Any, table: sa.Table, prefix: str) -> dict[str, Any] | None:
    """The table's row out of a row of `_prefixed` columns; None when the outer join found none (no key)."""
    values = {column.name: row[prefix + column.name] for column in table.c}
    return values if all(values[c.name] is not None for c in table.primary_key) else None


async def _active_of_org(session: AsyncSession, cls: type[R], table: sa.Table, org_id: str) -> list[R]:
    rows = await session.execute(sa.select(table).where(table.c.org_id == org_id, table.c.active.is_(True)))
    return records(cls, rows.mappings())


async def _org_page(session: AsyncSession, cls: type[R], table: sa.Table, org_id: str, limit: int,
                    after: tuple[datetime, str] | None) -> list[R]:
    """One page of the org's rows of `table`, newest first (see `_newest_first`)."""
    return records(cls, await _newest_first(session, sa.select(table).where(table.c.org_id == org_id), table, limit,
                                            after))


async def _newest_first(session: AsyncSession, query: Any, table: sa.Table, limit: int,
                        after: tuple[datetime, str] | None) -> Sequence[Any]:
    """One page of `query`, newest first, keyset on (created_at, id): `limit` + 1 rows tell whether more follow."""
    if after is not None:
        at, last_id = after
        query = query.where(sa.or_(table.c.created_at < at, sa.and_(table.c.created_at == at, table.c.id < last_id)))
    return (await session.execute(query.order_by(table.c.created_at.desc(), table.c.id.desc())
                                  .limit(limit + 1))).mappings().all()


# ====================================================================== templates
async def get_template(session: AsyncSession, org_id: str, *, template_id: str | None = None,
                       key: str | None = None) -> Template | None:
    """The template with this id, or else with this key (a rep email's `rep.<reason>`)."""
    query = sa.select(templates).where(templates.c.org_id == org_id)
    query = query.where(templates.c.id == template_id) if template_id else query.where(templates.c.key == key)
    return first_record(Template, await session.execute(query))


async def template_key_taken(session: AsyncSession, org_id: str, key: str, *, except_id: str | None = None) -> bool:
    query = sa.select(templates.c.id).where(templates.c.org_id == org_id, templates.c.key == key)
    if except_id:
        query = query.where(templates.c.id != except_id)
    return (await session.execute(query)).first() is not None


async def add_template(session: AsyncSession, template: Template) -> None:
    await session.execute(sa.insert(templates).values(**row_values(template)))


async def replace_template(session: AsyncSession, org_id: str, template_id: str, *, version: int,
                           values: dict[str, Any], now: datetime) -> bool:
    """Replace the template's parts if it is still at `version`; False when it changed meanwhile."""
    result = await session.execute(sa.update(templates).where(
        templates.c.org_id == org_id, templates.c.id == template_id, templates.c.version == version).values(
        **values, version=version + 1, updated_at=now))
    return rows_affected(result) == 1


async def template_audiences(session: AsyncSession, org_id: str, template_ids: set[str]) -> dict[str, str]:
    """The audience (prospect, rep) of each of these templates that exists."""
    rows = await session.execute(sa.select(templates.c.id, templates.c.audience).where(
        templates.c.org_id == org_id, templates.c.id.in_(template_ids)))
    return {r.id: r.audience for r in rows}


async def templates_page(session: AsyncSession, org_id: str, limit: int,
                         after: tuple[datetime, str] | None) -> list[Template]:
    return await _org_page(session, Template, templates, org_id, limit, after)


# ====================================================================== sequences and enrollments
async def get_sequence(session: AsyncSession, org_id: str, sequence_id: str) -> SequenceRecord | None:
    return first_record(SequenceRecord, await session.execute(sa.select(sequences).where(
        sequences.c.org_id == org_id, sequences.c.id == sequence_id)))


async def add_sequence(session: AsyncSession, sequence: SequenceRecord) -> None:
    await session.execute(sa.insert(sequences).values(**row_values(sequence)))


async def deactivate_sequence(session: AsyncSession, org_id: str, sequence_id: str, now: datetime) -> None:
    await session.execute(sa.update(sequences).where(sequences.c.org_id == org_id, sequences.c.id == sequence_id)
                          .values(active=False, updated_at=now))


async def sequences_page(session: AsyncSession, org_id: str, limit: int,
                         after: tuple[datetime, str] | None) -> list[SequenceRecord]:
    return await _org_page(session, SequenceRecord, sequences, org_id, limit, after)


_INSERT_ENROLLMENT = per_dialect(lambda insert: insert(enrollments).on_conflict_do_nothing(
    index_elements=["org_id", "sequence_id", "lead_id", "trigger_key"]))


async def add_enrollment(session: AsyncSession, enrollment: Enrollment) -> bool:
    """Insert the enrollment unless the same trigger enrolled the lead already; False for that duplicate."""
    result = await session.execute(_INSERT_ENROLLMENT[dialect_name(session)], row_values(enrollment))
    return rows_affected(result) == 1


async def running_enrollments(session: AsyncSession, org_id: str, lead_id: str) -> list[RunningEnrollment]:
    rows = await session.execute(
        sa.select(enrollments.c.id, enrollments.c.stage_id, sequences.c.trigger)
        .join(sequences, sequences.c.id == enrollments.c.sequence_id)
        .where(enrollments.c.org_id == org_id, enrollments.c.lead_id == lead_id, enrollments.c.status == "active"))
    return [RunningEnrollment(id=r.id, stage_id=r.stage_id, trigger=r.trigger) for r in rows]


@dataclass(frozen=True)
class LeadSequences:
    running: list[RunningEnrollment]  # the lead's active enrollments, with their sequences' triggers
    starting: list[SequenceRecord]  # the org's active sequences with the trigger asked for, oldest first


async def stop_enrollment(session: AsyncSession, enrollment_id: str, reason: str, now: datetime) -> None:
    await session.execute(sa.update(enrollments).where(enrollments.c.id == enrollment_id).values(
        status="stopped", stop_reason=reason, next_due_at=None, updated_at=now))


@dataclass(frozen=True)
class DueStep:
    """A claimed enrollment whose next step is due, with what sending it needs: its sequence, the lead's details,
    the lead owner's directory entry and the step's template (each None when not known here)."""
    enrollment: Enrollment
    sequence: SequenceRecord | None
    lead: KnownLead | None
    owner: dict[str, Any] | None
    template: Template | None


def _next_template_id(dialect: str) -> Any:
    """The template id of the enrollment's next step, out of its sequence's steps (a JSON list)."""
    if dialect == "sqlite":
        path = sa.literal_column("'$['").concat(enrollments.c.next_step).concat(sa.literal_column("'].template_id'"))
        return sa.func.json_extract(sequences.c.steps, path, type_=sa.String)
    return sequences.c.steps.op("->")(enrollments.c.next_step).op("->>", return_type=sa.String)(
        sa.literal_column("'template_id'"))


def _claim_due_steps_statement(dialect: str) -> Any:
    joined = (enrollments
              .outerjoin(sequences, (sequences.c.org_id == enrollments.c.org_id)
                         & (sequences.c.id == enrollments.c.sequence_id))
              .outerjoin(leads, (leads.c.org_id == enrollments.c.org_id) & (leads.c.lead_id == enrollments.c.lead_id))
              .outerjoin(reps, (reps.c.org_id == leads.c.org_id) & (reps.c.rep_id == leads.c.owner_id))
              .outerjoin(templates, (templates.c.org_id == enrollments.c.org_id)
                         & (templates.c.id == _next_template_id(dialect))))
    return (sa.select(*_prefixed(enrollments, "enrollment_"), *_prefixed(sequences, "sequence_"),
                      *_prefixed(leads, "lead_"), *_prefixed(reps, "owner_"), *_prefixed(templates, "template_"))
            .select_from(joined)
            .where(enrollments.c.status == "active", enrollments.c.next_due_at <= sa.bindparam("now"))
            .order_by(enrollments.c.next_due_at).limit(sa.bindparam("limit"))
            .with_for_update(skip_locked=True, of=enrollments))


_CLAIM_DUE_STEPS = {dialect: _claim_due_steps_statement(dialect) for dialect in ("sqlite", "postgresql")}


async def claim_due_steps(session: AsyncSession, now: datetime, limit: int) -> list[DueStep]:
    """Active enrollments whose next step is due, locked (SKIP LOCKED: replicas share the work) until commit, with
    their sequences, leads, owners and the steps' templates: one statement per batch."""
    steps = []
    for row in (await session.execute(_CLAIM_DUE_STEPS[dialect_name(session)], {"now": now, "limit": limit})
                ).mappings():
        enrollment = _unprefixed(row, enrollments, "enrollment_")
        sequence = _unprefixed(row, sequences, "sequence_")
        lead = _unprefixed(row, leads, "lead_")
        template = _unprefixed(row, templates, "template_")
        assert enrollment is not None
        steps.append(DueStep(enrollment=Enrollment(**enrollment),
                             sequence=SequenceRecord(**sequence) if sequence else None,
                             lead=KnownLead(**lead) if lead else None, owner=_unprefixed(row, reps, "owner_"),
                             template=Template(**template) if template else None))
    return steps


_POSTPONE_ENROLLMENT = sa.update(enrollments).where(
    enrollments.c.id == sa.bindparam("enrollment_id"), enrollments.c.status == "active",
    enrollments.c.next_step == sa.bindparam("step")).values(next_due_at=sa.bindparam("until"),
                                                            updated_at=sa.bindparam("now"))


async def postpone_enrollment(session: AsyncSession, enrollment: Enrollment, until: datetime, now: datetime) -> None:
    """Its step (`enrollment.next_step`) is due at `until`, unless the enrollment moved on meanwhile."""
    await session.execute(_POSTPONE_ENROLLMENT, {"enrollment_id": enrollment.id, "step": enrollment.next_step,
                                                 "until": until, "now": now})


@dataclass(frozen=True)
class EnrollmentAdvance:
    """A claimed (active) enrollment moves to `next_step`, due at `next_due_at`; None: that was the last step
    (completed)."""
    enrollment_id: str
    next_step: int
    next_due_at: datetime | None
    now: datetime


# Parameters named `advance_…`: the statement also runs as a CTE beside a delivery's (its columns' names).
_ADVANCE_ENROLLMENT = sa.update(enrollments).where(enrollments.c.id == sa.bindparam("advance_enrollment_id")).values(
    next_step=sa.bindparam("advance_next_step"), next_due_at=sa.bindparam("advance_next_due_at"),
    updated_at=sa.bindparam("advance_now"),
    status=sa.case((sa.bindparam("advance_completed", type_=sa.Boolean), "completed"), else_=enrollments.c.status))


def _advance_params(advance: EnrollmentAdvance) -> dict[str, Any]:
    return {"advance_enrollment_id": advance.enrollment_id, "advance_next_step": advance.next_step,
            "advance_next_due_at": advance.next_due_at, "advance_now": advance.now,
            "advance_completed": advance.next_due_at is None}


async def advance_enrollments(session: AsyncSession, advances: Sequence[EnrollmentAdvance]) -> None:
    """Move these claimed enrollments on, in one statement."""
    if advances:
        await session.execute(_ADVANCE_ENROLLMENT, [_advance_params(a) for a in advances])


async def enrollments_page(session: AsyncSession, principal: Principal, sequence_id: str, lead_id: str | None,
                           limit: int, after: tuple[datetime, str] | None) -> list[Enrollment]:
    """The sequence's enrollments the principal may see: a rep those of the leads it owns or owned before."""
    org_id = principal.org_id
    query = sa.select(enrollments).where(enrollments.c.org_id == org_id, enrollments.c.sequence_id == sequence_id)
    if not principal.sees_whole_org:
        readable = sa.select(leads.c.lead_id).where(leads.c.org_id == org_id, owned_or_owned_before(
            lead_past_owners, principal, leads.c.lead_id, leads.c.owner_id))
        query = query.where(enrollments.c.lead_id.in_(readable))
    if lead_id:
        query = query.where(enrollments.c.lead_id == lead_id)
    return records(Enrollment, await _newest_first(session, query, enrollments, limit, after))


# ====================================================================== deliveries
_INSERT_DELIVERY = per_dialect(lambda insert: insert(deliveries).on_conflict_do_nothing(
    index_elements=["org_id", "idem_key"]))
# An attempt's outcome is fenced on `attempts`: a worker whose lease ran out cannot overwrite a newer attempt.
_ATTEMPT = ((deliveries.c.id == sa.bindparam("delivery_id")) & (deliveries.c.attempts == sa.bindparam("attempt"))
            & (deliveries.c.status == "sending"))
# ... and returns whether the delivery's lead is erased (an attempt that ends after the erasure is scrubbed then).
_LEAD_ERASED_OF_DELIVERY = sa.select(leads.c.erased).where(
    leads.c.org_id == deliveries.c.org_id, leads.c.lead_id == deliveries.c.lead_id).scalar_subquery()
# Several attempts' "sent" in one statement, each fenced on its `attempts` like `_ATTEMPT`.
_MARK_SENT = sa.update(deliveries).where(
    deliveries.c.status == "sending",
    sa.tuple_(deliveries.c.id, deliveries.c.attempts).in_(sa.bindparam("sent_attempts", expanding=True))
).values(status="sent", sent_at=sa.bindparam("now"), updated_at=sa.bindparam("now"), error=None,
         next_attempt_at=None).returning(deliveries.c.id, _LEAD_ERASED_OF_DELIVERY.label("lead_erased"))
_MARK_RETRY = sa.update(deliveries).where(_ATTEMPT).values(
    status="pending", error=sa.bindparam("failure"), updated_at=sa.bindparam("now"),
    next_attempt_at=sa.bindparam("retry_at")).returning(_LEAD_ERASED_OF_DELIVERY.label("lead_erased"))
_MARK_FAILED = sa.update(deliveries).where(_ATTEMPT).values(
    status="failed", error=sa.bindparam("failure"), updated_at=sa.bindparam("now"), next_attempt_at=None
).returning(_LEAD_ERASED_OF_DELIVERY.label("lead_erased"))
_ACCOUNT = sa.select(mailchimp_accounts).where(mailchimp_accounts.c.org_id == sa.bindparam("org"))
_SUBSCRIPTION = sa.select(webhook_subscriptions).where(webhook_subscriptions.c.org_id == sa.bindparam("org"),
                                                       webhook_subscriptions.c.id == sa.bindparam("subscription"))
_LEAD = sa.select(leads).where(leads.c.org_id == sa.bindparam("org"), leads.c.lead_id == sa.bindparam("lead"))
_LEAD_ERASED = sa.select(leads.c.erased).where(leads.c.org_id == sa.bindparam("org"),
                                               leads.c.lead_id == sa.bindparam("lead"))


async def add_delivery(session: AsyncSession, delivery: Delivery) -> bool:
    """Insert the delivery unless its idempotency key exists (False: a duplicate, nothing inserted)."""
    result = await session.execute(_INSERT_DELIVERY[dialect_name(session)], row_values(delivery))
    return rows_affected(result) == 1


async def add_deliveries(session: AsyncSession, rows: Sequence[Delivery]) -> None:
    """`add_delivery` for each, in one statement (a duplicate is left out, unsaid)."""
    if rows:
        await session.execute(_INSERT_DELIVERY[dialect_name(session)], [row_values(row) for row in rows])


# PostgreSQL: a sequence step's enrollment moved on by a data-modifying CTE of the statement that adds the step's
# delivery (it runs whether or not the delivery is new, as when they are two statements). The delivery's parameters
# are `cte_parameters`: named like the enrollment's columns (id, status, …) they would be taken into its SET.
_ADD_DELIVERY_ADVANCING_ENROLLMENT = per_dialect(lambda insert: insert(deliveries).values(
    cte_parameters(deliveries, "delivery")
).on_conflict_do_nothing(index_elements=["org_id", "idem_key"]))["postgresql"].add_cte(
    _ADVANCE_ENROLLMENT.cte("advanced_enrollment"))


async def add_deliveries_advancing_enrollments(session: AsyncSession, rows: Sequence[Delivery],
                                               advances: Sequence[EnrollmentAdvance]) -> None:
    """`add_deliveries` and `advance_enrollments`. On PostgreSQL each delivery goes with the move of its enrollment,
    in one statement executed with the batch's rows (a move without a delivery among `rows`, or a delivery without
    a move, in a statement of its own as before); on SQLite two statements."""
    if dialect_name(session) != "postgresql":
        await add_deliveries(session, rows)
        await advance_enrollments(session, advances)
        return
    moves = {advance.enrollment_id: advance for advance in advances}
    paired = [(row, moves.pop(row.enrollment_id)) for row in rows if row.enrollment_id in moves]
    if paired:
        await session.execute(_ADD_DELIVERY_ADVANCING_ENROLLMENT,
                              [{**prefixed("delivery", row_values(row)), **_advance_params(advance)}
                               for row, advance in paired])
    moved = {row.id for row, _ in paired}
    await add_deliveries(session, [row for row in rows if row.id not in moved])
    await advance_enrollments(session, list(moves.values()))


def _claim_deliveries_statement() -> Any:
    """Due pending deliveries and `sending` ones whose lease ran out, locked (SKIP LOCKED: replicas share the
    work), marked `sending` until the lease's end with one more attempt, and returned with, for a Mailchimp call,
    the org's API key: one statement per batch."""
    api_key = sa.case((deliveries.c.kind == "mailchimp", sa.select(mailchimp_accounts.c.api_key).where(
        mailchimp_accounts.c.org_id == deliveries.c.org_id).scalar_subquery()))
    due = (sa.select(deliveries.c.id).where(deliveries.c.status.in_(("pending", "sending")),
                                            deliveries.c.next_attempt_at <= sa.bindparam("now"),
                                            deliveries.c.id.not_in(sa.bindparam("excluding", expanding=True)))
           .order_by(deliveries.c.next_attempt_at).limit(sa.bindparam("limit"))
           .with_for_update(skip_locked=True).scalar_subquery())
    return sa.update(deliveries).where(deliveries.c.id.in_(due)).values(
        status="sending", attempts=deliveries.c.attempts + 1, next_attempt_at=sa.bindparam("lease_until"),
        updated_at=sa.bindparam("now")).returning(*deliveries.c, api_key.label("mailchimp_api_key"))


_CLAIM_DELIVERIES = _claim_deliveries_statement()


@dataclass(frozen=True)
class ClaimedDeliveries:
    rows: list[Delivery]  # as they now are, oldest first
    mailchimp_keys: dict[str, str]  # by org: the API key of each org with a Mailchimp call among them, if it has one


async def claim_due_deliveries(session: AsyncSession, now: datetime, lease_until: datetime, limit: int,
                               excluding: set[str]) -> ClaimedDeliveries:
    """Due pending deliveries and `sending` ones whose lease ran out (SKIP LOCKED: replicas share the work),
    marked `sending` until `lease_until` with one more attempt."""
    rows, keys = [], {}
    for row in (await session.execute(_CLAIM_DELIVERIES, {
            "now": now, "lease_until": lease_until, "limit": limit, "excluding": list(excluding)})).mappings():
        values = dict(row)
        api_key = values.pop("mailchimp_api_key")
        if api_key is not None:
            keys[values["org_id"]] = api_key
        rows.append(Delivery(**values))
    return ClaimedDeliveries(rows=sorted(rows, key=lambda r: (r.created_at, r.id)), mailchimp_keys=keys)


async def _mark(session: AsyncSession, statement: Any, values: dict[str, Any]) -> bool | None:
    """Record an attempt's outcome: None when this attempt was overtaken (its lease ran out and another attempt
    began), else whether the delivery's lead is erased (read by the same statement)."""
    row = (await session.execute(statement, values)).first()
    return None if row is None else bool(row.lead_erased)


# PostgreSQL: `_MARK_SENT` with the events of the attempts it marks written by the same statement (a data-modifying
# CTE inserting the outbox rows whose key, the delivery's id, the mark returned: an overtaken attempt's mark writes
# nothing, so its events are not written either). The attempts and the rows are arrays: one statement, whatever
# the number of either.
_MARK_SENT_WRITING_EVENTS = sa.text(f"""
WITH marked_sent AS (
    UPDATE {deliveries.name} AS d SET status = 'sent', sent_at = CAST(:now AS timestamptz),
        updated_at = CAST(:now AS timestamptz), error = NULL, next_attempt_at = NULL
    FROM unnest(CAST(:sent_ids AS varchar[]), CAST(:sent_attempts AS integer[])) AS a(id, attempts)
    WHERE d.id = a.id AND d.attempts = a.attempts AND d.status = 'sending'
    RETURNING d.id, (SELECT l.erased FROM {leads.name} AS l
                     WHERE l.org_id = d.org_id AND l.lead_id = d.lead_id) AS lead_erased
), written_events AS (
    {insert_outbox_from("o", KEYED_OUTBOX_ARRAYS, where="o.key IN (SELECT id FROM marked_sent)")}
)
SELECT id, lead_erased FROM marked_sent
""")


async def mark_sent(session: AsyncSession, sent: Sequence[Delivery], now: datetime,
                    events: KeyedOutboxRows) -> dict[str, bool]:
    """Record these attempts as sent and write the events keyed by the ids of those recorded (`events`: what each
    sent delivery publishes): by delivery id, whether its lead is erased, for each one recorded (an attempt
    overtaken, its lease run out and another attempt begun, is not among them, and its events are not written).
    On PostgreSQL one statement, on SQLite (no data-modifying CTEs) two."""
    if not sent:
        return {}
    if dialect_name(session) == "postgresql":
        rows = await session.execute(_MARK_SENT_WRITING_EVENTS, {
            "sent_ids": [d.id for d in sent], "sent_attempts": [d.attempts for d in sent], "now": now,
            **events.params("o")})
        return {row.id: bool(row.lead_erased) for row in rows}
    rows = await session.execute(_MARK_SENT, {"sent_attempts": [(d.id, d.attempts) for d in sent], "now": now})
    marked = {row.id: bool(row.lead_erased) for row in rows}
    written = events.rows_of(marked)
    if written:
        await session.execute(INSERT_OUTBOX, written)
    return marked


async def mark_for_retry(session: AsyncSession, delivery: Delivery, error: str | None, retry_at: datetime,
                         now: datetime) -> bool | None:
    return await _mark(session, _MARK_RETRY, {"delivery_id": delivery.id, "attempt": delivery.attempts,
                                              "failure": error, "retry_at": retry_at, "now": now})


async def mark_failed(session: AsyncSession, delivery: Delivery, error: str | None, now: datetime) -> bool | None:
    return await _mark(session, _MARK_FAILED, {"delivery_id": delivery.id, "attempt": delivery.attempts,
                                               "failure": error, "now": now})


async def cancel_pending_deliveries(session: AsyncSession, org_id: str, *, now: datetime, reason: str,
                                    lead_id: str | None, kinds: tuple[str, ...], recipient_kinds: tuple[str, ...],
                                    key_prefix: str | None) -> int:
    query = sa.update(deliveries).where(deliveries.c.org_id == org_id, deliveries.c.status == "pending",
                                        deliveries.c.kind.in_(kinds), deliveries.c.recipient_kind.in_(recipient_kinds))
    if lead_id is not None:
        query = query.where(deliveries.c.lead_id == lead_id)
    if key_prefix is not None:
        query = query.where(deliveries.c.idem_key.startswith(key_prefix, autoescape=True))
    result = await session.execute(query.values(status="cancelled", error=reason, updated_at=now,
                                                next_attempt_at=None))
    return rows_affected(result)


async def scrub_prospect_emails(session: AsyncSession, org_id: str, lead_id: str, now: datetime) -> None:
    """What the lead's emails carried and where they went (the facts, when and why, remain)."""
    await session.execute(sa.update(deliveries).where(
        deliveries.c.org_id == org_id, deliveries.c.lead_id == lead_id, deliveries.c.kind == "email",
        deliveries.c.recipient_kind == "prospect").values(payload=None, recipient=None, updated_at=now))


async def scrub_finished_deliveries(session: AsyncSession, org_id: str, lead_id: str) -> None:
    """The payloads of the lead's finished deliveries, their outside parties' error texts (which may quote the
    address; a cancellation's reason is ours, and stays) and the prospect's address."""
    finished = (deliveries.c.org_id == org_id) & (deliveries.c.lead_id == lead_id) & \
        deliveries.c.status.not_in(("pending", "sending"))
    await session.execute(sa.update(deliveries).where(finished).values(payload=None))
    await session.execute(sa.update(deliveries).where(finished, deliveries.c.status == "failed").values(error=None))
    await session.execute(sa.update(deliveries).where(finished, deliveries.c.recipient_kind == "prospect")
                          .values(recipient=None))


async def mailchimp_call_due(session: AsyncSession, org_id: str, lead_id: str) -> bool:
    """Whether a Mailchimp call about the lead is pending or in flight."""
    found = await session.execute(sa.select(deliveries.c.id).where(
        deliveries.c.org_id == org_id, deliveries.c.lead_id == lead_id, deliveries.c.kind == "mailchimp",
        deliveries.c.status.in_(("pending", "sending"))).limit(1))
    return found.first() is not None


async def last_mailchimp_call_due_at(session: AsyncSession, org_id: str, lead_id: str) -> datetime | None:
    """When the last Mailchimp call about the lead still pending or in flight is due (or its lease ends)."""
    return (await session.execute(sa.select(sa.func.max(deliveries.c.next_attempt_at)).where(
        deliveries.c.org_id == org_id, deliveries.c.lead_id == lead_id, deliveries.c.kind == "mailchimp",
        deliveries.c.status.in_(("pending", "sending"))))).scalar_one_or_none()


async def deliveries_page(session: AsyncSession, org_id: str, *, lead_id: str | None, status: str | None,
                          rep_id: str | None, limit: int, after: tuple[datetime, str] | None) -> list[Delivery]:
    query = sa.select(deliveries).where(deliveries.c.org_id == org_id)
    if lead_id:
        query = query.where(deliveries.c.lead_id == lead_id)
    if status:
        query = query.where(deliveries.c.status == status)
    if rep_id is not None:
        query = query.where(deliveries.c.rep_id == rep_id)
    return records(Delivery, await _newest_first(session, query, deliveries, limit, after))


# ====================================================================== Mailchimp
async def get_mailchimp_account(session: AsyncSession, org_id: str, *,
                                for_update: bool = False) -> MailchimpAccount | None:
    query = _ACCOUNT.with_for_update() if for_update else _ACCOUNT
    return first_record(MailchimpAccount, await session.execute(query, {"org": org_id}))


async def save_mailchimp_account(session: AsyncSession, account: MailchimpAccount, *, exists: bool) -> None:
    values = row_values(account)
    if exists:
        await session.execute(sa.update(mailchimp_accounts).where(
            mailchimp_accounts.c.org_id == account.org_id).values(**values))
    else:
        await session.execute(sa.insert(mailchimp_accounts).values(**values))


@dataclass(frozen=True)
class ListSettings:
    """What keeping a lead's Mailchimp lists needs of the org and the lead, read in one statement: the account, its
    rules (oldest first), the lists the lead was put on, and when its last Mailchimp call still pending or in
    flight is due (or its lease ends; None: there is none)."""
    account: MailchimpAccount
    rules: list[MailchimpRule]
    members: list[MailchimpMember]
    in_flight_until: datetime | None


def _mailchimp_in_flight_until(org: Any, lead: Any) -> Any:
    """When the lead's last Mailchimp call still pending or in flight is due (or its lease ends)."""
    return sa.select(sa.func.max(deliveries.c.next_attempt_at)).where(
        deliveries.c.org_id == org, deliveries.c.lead_id == lead, deliveries.c.kind == "mailchimp",
        deliveries.c.status.in_(("pending", "sending"))).scalar_subquery()


def _list_settings_statement() -> Any:
    org: Any = sa.bindparam("org")
    lead: Any = sa.bindparam("lead")
    in_flight = _mailchimp_in_flight_until(org, lead)
    # Part 1 of the rows are the rules, part 2 the lead's lists: two outer joins side by side, not a product.
    part = sa.union_all(sa.select(sa.literal(1).label("part")), sa.select(sa.literal(2).label("part"))).subquery()
    joined = (mailchimp_accounts.join(part, sa.true())
              .outerjoin(mailchimp_rules, (part.c.part == 1) & (mailchimp_rules.c.org_id == org))
              .outerjoin(mailchimp_members, (part.c.part == 2) & (mailchimp_members.c.org_id == org)
                         & (mailchimp_members.c.lead_id == lead)))
    return (sa.select(*_prefixed(mailchimp_accounts, "account_"), *_prefixed(mailchimp_rules, "rule_"),
                      *_prefixed(mailchimp_members, "member_"), in_flight.label("in_flight_until"))
            .select_from(joined).where(mailchimp_accounts.c.org_id == org)
            .order_by(part.c.part, mailchimp_rules.c.created_at, mailchimp_rules.c.id))


_LIST_SETTINGS = _list_settings_statement()


async def list_settings(session: AsyncSession, org_id: str, lead_id: str) -> ListSettings | None:
    """None when Mailchimp is not configured for the org."""
    rows = (await session.execute(_LIST_SETTINGS, {"org": org_id, "lead": lead_id})).mappings().all()
    if not rows:
        return None
    account = _unprefixed(rows[0], mailchimp_accounts, "account_")
    assert account is not None
    rules = [MailchimpRule(**rule) for rule in (_unprefixed(row, mailchimp_rules, "rule_") for row in rows) if rule]
    members = [MailchimpMember(**member) for member in (_unprefixed(row, mailchimp_members, "member_")
                                                       for row in rows) if member]
    return ListSettings(account=MailchimpAccount(**account), rules=rules, members=members,
                        in_flight_until=rows[0]["in_flight_until"])


@dataclass(frozen=True)
class LeadFollowUps:
    """What a lifecycle fact about a lead may change, read in one statement: the sequences it may stop and start
    and its Mailchimp lists (`list_settings`; None when Mailchimp is not configured)."""
    sequences: LeadSequences
    lists: ListSettings | None


@functools.cache  # built once for each set of columns written
def _lead_follow_ups_statement(*, writing_lead: tuple[str, ...] = (), storing_snapshot: tuple[str, ...] = ()) -> Any:
    """`writing_lead` (PostgreSQL): the lead's row written first, these columns (a data-modifying CTE, its values
    `cte_parameters`: named like the leads' columns they would be taken into the outer statement's values), and
    returned on every row (`lead_` + its columns). `storing_snapshot` (PostgreSQL): instead, the lead's snapshot
    stored first (`_newer_snapshot_upsert` with these columns, a data-modifying CTE; no row at all when it wrote
    nothing), returned the same way with `lead_seen_lock_version`: the row's `lock_version` in the statement's
    snapshot (NULL: no row in it)."""
    org: Any = sa.bindparam("org")
    lead: Any = sa.bindparam("lead")
    in_flight = _mailchimp_in_flight_until(org, lead)
    # One row for the account (or none), then three parts side by side, not a product: 1 the rules, 2 the lead's
    # lists, 3 the sequences (each with the lead's running enrollment of it, if any).
    anchor = sa.select(sa.literal(1).label("one")).subquery("anchor")
    part = sa.union_all(*(sa.select(sa.literal(n).label("part")) for n in (1, 2, 3))).subquery()
    running = ((part.c.part == 3) & (enrollments.c.org_id == org) & (enrollments.c.sequence_id == sequences.c.id)
               & (enrollments.c.lead_id == lead) & (enrollments.c.status == "active"))
    joined = (anchor.outerjoin(mailchimp_accounts, mailchimp_accounts.c.org_id == org)
              .join(part, sa.true())
              .outerjoin(mailchimp_rules, (part.c.part == 1) & mailchimp_accounts.c.org_id.is_not(None)
                         & (mailchimp_rules.c.org_id == org))
              .outerjoin(mailchimp_members, (part.c.part == 2) & mailchimp_accounts.c.org_id.is_not(None)
                         & (mailchimp_members.c.org_id == org) & (mailchimp_members.c.lead_id == lead))
              .outerjoin(sequences, (part.c.part == 3) & (sequences.c.org_id == org))
              .outerjoin(enrollments, running))
    # The sequences wanted: those that may start (active, with the trigger) and those the lead is running.
    wanted = sa.or_(part.c.part != 3, sequences.c.id.is_(None),
                    sequences.c.active.is_(True) & (sequences.c.trigger == sa.bindparam("trigger")),
                    enrollments.c.id.is_not(None))
    written: list[Any] = []
    lead_written: sa.CTE | None = None
    if writing_lead:
        values = cte_parameters(leads, "lead")
        lead_written = sa.update(leads).where(leads.c.org_id == org, leads.c.lead_id == lead).values(
            {column: values[column] for column in writing_lead}).returning(*leads.c).cte("written_lead")
    elif storing_snapshot:
        seen = leads.alias("seen_lead")
        seen_lock_version = sa.select(seen.c.lock_version).where(
            seen.c.org_id == org, seen.c.lead_id == lead).scalar_subquery().label("seen_lock_version")
        lead_written = _newer_snapshot_upsert("postgresql", storing_snapshot).returning(
            *leads.c, seen_lock_version).cte("stored_lead")
    if lead_written is not None:
        joined = joined.join(lead_written, sa.true())
        written = _prefixed(lead_written, "lead_")
    return (sa.select(part.c.part, *_prefixed(mailchimp_accounts, "account_"), *_prefixed(mailchimp_rules, "rule_"),
                      *_prefixed(mailchimp_members, "member_"), *_prefixed(sequences, "sequence_"),
                      enrollments.c.id.label("enrollment_id"), enrollments.c.stage_id.label("enrollment_stage_id"),
                      in_flight.label("in_flight_until"), *written)
            .select_from(joined).where(wanted)
            .order_by(part.c.part, mailchimp_rules.c.created_at, mailchimp_rules.c.id, sequences.c.created_at,
                      sequences.c.id))


_LEAD_FOLLOW_UPS = _lead_follow_ups_statement()


async def lead_follow_ups(session: AsyncSession, org_id: str, lead_id: str, trigger: str | None) -> LeadFollowUps:
    """The lead's running enrollments and the org's active sequences with `trigger` (what a lifecycle fact about
    the lead may stop and start; None: a fact that starts none), and its list settings (`list_settings`), in one
    statement."""
    rows = (await session.execute(_LEAD_FOLLOW_UPS, {"org": org_id, "lead": lead_id, "trigger": trigger})
            ).mappings().all()
    return _follow_ups(rows, trigger)


async def update_lead_reading_follow_ups(session: AsyncSession, org_id: str, lead_id: str, values: dict[str, Any],
                                         trigger: str) -> tuple[KnownLead, LeadFollowUps]:
    """`update_lead`, then `lead_follow_ups`: on PostgreSQL one statement (the write a data-modifying CTE; the read
    does not read the lead's row). The lead is locked already (`lock_lead`), so the statement's snapshot, taken
    after the lock, sees what a read after the write would: the lists, enrollments and Mailchimp calls another
    transaction holding the lock before wrote. On SQLite two statements."""
    if dialect_name(session) != "postgresql":
        lead = await update_lead(session, org_id, lead_id, values)
        return lead, await lead_follow_ups(session, org_id, lead_id, trigger)
    statement = _lead_follow_ups_statement(writing_lead=tuple(sorted(values)))
    rows = (await session.execute(statement, {**prefixed("lead", values), "org": org_id, "lead": lead_id,
                                              "trigger": trigger})).mappings().all()
    written = _unprefixed(rows[0], leads, "lead_") if rows else None
    assert written is not None, f"lead {lead_id} has no row (lock_lead first)"
    return _hold_lead(session, KnownLead(**written)), _follow_ups(rows, trigger)


async def store_newer_snapshot_reading_follow_ups(session: AsyncSession, org_id: str, lead_id: str,
                                                  values: dict[str, Any], trigger: str | None
                                                  ) -> tuple[KnownLead, LeadFollowUps] | None:
    """`store_newer_snapshot`, then `lead_follow_ups` (None when the row held was left as it was, and nothing read).

    On PostgreSQL one statement, the snapshot's upsert a data-modifying CTE. The upsert waits for the lead's lock
    when another transaction holds it, but the read runs in the snapshot the statement began with: it would miss
    what that transaction wrote under the lock (an enrollment, a list's member). Every statement that takes the
    lock first counts the row's `lock_version` up, and this one also reads the count in its snapshot: when the
    count it wrote is not one more, another transaction held the lock in between, and the follow-ups are read
    again (`lead_follow_ups`, after the lock). On SQLite two statements."""
    if dialect_name(session) != "postgresql":
        lead = await store_newer_snapshot(session, org_id, lead_id, values)
        return None if lead is None else (lead, await lead_follow_ups(session, org_id, lead_id, trigger))
    statement = _lead_follow_ups_statement(storing_snapshot=tuple(sorted(values)))
    rows = (await session.execute(statement, {
        "org": org_id, "lead": lead_id, "trigger": trigger,
        **{f"set_{column}": value for column, value in values.items()}})).mappings().all()
    if not rows:
        return None
    stored = _unprefixed(rows[0], leads, "lead_")
    assert stored is not None
    lead = _hold_lead(session, KnownLead(**stored))
    seen = rows[0]["lead_seen_lock_version"]
    if lead.lock_version != (-1 if seen is None else seen) + 1:  # 0: inserted by this statement
        return lead, await lead_follow_ups(session, org_id, lead_id, trigger)
    return lead, _follow_ups(rows, trigger)


def _follow_ups(rows: Sequence[Any], trigger: str | None) -> LeadFollowUps:
    """`lead_follow_ups` out of its statement's rows."""
    running: list[RunningEnrollment] = []
    starting: dict[str, SequenceRecord] = {}
    rules, members = [], []
    for row in rows:
        if row["part"] == 1:
            rule = _unprefixed(row, mailchimp_rules, "rule_")
            if rule:
                rules.append(MailchimpRule(**rule))
        elif row["part"] == 2:
            member = _unprefixed(row, mailchimp_members, "member_")
            if member:
                members.append(MailchimpMember(**member))
        else:
            sequence = _unprefixed(row, sequences, "sequence_")
            if sequence is None:
                continue
            if row["enrollment_id"] is not None:
                running.append(RunningEnrollment(id=row["enrollment_id"], stage_id=row["enrollment_stage_id"],
                                                 trigger=sequence["trigger"]))
            if sequence["active"] and sequence["trigger"] == trigger:
                starting.setdefault(sequence["id"], SequenceRecord(**sequence))
    account = _unprefixed(rows[0], mailchimp_accounts, "account_") if rows else None
    lists = None if account is None else ListSettings(
        account=MailchimpAccount(**account), rules=rules, members=members, in_flight_until=rows[0]["in_flight_until"])
    return LeadFollowUps(sequences=LeadSequences(running=running, starting=list(starting.values())), lists=lists)


def _remember_member_statement(insert: Any) -> Any:
    # `cte_parameters`: the statement also runs as a CTE beside a delivery's insert (its columns' names).
    statement = insert(mailchimp_members).values(cte_parameters(mailchimp_members, "member"))
    return statement.on_conflict_do_update(
        index_elements=["org_id", "lead_id", "list_id"],
        set_={column: statement.excluded[column] for column in ("subscriber_hash", "subscribed", "updated_at",
                                                                 "tags", "merge_fields", "status_if_new")})


_REMEMBER_MEMBER = per_dialect(_remember_member_statement)
# PostgreSQL: the member remembered by a data-modifying CTE of the statement that adds the delivery of the list call
# (it runs to completion with it, whether or not the delivery is new, as when they are two statements).
_ADD_DELIVERY_REMEMBERING_MEMBER = _INSERT_DELIVERY["postgresql"].add_cte(
    _REMEMBER_MEMBER["postgresql"].cte("remembered_member"))


def _member_params(org_id: str, lead_id: str, list_id: str, member: str, now: datetime, *, tags: list[str],
                   merge_fields: dict[str, str], status_if_new: str) -> dict[str, Any]:
    return prefixed("member", {"org_id": org_id, "lead_id": lead_id, "list_id": list_id, "subscriber_hash": member,
                               "subscribed": True, "updated_at": now, "tags": tags, "merge_fields": merge_fields,
                               "status_if_new": status_if_new})


async def add_delivery_remembering_member(session: AsyncSession, delivery: Delivery, list_id: str, member: str, *,
                                          tags: list[str], merge_fields: dict[str, str], status_if_new: str) -> bool:
    """The delivery's lead remembered on the list as `member`, subscribed this way (the latest subscription wins; at
    the delivery's `created_at`), and `add_delivery` (the list call that puts it there): on PostgreSQL one
    statement, on SQLite (no data-modifying CTEs) two. False when the delivery is a duplicate (the member is
    remembered all the same)."""
    assert delivery.lead_id is not None
    params = _member_params(delivery.org_id, delivery.lead_id, list_id, member, delivery.created_at, tags=tags,
                            merge_fields=merge_fields, status_if_new=status_if_new)
    if dialect_name(session) == "postgresql":
        return rows_affected(await session.execute(_ADD_DELIVERY_REMEMBERING_MEMBER,
                                                   {**row_values(delivery), **params})) == 1
    await session.execute(_REMEMBER_MEMBER["sqlite"], params)
    return await add_delivery(session, delivery)


async def members_of_lead(session: AsyncSession, org_id: str, lead_id: str, *,
                          subscribed_only: bool = False) -> list[MailchimpMember]:
    """The lists the lead was put on (`subscribed_only`: and is still on)."""
    query = sa.select(mailchimp_members).where(mailchimp_members.c.org_id == org_id,
                                               mailchimp_members.c.lead_id == lead_id)
    if subscribed_only:
        query = query.where(mailchimp_members.c.subscribed.is_(True))
    return records(MailchimpMember, (await session.execute(query)).mappings())


async def mark_member_removed(session: AsyncSession, org_id: str, lead_id: str, list_id: str, member: str,
                              now: datetime) -> None:
    await session.execute(sa.update(mailchimp_members).where(
        mailchimp_members.c.org_id == org_id, mailchimp_members.c.lead_id == lead_id,
        mailchimp_members.c.list_id == list_id, mailchimp_members.c.subscriber_hash == member,
    ).values(subscribed=False, updated_at=now))


async def set_member_tags(session: AsyncSession, org_id: str, lead_id: str, list_id: str, tags: list[str],
                          now: datetime) -> None:
    await session.execute(sa.update(mailchimp_members).where(
        mailchimp_members.c.org_id == org_id, mailchimp_members.c.lead_id == lead_id,
        mailchimp_members.c.list_id == list_id).values(tags=tags, updated_at=now))


async def forget_members(session: AsyncSession, org_id: str, lead_id: str) -> None:
    await session.execute(sa.delete(mailchimp_members).where(
        mailchimp_members.c.org_id == org_id, mailchimp_members.c.lead_id == lead_id))


async def mailchimp_rules_of(session: AsyncSession, org_id: str) -> list[MailchimpRule]:
    """The org's rules, oldest first."""
    rows = await session.execute(sa.select(mailchimp_rules).where(mailchimp_rules.c.org_id == org_id)
                                 .order_by(mailchimp_rules.c.created_at, mailchimp_rules.c.id))
    return records(MailchimpRule, rows.mappings())


async def add_mailchimp_rule(session: AsyncSession, rule: MailchimpRule) -> None:
    await session.execute(sa.insert(mailchimp_rules).values(**row_values(rule)))


async def delete_mailchimp_rule(session: AsyncSession, org_id: str, rule_id: str) -> bool:
    result = await session.execute(sa.delete(mailchimp_rules).where(
        mailchimp_rules.c.org_id == org_id, mailchimp_rules.c.id == rule_id))
    return rows_affected(result) == 1


async def mailchimp_rules_page(session: AsyncSession, org_id: str, limit: int,
                               after: tuple[datetime, str] | None) -> list[MailchimpRule]:
    return await _org_page(session, MailchimpRule, mailchimp_rules, org_id, limit, after)


# ====================================================================== milestone rules
async def active_milestone_rules(session: AsyncSession, org_id: str) -> list[MilestoneRuleRecord]:
    return await _active_of_org(session, MilestoneRuleRecord, milestone_rules, org_id)


async def add_milestone_rule(session: AsyncSession, rule: MilestoneRuleRecord) -> None:
    await session.execute(sa.insert(milestone_rules).values(**row_values(rule)))


async def milestone_rules_page(session: AsyncSession, org_id: str, limit: int,
                               after: tuple[datetime, str] | None) -> list[MilestoneRuleRecord]:
    return await _org_page(session, MilestoneRuleRecord, milestone_rules, org_id, limit, after)


# ====================================================================== webhook subscriptions
async def active_webhook_subscriptions(session: AsyncSession, org_id: str) -> list[WebhookSubscription]:
    return await _active_of_org(session, WebhookSubscription, webhook_subscriptions, org_id)


async def get_webhook_subscription(session: AsyncSession, org_id: str,
                                   subscription_id: str | None) -> WebhookSubscription | None:
    return first_record(WebhookSubscription, await session.execute(_SUBSCRIPTION, {"org": org_id,
                                                                            "subscription": subscription_id}))


async def add_webhook_subscription(session: AsyncSession, subscription: WebhookSubscription) -> None:
    await session.execute(sa.insert(webhook_subscriptions).values(**row_values(subscription)))


async def deactivate_webhook_subscription(session: AsyncSession, org_id: str, subscription_id: str) -> bool:
    """False when there is no such active subscription."""
    result = await session.execute(sa.update(webhook_subscriptions).where(
        webhook_subscriptions.c.org_id == org_id, webhook_subscriptions.c.id == subscription_id,
        webhook_subscriptions.c.active.is_(True)).values(active=False))
    return rows_affected(result) == 1


async def webhook_subscriptions_page(session: AsyncSession, org_id: str, limit: int,
                                     after: tuple[datetime, str] | None) -> list[WebhookSubscription]:
    return await _org_page(session, WebhookSubscription, webhook_subscriptions, org_id, limit, after)


# ====================================================================== what this service knows of leads and reps
async def get_lead(session: AsyncSession, org_id: str, lead_id: str, *,
                   for_update: bool = False) -> KnownLead | None:
    query = _LEAD.with_for_update() if for_update else _LEAD
    return first_record(KnownLead, await session.execute(query, {"org": org_id, "lead": lead_id}))


async def lead_erased(session: AsyncSession, org_id: str, lead_id: str) -> bool:
    return bool((await session.execute(_LEAD_ERASED, {"org": org_id, "lead": lead_id})).scalar_one_or_none())


# Counts the row's locks (`store_newer_snapshot_reading_follow_ups`): set by every statement below that takes a
# lead's lock first in its transaction.
_ONE_MORE_LOCK = {"lock_version": leads.c.lock_version + 1}


def _lock_lead_statement(insert: Any, *returning: Any) -> Any:
    """The lead's row, inserted empty unless it exists, locked until commit and returned (with `returning`): one
    statement (an upsert that changes nothing but the lock count takes the row lock a SELECT … FOR UPDATE would)."""
    return insert(leads).values(
        org_id=sa.bindparam("org"), lead_id=sa.bindparam("lead"), updated_at=sa.bindparam("now"), lead_version=0,
        pipeline_version=0, unsubscribed=False, erased=False, reopened=False,
    ).on_conflict_do_update(index_elements=["org_id", "lead_id"], set_=_ONE_MORE_LOCK).returning(*leads.c, *returning)


_LOCK_LEAD = per_dialect(_lock_lead_statement)
_PIPELINE_DEFINED = sa.select(known_pipelines.c.definition_version > 0).where(
    known_pipelines.c.org_id == sa.bindparam("org"), known_pipelines.c.pipeline_id == sa.bindparam("pipeline")
).scalar_subquery().label("pipeline_defined")
_LOCK_LEAD_IN_PIPELINE = per_dialect(lambda insert: _lock_lead_statement(insert, _PIPELINE_DEFINED))
# The SET clause is the parameters' columns (compiled once per set of columns, then reused); the row after.
_UPDATE_LEAD = sa.update(leads).where(leads.c.org_id == sa.bindparam("where_org"),
                                      leads.c.lead_id == sa.bindparam("where_lead")).returning(*leads.c)


_HELD_BY_TRANSACTION = "notification_service.held_by_transaction"


def _held(session: AsyncSession) -> dict[tuple[str, str, Any], Any]:
    """What the session's current transaction holds: the lead rows it locked, as it last wrote or read them
    (("lead", org, lead id) → KnownLead: every statement that writes a lead's row returns it, and is one of those
    below), the pipelines it found defined (("pipeline defined", org, pipeline id) → True: a definition is never
    taken back) and the rep notices it read (`rep_notice`). Empty once that transaction ended: a session that goes
    on locks and reads them again."""
    transaction = session.sync_session.get_transaction()
    held: tuple[Any, dict[tuple[str, str, Any], Any]] | None = session.info.get(_HELD_BY_TRANSACTION)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        if transaction is not None:
            session.info[_HELD_BY_TRANSACTION] = held
    return held[1]


def _hold_lead(session: AsyncSession, row: KnownLead) -> KnownLead:
    _held(session)[("lead", row.org_id, row.lead_id)] = row
    _forget_notices(session, row.org_id, lead_id=row.lead_id)
    return row


async def lock_lead(session: AsyncSession, org_id: str, lead_id: str, now: datetime) -> KnownLead:
    """The lead's row, locked; created empty (nothing known yet) when events about it arrive before LeadCreated.
    Locked once per transaction: a handler that comes after another about the same lead in a delivered batch gets
    the row as the one before left it."""
    held = _held(session).get(("lead", org_id, lead_id))
    if held is not None:
        return cast(KnownLead, held)
    row = first_record(KnownLead, await session.execute(_LOCK_LEAD[dialect_name(session)],
                                                        {"org": org_id, "lead": lead_id, "now": now}))
    assert row is not None  # an upsert returns its row
    return _hold_lead(session, row)


async def lock_lead_in_pipeline(session: AsyncSession, org_id: str, lead_id: str, pipeline_id: str,
                                now: datetime) -> tuple[KnownLead, bool]:
    """`lock_lead`, and whether the pipeline's own definition (PipelineDefined) is held, read by the same
    statement (none when this transaction holds both already)."""
    held = _held(session)
    lead, defined = held.get(("lead", org_id, lead_id)), ("pipeline defined", org_id, pipeline_id) in held
    if lead is not None and defined:
        return cast(KnownLead, lead), True
    row = (await session.execute(_LOCK_LEAD_IN_PIPELINE[dialect_name(session)], {
        "org": org_id, "lead": lead_id, "now": now, "pipeline": pipeline_id})).mappings().one()
    values = dict(row)
    if values.pop("pipeline_defined"):
        _held(session)[("pipeline defined", org_id, pipeline_id)] = True
        defined = True
    return _hold_lead(session, KnownLead(**values)), defined


# Whether the rep's directory entry (assignment-service's RepCreated or later: `version` > 0) is held. A fact that
# never turns false again: the entry is never deleted and its version only grows (`save_rep`).
_OWNER_IN_DIRECTORY = sa.exists().where(reps.c.org_id == sa.bindparam("org"), reps.c.rep_id == sa.bindparam("owner"),
                                        reps.c.version > 0).label("owner_in_directory")


def _own_ownerless_lead_statement(insert: Any) -> Any:
    statement = insert(leads).values(
        org_id=sa.bindparam("org"), lead_id=sa.bindparam("lead"), owner_id=sa.bindparam("owner"),
        updated_at=sa.bindparam("now"), lead_version=0, pipeline_version=0, unsubscribed=False, erased=False,
        reopened=False)
    return statement.on_conflict_do_update(
        index_elements=["org_id", "lead_id"], where=leads.c.owner_id.is_(None),
        set_={"owner_id": statement.excluded.owner_id, "updated_at": statement.excluded.updated_at, **_ONE_MORE_LOCK},
    ).returning(*leads.c, _OWNER_IN_DIRECTORY)


_OWN_OWNERLESS_LEAD = per_dialect(_own_ownerless_lead_statement)


@dataclass(frozen=True)
class OwnedLead:
    """The lead's row after `own_ownerless_lead` gave it its owner, and whether the owner's directory entry is held
    (then what the assignment says of the owner is not kept: `upsert_rep` would write nothing)."""
    lead: KnownLead
    owner_in_directory: bool


async def own_ownerless_lead(session: AsyncSession, org_id: str, lead_id: str, owner_id: str, now: datetime, *,
                             notice_template_key: str | None = None) -> OwnedLead | None:
    """Give the lead `owner_id` when its row names no owner (creating the row when events about the lead arrive
    before LeadCreated), in one statement that locks it and also says whether the owner's directory entry is held:
    the row after, or None when it names an owner already or this transaction holds it already (then `lock_lead`
    gives it as it is, and nothing was written).

    `notice_template_key`: the owner is to be told of the lead (`rep_notice` with this template key); on PostgreSQL
    the same statement reads the notice and the transaction holds it (until it writes the rep's row: what the
    assignment says of an owner not in the directory). The rep, the template and the webhooks are read in the
    statement's snapshot, which may predate the lead's lock: none of them is ordered by that lock (a read after it
    could as well miss a write committed a moment later), and the lead in the notice is the row as written."""
    if ("lead", org_id, lead_id) in _held(session):
        return None
    params = {"org": org_id, "lead": lead_id, "owner": owner_id, "now": now}
    reading_notice = notice_template_key is not None and dialect_name(session) == "postgresql"
    if reading_notice:
        row = (await session.execute(_OWN_OWNERLESS_LEAD_READING_NOTICE, {
            **params, "template_key": notice_template_key})).mappings().first()
        if row is None:
            return None
        values = _unprefixed(row, leads, "lead_")
        owner_in_directory = bool(row["lead_owner_in_directory"])
    else:
        row = (await session.execute(_OWN_OWNERLESS_LEAD[dialect_name(session)], params)).mappings().first()
        if row is None:
            return None
        values = dict(row)
        owner_in_directory = bool(values.pop("owner_in_directory"))
    assert values is not None
    lead = _hold_lead(session, KnownLead(**values))
    if reading_notice:
        _held(session)[("notice", org_id, (owner_id, lead_id, notice_template_key))] = _notice_of(row, lead)
    return OwnedLead(lead=lead, owner_in_directory=owner_in_directory)


async def update_lead(session: AsyncSession, org_id: str, lead_id: str, values: dict[str, Any]) -> KnownLead:
    """Write `values` to the lead's row (it exists: `lock_lead`) and return the row as it now is."""
    row = first_record(KnownLead, await session.execute(_UPDATE_LEAD, {**values, "where_org": org_id,
                                                                       "where_lead": lead_id}))
    assert row is not None, f"lead {lead_id} has no row (lock_lead first)"
    return _hold_lead(session, row)


_INSERT = per_dialect(lambda insert: insert)


def _newer_snapshot_upsert(dialect: str, columns: tuple[str, ...]) -> Any:
    """The lead inserted with these columns (`set_` + name), or they written over the row held when that is older
    and not erased; without RETURNING."""
    insert = _INSERT[dialect](leads).values(
        {"org_id": sa.bindparam("org"), "lead_id": sa.bindparam("lead"), "pipeline_version": 0,
         "unsubscribed": False, "erased": False, "reopened": False,
         **{column: sa.bindparam(f"set_{column}", type_=leads.c[column].type) for column in columns}})
    return insert.on_conflict_do_update(
        index_elements=["org_id", "lead_id"],
        set_={**{column: insert.excluded[column] for column in columns}, **_ONE_MORE_LOCK},
        where=(leads.c.lead_version < insert.excluded.lead_version) & leads.c.erased.is_(False))


@functools.cache  # by dialect and columns: built once each
def _newer_snapshot_statement(dialect: str, columns: tuple[str, ...]) -> Any:
    return _newer_snapshot_upsert(dialect, columns).returning(*leads.c)


async def store_newer_snapshot(session: AsyncSession, org_id: str, lead_id: str,
                               values: dict[str, Any]) -> KnownLead | None:
    """Insert the lead with `values` (its `lead_version` among them), or write them over the row held when that
    is older and not erased, in one statement; the row after, or None when the row held was left as it was."""
    statement = _newer_snapshot_statement(dialect_name(session), tuple(sorted(values)))
    row = first_record(KnownLead, await session.execute(statement, {
        "org": org_id, "lead": lead_id, **{f"set_{column}": value for column, value in values.items()}}))
    # (None: the row, if this transaction holds it, is as it was.)
    return None if row is None else _hold_lead(session, row)


async def save_pipeline_stages(session: AsyncSession, org_id: str, pipeline_id: str, stage_ids: list[str],
                               now: datetime) -> None:
    """The pipeline's stages as a lead's StageAdvanced lists them: kept only until the pipeline's own definition
    (PipelineDefined) has arrived."""
    insert = dialect_insert(session)
    values = {"stage_ids": list(stage_ids), "updated_at": now}
    await session.execute(insert(known_pipelines).values(org_id=org_id, pipeline_id=pipeline_id, **values)
                          .on_conflict_do_update(index_elements=["org_id", "pipeline_id"], set_=values,
                                                 where=known_pipelines.c.definition_version == 0))


async def save_pipeline_definition(session: AsyncSession, org_id: str, definition: PipelineDefinedV1, version: int,
                                   now: datetime) -> bool:
    """Store pipeline-service's definition when newer than the one held; False for a stale event."""
    insert = dialect_insert(session)
    values = {"stage_ids": [s.stage_id for s in definition.stages], "name": definition.name,
              "archived": definition.archived, "definition_version": version, "updated_at": now}
    statement = insert(known_pipelines).values(org_id=org_id, pipeline_id=definition.pipeline_id, **values)
    statement = statement.on_conflict_do_update(index_elements=["org_id", "pipeline_id"], set_=values,
                                                where=known_pipelines.c.definition_version < version)
    return rows_affected(await session.execute(statement)) == 1


async def pipeline_stage_ids(session: AsyncSession, org_id: str) -> dict[str, list[str]]:
    """The org's pipelines known here and not archived, with their stage ids."""
    rows = await session.execute(sa.select(known_pipelines).where(known_pipelines.c.org_id == org_id,
                                                                  known_pipelines.c.archived.is_(False)))
    return {r.pipeline_id: list(r.stage_ids or ()) for r in rows}


@functools.cache  # by dialect and the columns told: built once each
def _upsert_rep_statement(dialect: str, columns: tuple[str, ...]) -> Any:
    insert = _INSERT[dialect](reps).values({
        "org_id": sa.bindparam("org"), "rep_id": sa.bindparam("rep"), "updated_at": sa.bindparam("now"),
        "version": 0, **{column: sa.bindparam(f"set_{column}") for column in columns}})
    if columns:
        return insert.on_conflict_do_update(
            index_elements=["org_id", "rep_id"], where=reps.c.version == 0,
            set_={column: insert.excluded[column] for column in (*columns, "updated_at")})
    return insert.on_conflict_do_nothing(index_elements=["org_id", "rep_id"])


async def upsert_rep(session: AsyncSession, org_id: str, rep_id: str, now: datetime, *, name: str | None,
                     email: str | None, timezone: str | None) -> None:
    """What a lead assignment says of its owner: kept only until the directory's own entry arrives (a decision
    may be older than the entry)."""
    values = {k: v for k, v in {"name": name, "email": email, "timezone": timezone}.items() if v is not None}
    _forget_notices(session, org_id, rep_id=rep_id)
    await session.execute(_upsert_rep_statement(dialect_name(session), tuple(values)), {
        "org": org_id, "rep": rep_id, "now": now, **{f"set_{column}": value for column, value in values.items()}})


async def save_rep(session: AsyncSession, org_id: str, rep: RepSnapshot, version: int, now: datetime) -> bool:
    """Store assignment-service's directory entry when newer than the one we hold; False for a stale event."""
    insert = dialect_insert(session)
    values = {"name": rep.name, "email": rep.email, "timezone": rep.timezone, "active": rep.active,
              "team_ids": list(rep.team_ids), "working_hours": dict(rep.working_hours), "language": rep.language,
              "version": version, "updated_at": now}
    statement = insert(reps).values(org_id=org_id, rep_id=rep.rep_id, **values).on_conflict_do_update(
        index_elements=["org_id", "rep_id"], set_=values, where=reps.c.version < version)
    _forget_notices(session, org_id, rep_id=rep.rep_id)
    return rows_affected(await session.execute(statement)) == 1


async def get_rep(session: AsyncSession, org_id: str, rep_id: str | None) -> dict[str, Any] | None:
    if not rep_id:
        return None
    row = (await session.execute(sa.select(reps).where(reps.c.org_id == org_id, reps.c.rep_id == rep_id))
           ).mappings().first()
    return dict(row) if row else None


@dataclass(frozen=True)
class RepNotice:
    """What a rep notification needs, read in one statement: the rep's directory entry, the lead's details (None
    when not asked for or unknown), the org's template for the notification (None: the built-in one) and whether
    the org has any active webhook subscription (False: nothing more to read)."""
    rep: dict[str, Any] | None
    lead: KnownLead | None
    template: Template | None
    any_webhooks: bool


def _rep_notice_statement(*, owning_lead: bool = False) -> Any:
    """`owning_lead` (PostgreSQL): the notice to the lead's new owner (`owner`), the lead given that owner first
    (`_OWN_OWNERLESS_LEAD`, a data-modifying CTE: no row when it wrote nothing) and read as written (`lead_` + its
    columns, and `lead_owner_in_directory`)."""
    org: Any = sa.bindparam("org")
    if owning_lead:
        owned = _OWN_OWNERLESS_LEAD["postgresql"].cte("owned_lead")
        joined = owned.outerjoin(reps, (reps.c.org_id == org) & (reps.c.rep_id == sa.bindparam("owner")))
        lead_columns = _prefixed(owned, "lead_")
    else:
        anchor = sa.select(sa.literal(1).label("one")).subquery("anchor")
        joined = (anchor.outerjoin(reps, (reps.c.org_id == org) & (reps.c.rep_id == sa.bindparam("rep")))
                  .outerjoin(leads, (leads.c.org_id == org) & (leads.c.lead_id == sa.bindparam("lead"))))
        lead_columns = _prefixed(leads, "lead_")
    joined = joined.outerjoin(templates, (templates.c.org_id == org)
                              & (templates.c.key == sa.bindparam("template_key")))
    any_webhooks = sa.exists().where(webhook_subscriptions.c.org_id == org, webhook_subscriptions.c.active.is_(True))
    return sa.select(*_prefixed(reps, "rep_"), *lead_columns, *_prefixed(templates, "template_"),
                     any_webhooks.label("any_webhooks")).select_from(joined)


_REP_NOTICE = _rep_notice_statement()
_OWN_OWNERLESS_LEAD_READING_NOTICE = _rep_notice_statement(owning_lead=True)


def _notice_of(row: Any, lead: KnownLead | None) -> RepNotice:
    """A `_REP_NOTICE` row's notice, about `lead` (as read by it, or as written by the statement)."""
    template = _unprefixed(row, templates, "template_")
    return RepNotice(rep=_unprefixed(row, reps, "rep_"), lead=lead, template=Template(**template) if template else None,
                     any_webhooks=bool(row["any_webhooks"]))


async def rep_notice(session: AsyncSession, org_id: str, rep_id: str, *, lead_id: str | None,
                     template_key: str | None) -> RepNotice:
    """Read once per transaction (the two reminders of a stage's tasks, delivered together, tell the same rep about
    the same lead), until the transaction writes the rep's or the lead's row (templates and webhook subscriptions
    are not written by the transactions that notify)."""
    key = ("notice", org_id, (rep_id, lead_id, template_key))
    held = _held(session)
    notice = held.get(key)
    if notice is None:
        row = (await session.execute(_REP_NOTICE, {"org": org_id, "rep": rep_id, "lead": lead_id,
                                                   "template_key": template_key})).mappings().one()
        lead = _unprefixed(row, leads, "lead_")
        notice = _notice_of(row, KnownLead(**lead) if lead else None)
        _held(session)[key] = notice
    return dataclasses.replace(notice, rep=dict(notice.rep)) if notice.rep is not None else notice


def _forget_notices(session: AsyncSession, org_id: str, *, rep_id: str | None = None,
                    lead_id: str | None = None) -> None:
    """The transaction wrote the rep's or the lead's row: the notices it read about them are read again."""
    held = _held(session)
    for key in [k for k in held if k[0] == "notice" and k[1] == org_id
                and ((rep_id is not None and k[2][0] == rep_id) or (lead_id is not None and k[2][1] == lead_id))]:
        del held[key]


@dataclass(frozen=True)
class TaskAssignment:
    """A task's assignee as of one of pipeline-service's events about the task (its `version`), told `at`."""
    org_id: str
    task_id: str
    assignee_id: str | None
    version: int
    at: datetime


def _record_task_assignee_statement(insert: Any) -> Any:
    # `cte_parameters`: the statement also runs as a CTE beside a delivery's insert (its columns' names).
    statement = insert(task_assignees).values(cte_parameters(task_assignees, "assignee"))
    return statement.on_conflict_do_update(
        index_elements=["org_id", "task_id"], where=task_assignees.c.version < statement.excluded.version,
        set_={column: statement.excluded[column] for column in ("version", "assignee_id", "updated_at")})


_RECORD_TASK_ASSIGNEE = per_dialect(_record_task_assignee_statement)


def _record_task_assignee_adding_delivery_statement() -> Any:
    """PostgreSQL: the assignment recorded (`_RECORD_TASK_ASSIGNEE`, a data-modifying CTE that takes the task's row
    lock as the statement alone does) and, only when it was, the delivery added (another CTE, reading the first's
    RETURNING); the statement's row says whether each was."""
    recorded = _RECORD_TASK_ASSIGNEE["postgresql"].returning(task_assignees.c.task_id).cte("recorded_assignee")
    row = sa.select(*(sa.bindparam(column.name, type_=column.type) for column in deliveries.c)).where(
        sa.exists(sa.select(recorded.c.task_id)))
    added = (_INSERT["postgresql"](deliveries).from_select([column.name for column in deliveries.c], row)
             .on_conflict_do_nothing(index_elements=["org_id", "idem_key"]).returning(deliveries.c.id)
             .cte("added_delivery"))
    return sa.select(sa.exists(sa.select(recorded.c.task_id)).label("assignee_recorded"),
                     sa.exists(sa.select(added.c.id)).label("delivery_added"))


_RECORD_TASK_ASSIGNEE_ADDING_DELIVERY = _record_task_assignee_adding_delivery_statement()


def _assignment_params(assignment: TaskAssignment) -> dict[str, Any]:
    return prefixed("assignee", {"org_id": assignment.org_id, "task_id": assignment.task_id,
                                 "version": assignment.version, "assignee_id": assignment.assignee_id,
                                 "updated_at": assignment.at})


async def record_task_assignee(session: AsyncSession, assignment: TaskAssignment) -> bool:
    """Remember the task's assignee at its version; False when as new or newer a version is known (a replayed or
    late event), decided by the upsert itself."""
    return rows_affected(await session.execute(_RECORD_TASK_ASSIGNEE[dialect_name(session)],
                                               _assignment_params(assignment))) == 1


async def record_task_assignee_adding_delivery(session: AsyncSession, assignment: TaskAssignment,
                                               delivery: Delivery) -> tuple[bool, bool]:
    """`record_task_assignee`, then, only when it recorded the assignment, `add_delivery` (a notification for that
    assignee, which as new or newer an assignment known would make moot): on PostgreSQL one statement, on SQLite
    two. Whether the assignment was recorded, and whether the delivery was added (False too for a duplicate)."""
    if dialect_name(session) == "postgresql":
        row = (await session.execute(_RECORD_TASK_ASSIGNEE_ADDING_DELIVERY,
                                     {**row_values(delivery), **_assignment_params(assignment)})).one()
        return bool(row.assignee_recorded), bool(row.delivery_added)
    if not await record_task_assignee(session, assignment):
        return False, False
    return True, await add_delivery(session, delivery)


async def remember_past_owner(session: AsyncSession, org_id: str, lead_id: str, previous_owner_id: str | None,
                              owner_id: str, now: datetime) -> None:
    """The lead's former owner keeps read access to its enrollments."""
    await remember_owner(session, lead_past_owners, org_id, lead_id, previous_owner_id, owner_id, now)
