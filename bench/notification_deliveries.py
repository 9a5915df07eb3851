"""notification-service: how fast recorded deliveries leave, and the Mailchimp connection cap under a burst.

1. N rep notifications (LeadAssigned → pending email rows → delivery worker → a local aiosmtpd server), timed from
   the first dispatch until every row is `sent`. Baseline: the same N messages sent straight with aiosmtplib by
   the same number of concurrent tasks (the SMTP cost alone, no database, no state machine).
2. M Mailchimp upserts at once against the fake API answering after `--latency-ms`: time and the peak of
   concurrent requests. Baseline: the ideal time with exactly 10 connections, M / 10 × latency.

3. The SMTP adapter's CPU per message (the sending thread's CPU; the local aiosmtpd server runs in a thread of its
   own), one message after another: SmtpMailer (kept connections, the message written directly). Baseline: the
   same message built as an `email.message.EmailMessage` and sent with aiosmtplib's one-shot `send` (a connection
   per message), as the service did before.

Run: `.venv/bin/python bench/notification_deliveries.py [--emails 300] [--syncs 200] [--latency-ms 20]
[--mailer-messages 500]`
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import aiosmtplib
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "notification-service" / "tests"))

from notification_fakes import FakeMailchimp  # noqa: E402

from notification_service.adapters.mailchimp import MailchimpClient  # noqa: E402
from notification_service.adapters.mailer import OutgoingEmail, SmtpMailer  # noqa: E402
from notification_service.adapters.orm import deliveries  # noqa: E402
from notification_service.config import Settings  # noqa: E402
from notification_service.entrypoints.http import create_app  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import (  # noqa: E402
    ContactData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadSnapshot,
    make_event,
)
from salesflow_shared.testing import POSTGRES_URL, SmtpSink, running_app, service_test_settings  # noqa: E402


async def bench_emails(n: int, concurrency: int) -> tuple[float, float, float]:
    sink = SmtpSink()
    sink.start()
    url = f"{POSTGRES_URL}/bench_notification_{uuid.uuid4().hex[:8]}"
    await ensure_postgres_database(url)
    try:
        settings = service_test_settings(Settings, database_url=url, smtp_port=sink.port, db_pool_size=5,
                                         worker_concurrency=concurrency, worker_batch_size=100,
                                         scheduler_poll_interval_s=0.05)
        app = create_app(settings)
        async with running_app(app):
            context = app.state.context
            started = time.perf_counter()
            for i in range(n):  # (a lead's details come first: a rep's notice names the lead)
                await context.dispatcher.dispatch(make_event(LeadCreatedV1(lead=LeadSnapshot(
                    lead_id=f"l{i}", contact=ContactData(first_name=f"Lead{i}"))), org_id="bench", subject_id=f"l{i}"))
                await context.dispatcher.dispatch(make_event(LeadAssignedV1(
                    lead_id=f"l{i}", owner_id=f"rep{i % 7}", owner_email=f"rep{i % 7}@bench.example",
                    reason="bench"), org_id="bench", subject_id=f"l{i}"))
            handled_s = time.perf_counter() - started
            while True:
                async with context.database.session() as session:
                    sent = (await session.execute(sa.select(sa.func.count()).select_from(deliveries).where(
                        deliveries.c.status == "sent"))).scalar_one()
                if sent >= n:
                    break
                await asyncio.sleep(0.02)
            service_s = time.perf_counter() - started
        mailer = SmtpMailer(host="127.0.0.1", port=sink.port)
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with slots:
                await mailer.send(OutgoingEmail(sender="a@b.c", to=f"x{i}@bench.example", subject="s", html="<p>h</p>",
                                                text="t", message_id=f"<{i}@bench>", date=datetime.now(UTC),
                                                headers={}))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        bare_s = time.perf_counter() - started
        assert len(sink.messages) == 2 * n, len(sink.messages)
        return service_s, handled_s, bare_s
    finally:
        sink.stop()
        await drop_postgres_database(url)


async def bench_mailchimp(m: int, latency_ms: int) -> tuple[float, int]:
    fake = FakeMailchimp(latency_s=latency_ms / 1000)
    await fake.start()
    client = MailchimpClient("bench-us6", base_url=fake.base_url, max_connections=10)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(client.upsert_member("L", f"u{i}@bench.example") for i in range(m)))
        return time.perf_counter() - started, fake.max_in_flight
    finally:
        await client.aclose()
        await fake.stop()


def bench_message(i: int) -> OutgoingEmail:
    return OutgoingEmail(sender="Salesflow <no-reply@salesflow.local>", to=f"Ada Lovelace <ada{i}@bench.example>",
                         subject="Welcome Ada", html="<p>Hi Ada, welcome.</p><p><a href='https://x/u'>Unsubscribe</a></p>",
                         text="Hi Ada, welcome.\nUnsubscribe: https://x/u\n", message_id=f"<{i}@bench>",
                         date=datetime.now(UTC), headers={"List-Unsubscribe": "<https://x/u>",
                                                          "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})


def one_shot_message(email: OutgoingEmail) -> EmailMessage:
    """The message as the service built it before (EmailMessage, the default policy)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = email.sender, email.to, email.subject
    message["Message-ID"], message["Date"] = email.message_id, format_datetime(email.date)
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


async def bench_mailer_cpu(n: int) -> tuple[float, float]:
    """CPU ms per message of the sending thread: SmtpMailer, then the one-shot baseline."""
    sink = SmtpSink()
    sink.start()
    try:
        mailer = SmtpMailer(host="127.0.0.1", port=sink.port)
        await mailer.send(bench_message(-1))  # (the EHLO name is looked up once)
        started = time.thread_time()
        for i in range(n):
            await mailer.send(bench_message(i))
        kept_ms = (time.thread_time() - started) * 1000 / n
        await mailer.aclose()
        started = time.thread_time()
        for i in range(n):
            await aiosmtplib.send(one_shot_message(bench_message(i)), hostname="127.0.0.1", port=sink.port,
                                  local_hostname="bench.local")
        one_shot_ms = (time.thread_time() - started) * 1000 / n
        assert len(sink.messages) == 2 * n + 1, len(sink.messages)
        return kept_ms, one_shot_ms
    finally:
        sink.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--syncs", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--mailer-messages", type=int, default=500)
    args = parser.parse_args()
    kept_ms, one_shot_ms = await bench_mailer_cpu(args.mailer_messages)
    print(f"mailer: {args.mailer_messages} messages one after another, CPU of the sending thread per message: "
          f"{kept_ms:.2f} ms; baseline, EmailMessage + aiosmtplib.send (a connection per message): "
          f"{one_shot_ms:.2f} ms (ratio {kept_ms / one_shot_ms:.2f})")
    service_s, handled_s, bare_s = await bench_emails(args.emails, args.concurrency)
    print(f"emails: {args.emails} rep notifications recorded and sent in {service_s:.2f} s "
          f"= {args.emails / service_s:.0f}/s (event → pending row → claimed → SMTP → sent + EmailSent/RepNotified); "
          f"the {args.emails} events were handled one after another in {handled_s:.2f} s while sending went on")
    print(f"        baseline, bare aiosmtplib with {args.concurrency} tasks: {bare_s:.2f} s "
          f"= {args.emails / bare_s:.0f}/s (ratio {bare_s / service_s:.2f})")
    took, peak = await bench_mailchimp(args.syncs, args.latency_ms)
    ideal = args.syncs / 10 * args.latency_ms / 1000
    print(f"mailchimp: {args.syncs} upserts in {took:.2f} s, peak concurrent requests {peak} (cap 10); "
          f"ideal with 10 connections {ideal:.2f} s (ratio {ideal / took:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
