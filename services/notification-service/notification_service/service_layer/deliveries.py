"""The delivery log and its state machine: every outbound email, Mailchimp call or webhook is one row.

    pending ──claimed──▶ sending ──accepted──────▶ sent
       │                    ├──transient error──▶ pending (retried after a backoff; after
       │                    │                     `delivery_max_attempts` attempts ─▶ failed)
       │                    ├──permanent error──▶ failed
       │                    └──lease expired (worker died) ─▶ claimed again (the duplicate window below)
       └──lead erased / disqualified / unsubscribed, task done ──▶ cancelled

Exactly once, as far as the outside world allows
------------------------------------------------
Each row carries an idempotency key (lead, rule/sequence, step — or the notification's once-key), unique per
org. It is inserted with ON CONFLICT DO NOTHING, in the same transaction as whatever caused it (an event's
inbox row, a sequence step's advance), and that transaction COMMITS BEFORE anything is sent. A redelivered or
replayed event, a second replica, or a restarted worker therefore finds the row and sends nothing new.

Sending happens outside any transaction: a worker claims due `pending` rows (and `sending` rows whose lease
ran out) with FOR UPDATE SKIP LOCKED, marks them `sending`, bumps `attempts`, sets `next_attempt_at` to the
lease's end and commits; then it talks to the outside world; then it records the outcome in a second short
transaction fenced on `attempts` (a worker whose lease ran out cannot overwrite a newer attempt). Outcomes that
end while another is being recorded are recorded together next, in one transaction (all those sent by one
statement): a commit per attempt would otherwise be the worker's main cost.

The one window that can duplicate: the SMTP relay (or Mailchimp, or a webhook receiver) accepted the message
and the process dies before the "sent" transaction commits. The row stays `sending` and, once its lease
(`delivery_lease_s`) expires, is attempted again. The window is kept as narrow as it can be: nothing but
recording outcomes (this one's, and those of attempts that ended just before) runs between the relay's
acceptance and the commit; if the database is unreachable at that moment (an outage, not a crash), the worker
keeps the outcome and retries recording it until the database is back, and meanwhile never claims that row
again itself; and the retry re-sends the very same stored message with the same
`Message-ID: <delivery-id@domain>` (so mail clients and relays that dedupe by Message-ID show it once); Mailchimp
upserts are idempotent by nature and webhooks carry `Salesflow-Delivery-Id` for receivers to dedupe.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.app import run_periodically
from salesflow_shared.db import is_database_outage
from salesflow_shared.events import (
    ContactSyncedV1,
    EmailFailedV1,
    EmailSentV1,
    EventData,
    RepNotifiedV1,
)
from salesflow_shared.outbox_rows import KeyedOutboxRows
from salesflow_shared.retries import backoff_s
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.errors import PermanentDeliveryError, TransientDeliveryError
from ..adapters.mailer import OutgoingEmail
from ..adapters.repository import Delivery
from ..collaborators import collaborators

log = structlog.get_logger(__name__)
# Outside parties' error texts may quote an address or a Mailchimp member id (the MD5 of an address): logs and
# events outlive an erasure, so neither is ever logged or published.
_PERSONAL = re.compile(r"[^\s@\"'<>,;:]+@[^\s@\"'<>,;:]+|\b[0-9a-fA-F]{32}\b")


def redact_personal(text: str | None) -> str | None:
    return None if text is None else _PERSONAL.sub("[redacted]", text)


async def record_delivery(session: AsyncSession, **values: Any) -> Delivery | None:
    """Insert the delivery (`new_delivery(**values)`) unless its idempotency key exists; the new row, or None for a
    duplicate."""
    delivery = new_delivery(**values)
    return delivery if await repository.add_delivery(session, delivery) else None


def new_delivery(*, org_id: str, idem_key: str, kind: str, recipient_kind: str, reason: str, now: datetime,
                 payload: dict[str, Any] | None, recipient: str | None = None, lead_id: str | None = None,
                 rep_id: str | None = None, sequence_id: str | None = None, enrollment_id: str | None = None,
                 step: int | None = None, template_id: str | None = None, rule_id: str | None = None,
                 status: str = "pending", error: str | None = None, not_before: datetime | None = None,
                 message_id_domain: str = "salesflow.local") -> Delivery:
    """A delivery's row, as it is first recorded."""
    delivery_id = str(uuid.uuid4())
    return Delivery(
        id=delivery_id, org_id=org_id, idem_key=idem_key, kind=kind, recipient_kind=recipient_kind,
        recipient=recipient, lead_id=lead_id, rep_id=rep_id, reason=reason, sequence_id=sequence_id,
        enrollment_id=enrollment_id, step=step, template_id=template_id, rule_id=rule_id,
        status=status, attempts=0, next_attempt_at=(not_before or now) if status == "pending" else None,
        payload=payload, error=error, created_at=now, updated_at=now,
        # Stable across retries: derived from the row, fixed before the first attempt.
        message_id=f"<{delivery_id}@{message_id_domain}>" if kind == "email" else None,
    )


def outcome_event(row: Delivery, *, ok: bool, error: str | None = None, now: datetime,
                  permanent: bool = True) -> list[EventData]:
    """The events that tell the rest of Salesflow what became of a delivery."""
    payload = row.payload or {}
    kind, recipient_kind = row.kind, row.recipient_kind
    events: list[EventData] = []
    if kind == "email":
        rk = "rep" if recipient_kind == "rep" else "prospect"
        if ok:
            assert row.message_id is not None  # every email has one (record_delivery)
            events.append(EmailSentV1(delivery_id=row.id, lead_id=row.lead_id, recipient_kind=rk,
                                      rep_id=row.rep_id, template_id=row.template_id,
                                      sequence_id=row.sequence_id, step=row.step,
                                      message_id=row.message_id, sent_at=now))
        else:
            events.append(EmailFailedV1(delivery_id=row.id, lead_id=row.lead_id, recipient_kind=rk,
                                        template_id=row.template_id, sequence_id=row.sequence_id,
                                        step=row.step, error=redact_personal(error) or "failed",
                                        permanent=permanent))
    if ok and recipient_kind in ("rep", "webhook") and row.rep_id:
        events.append(RepNotifiedV1(delivery_id=row.id, rep_id=row.rep_id, lead_id=row.lead_id,
                                    reason=row.reason, milestone_rule_id=row.rule_id,
                                    channel="webhook" if kind == "webhook" else "email"))
    if kind == "mailchimp" and row.lead_id:
        events.append(ContactSyncedV1(delivery_id=row.id, lead_id=row.lead_id,
                                      list_id=payload.get("list_id", ""), action=payload.get("action", "subscribed"),
                                      tags=list(payload.get("tags") or []), outcome="ok" if ok else "failed",
                                      error=None if ok else redact_personal(error)))
    return events


def publish_outcome(uow: UnitOfWork, row: Delivery, *, ok: bool, now: datetime, error: str | None = None,
                    permanent: bool = True) -> None:
    for event in outcome_event(row, ok=ok, error=error, now=now, permanent=permanent):
        uow.publish(event, org_id=row.org_id, subject_id=row.id, subject_version=1)


async def cancel_pending(session: AsyncSession, *, org_id: str, now: datetime, reason: str,
                         lead_id: str | None = None, kinds: tuple[str, ...] = ("email",),
                         recipient_kinds: tuple[str, ...] = ("prospect",), key_prefix: str | None = None) -> int:
    return await repository.cancel_pending_deliveries(session, org_id, now=now, reason=reason, lead_id=lead_id,
                                                      kinds=kinds, recipient_kinds=recipient_kinds,
                                                      key_prefix=key_prefix)


async def forget_erased_lead_data(session: AsyncSession, org_id: str, lead_id: str) -> bool:
    """Scrub what an erased lead's finished deliveries carried (payloads, error texts, the prospect's address)
    and, once no Mailchimp call about it is pending or in flight (they need it), its Mailchimp member ids (the
    MD5 of the address). Called by the erasure and after every attempt about an erased lead, so a delivery in
    flight during the erasure is scrubbed when it ends. False when the lead is not erased or a Mailchimp call
    is still due."""
    if not await repository.lead_erased(session, org_id, lead_id):
        return False
    await repository.scrub_finished_deliveries(session, org_id, lead_id)
    if await repository.mailchimp_call_due(session, org_id, lead_id):
        return False
    await repository.forget_members(session, org_id, lead_id)
    return True

class DeliveryMetrics:
    """`/metrics`: attempts by kind and outcome, and how long the outside world took."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram
        self.attempts = Counter("salesflow_delivery_attempts_total", "Outbound delivery attempts",
                                ["kind", "outcome"], registry=registry)
        self.duration = Histogram("salesflow_delivery_attempt_seconds", "Duration of one outbound attempt",
                                  ["kind"], registry=registry)


@dataclass
class Outcome:
    ok: bool
    error: str | None = None
    transient: bool = False


class DeliveryWorker:
    """Claims due pending deliveries (FOR UPDATE SKIP LOCKED, safe with several replicas) and attempts them."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.settings = context.settings
        self.clock = context.clock
        self._slots = asyncio.Semaphore(self.settings.worker_concurrency)
        self.metrics = collaborators(context).delivery_metrics  # built once per process
        # Deliveries attempted whose outcome could not be recorded yet (database outage): never claimed again
        # by this worker, or their lease would run out and the message be sent a second time.
        self._unrecorded: set[str] = set()
        # Attempts ended and not recorded yet, each with what its attempt awaits; recorded by one holder of the lock
        # at a time, all those queued at once (see `_record`).
        self._to_record: list[tuple[Delivery, Outcome, asyncio.Future[None]]] = []
        self._recording = asyncio.Lock()

    async def run_once(self) -> bool:
        """Attempt the due deliveries; whether more may be due at once (the batch was full: run again at once; a
        smaller batch took everything due, and what falls due next comes with time, the idle poll, or with a
        commit, which rings)."""
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.settings.delivery_lease_s)
        async with self.context.uow() as uow:
            claimed = await repository.claim_due_deliveries(uow.session, now, lease_until,
                                                            self.settings.worker_batch_size, self._unrecorded)
            if not claimed.rows:
                return False
            await uow.commit()
        keys = claimed.mailchimp_keys
        attempts = asyncio.gather(*(self._attempt_in_order(group, keys) for group in _ordered_groups(claimed.rows)))
        try:
            await asyncio.shield(attempts)
        except asyncio.CancelledError:
            # Shutting down: messages already on the wire are let finish and recorded, so a graceful stop does not
            # leave them in the duplicate window (the rows would otherwise be re-sent when their lease expires).
            try:
                await asyncio.wait_for(asyncio.shield(attempts), timeout=self.settings.delivery_shutdown_grace_s)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("deliveries_left_in_flight_at_shutdown", count=len(claimed.rows))
            raise
        return bool(len(claimed.rows) >= self.settings.worker_batch_size)

    async def _attempt_in_order(self, group: list[Delivery], mailchimp_keys: dict[str, str]) -> None:
        for row in group:
            await self._attempt(row, mailchimp_keys)

    async def _attempt(self, row: Delivery, mailchimp_keys: dict[str, str]) -> None:
        async with self._slots:
            started = time.perf_counter()
            try:
                await self._send(row, mailchimp_keys)
                outcome = Outcome(ok=True)
            except TransientDeliveryError as exc:
                outcome = Outcome(ok=False, error=str(exc), transient=True)
            except PermanentDeliveryError as exc:
                outcome = Outcome(ok=False, error=str(exc))
            except Exception as exc:  # a bug must not lose the message: retried, then failed
                log.exception("delivery_attempt_crashed", delivery_id=row.id)
                outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}", transient=True)
            self.metrics.duration.labels(row.kind).observe(time.perf_counter() - started)
            self.metrics.attempts.labels(row.kind, "ok" if outcome.ok else "transient" if outcome.transient
                                         else "permanent").inc()
            await self._record(row, outcome)

    async def _record(self, row: Delivery, outcome: Outcome) -> None:
        """Record the outcome, together with those of the other attempts that ended meanwhile (one transaction, one
        statement for all those sent): the first to end is recorded at once, those ending while it commits with
        the next commit (they would be waiting for a connection otherwise). While the database is unreachable,
        keep the outcomes and try again (a lost "sent" is a message sent twice once the lease runs out). A crash
        or shutdown meanwhile leaves the rows `sending`."""
        self._unrecorded.add(row.id)
        recorded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_record.append((row, outcome, recorded))
        try:
            async with self._recording:
                if self._to_record:  # else an earlier holder recorded this one with its own
                    batch, self._to_record = self._to_record, []
                    try:
                        await self._record_until_done([(r, o) for r, o, _ in batch])
                    except BaseException as exc:  # noqa: BLE001 - each attempt of the batch raises it (below)
                        for _, _, done in batch:
                            if isinstance(exc, asyncio.CancelledError):
                                done.cancel()
                            else:
                                done.set_exception(exc)
                    else:
                        for _, _, done in batch:
                            done.set_result(None)
            await recorded
        finally:
            self._unrecorded.discard(row.id)

    async def _record_until_done(self, batch: list[tuple[Delivery, Outcome]]) -> None:
        delay = 0.1
        while True:
            try:
                await self._record_once(batch)
                return
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                log.warning("delivery_outcome_not_recorded_yet", delivery_ids=[r.id for r, _ in batch],
                            error=f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _record_once(self, batch: list[tuple[Delivery, Outcome]]) -> None:
        now = self.clock.now()
        async with self.context.uow() as uow:
            # Each mark says whether the lead is erased (None: this attempt was overtaken, nothing recorded).
            lead_erased: dict[str, bool | None] = {}
            sent = [row for row, outcome in batch if outcome.ok]
            # The sent deliveries' events, written by the statement that marks them sent: only those of the
            # attempts it records (an overtaken attempt's mark writes nothing and publishes nothing).
            sent_events = KeyedOutboxRows(self.context.name)
            for row in sent:
                for event in outcome_event(row, ok=True, now=now):
                    sent_events.add(row.id, event, org_id=row.org_id, subject_id=row.id)
            marked = await repository.mark_sent(uow.session, sent, now, sent_events)
            for row in sent:
                lead_erased[row.id] = marked.get(row.id)
            for row, outcome in batch:
                if outcome.ok:
                    continue
                if outcome.transient and row.attempts < self.settings.delivery_max_attempts:
                    delay = backoff_s(row.attempts, base_s=self.settings.delivery_retry_base_s,
                                      max_s=self.settings.delivery_retry_max_s)
                    lead_erased[row.id] = await repository.mark_for_retry(uow.session, row, outcome.error,
                                                                          now + timedelta(seconds=delay), now)
                else:
                    lead_erased[row.id] = await repository.mark_failed(uow.session, row, outcome.error, now)
                    if lead_erased[row.id] is not None:
                        publish_outcome(uow, row, ok=False, now=now, error=outcome.error,
                                        permanent=not outcome.transient)
            # Erased while an attempt was in flight: scrub it now (once per lead).
            erased_leads: dict[tuple[str, str], None] = {}  # (org, lead), in the batch's order
            for row, _ in batch:
                if row.lead_id and lead_erased[row.id] is not False:
                    erased_leads[(row.org_id, row.lead_id)] = None
            for org_id, lead_id in erased_leads:
                await forget_erased_lead_data(uow.session, org_id, lead_id)
            await uow.commit()
        if marked:  # committed: the relay publishes them, as it does a commit's own events
            self.context.relay.hand_over(sent_events.committed(marked))
        for row, outcome in batch:
            log.info("delivery_attempted", delivery_id=row.id, kind=row.kind, ok=outcome.ok,
                     error=redact_personal(outcome.error))

    # ------------------------------------------------------------------ one attempt per kind
    async def _send(self, row: Delivery, mailchimp_keys: dict[str, str]) -> None:
        """`mailchimp_keys`: the orgs' Mailchimp API keys, read with the claim."""
        payload = row.payload or {}
        if row.kind == "email":
            if not payload.get("to"):
                raise PermanentDeliveryError("no recipient address (erased?)")
            await collaborators(self.context).mailer.send(OutgoingEmail(
                sender=payload.get("from") or self.settings.smtp_from, to=payload["to"],
                subject=payload["subject"], html=payload["html"], text=payload["text"],
                message_id=row.message_id or "", date=self.clock.now(), headers=payload.get("headers") or {}))
        elif row.kind == "mailchimp":
            await self._mailchimp(row, payload, mailchimp_keys.get(row.org_id))
        elif row.kind == "webhook":
            await self._webhook(row, payload)
        else:
            raise PermanentDeliveryError(f"unknown delivery kind {row.kind}")

    async def _mailchimp(self, row: Delivery, payload: dict[str, Any], api_key: str | None) -> None:
        if api_key is None:
            raise PermanentDeliveryError("Mailchimp is not configured for this organization")
        client = collaborators(self.context).mailchimp.for_key(api_key)
        for op in payload.get("ops", []):
            if op["op"] == "upsert":
                await client.upsert_member(op["list_id"], op["email"], status_if_new=op.get("status_if_new",
                                           "subscribed"), merge_fields=op.get("merge_fields") or None,
                                           status=op.get("status"))
            elif op["op"] == "tags":
                await client.set_tags(op["list_id"], op["hash"], op["tags"], active=op.get("active", True))
            elif op["op"] == "unsubscribe":
                await client.unsubscribe(op["list_id"], op["hash"])
            elif op["op"] == "archive":
                await client.archive(op["list_id"], op["hash"])
            else:
                raise PermanentDeliveryError(f"unknown Mailchimp operation {op['op']}")

    async def _webhook(self, row: Delivery, payload: dict[str, Any]) -> None:
        async with self.context.database.session() as session:
            subscription = await repository.get_webhook_subscription(session, row.org_id,
                                                                     payload.get("subscription_id"))
        if subscription is None or not subscription.active:
            raise PermanentDeliveryError("the webhook subscription was removed")
        body = json.dumps(payload.get("body") or {}, sort_keys=True, default=str).encode()
        await collaborators(self.context).webhooks.send(subscription.url, subscription.secret, body,
                                                   # wall time: the receiver checks it against its clock
                                                   timestamp=int(time.time()),
                                                   delivery_id=row.id)


def _ordered_groups(rows: list[Delivery]) -> list[list[Delivery]]:
    """Mailchimp calls about one lead run one after another, oldest first (a subscribe must not overtake the
    unsubscribe that follows it); everything else runs concurrently."""
    groups: dict[Any, list[Delivery]] = {}
    for row in rows:
        key = (row.org_id, row.lead_id) if row.kind == "mailchimp" and row.lead_id else row.id
        groups.setdefault(key, []).append(row)
    return [sorted(g, key=lambda r: (r.created_at, r.id)) for g in groups.values()]


async def delivery_worker(context: Any) -> None:
    # A stop lets the batch in hand finish (see run_once for a stop that outlasts the grace period).
    await run_periodically(context, DeliveryWorker(context).run_once, context.settings.scheduler_poll_interval_s,
                           wake_on_commit=True,
                           name="deliveries")
