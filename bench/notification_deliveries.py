"""notification-service: how fast recorded deliveries leave, and the Mailchimp connection cap under a burst.

1. N rep notifications (LeadAssigned → pending email rows → delivery worker → a local aiosmtpd server), timed from
   the first dispatch until every row is `sent`. Baseline: the same N messages sent straight with aiosmtplib by
   the same number of concurrent tasks (the SMTP cost alone, no database, no state machine).
2. M Mailchimp upserts at once against the fake API answering after `--latency-ms`: time and the peak of
   concurrent requests. Baseline: the ideal time with exactly 10 connections, M / 10 × latency.

Run: `.venv/bin/python bench/notification_deliveries.py [--emails 300] [--syncs 200] [--latency-ms 20]`
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "notification-service" / "tests"))

from notification_fakes import FakeMailchimp  # noqa: E402

from notification_service.adapters.mailchimp import MailchimpClient  # noqa: E402
from notification_service.adapters.mailer import SmtpMailer  # noqa: E402
from notification_service.adapters.orm import deliveries  # noqa: E402
from notification_service.config import Settings  # noqa: E402
from notification_service.entrypoints.http import create_app  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import LeadAssignedV1, make_event  # noqa: E402
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
            for i in range(n):
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
        from datetime import UTC, datetime

        from notification_service.adapters.mailer import OutgoingEmail
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--syncs", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
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
