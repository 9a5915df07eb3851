"""Statements metrics-service sends per event type, for one lead's events as bench/cpu_per_lead.py's inbound
journey makes them (LeadCreated, LeadRouted, LeadAssigned, StageAdvanced, two TaskCreated, the enrichment's
LeadUpdated, two EmailSent, the welcome sequence's ActivityLogged, RepNotified, ContactSynced).

The service runs in this process on a fresh PostgreSQL database (its lifespan: migrations, consumer, projector);
`--leads` leads' events are fed through its dispatcher, each event as a delivered batch of its own (the quiet
case: at 2 leads/s most batches hold one or two events) and then each lead's events as one batch; every
statement is counted by its table and verb (the workers' own statements — relay, quota milestones, projector
claims — are left out). The counts do not depend on the machine's load.

Run: `.venv/bin/python bench/metrics_statements.py [--leads 5]`
"""
from __future__ import annotations

import argparse
import asyncio
import re
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services/metrics-service/tests"))

from metrics_testkit import NOW, metrics_settings  # noqa: E402
from sqlalchemy import event as sa_event  # noqa: E402

from metrics_service.entrypoints.http import create_app  # noqa: E402
from salesflow_shared.clock import ManualClock  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import Envelope, EventData, make_event  # noqa: E402
from salesflow_shared.events import catalogue as ev  # noqa: E402
from salesflow_shared.testing import POSTGRES_URL, running_app  # noqa: E402

ORG = "org-census"
# the workers' statements: the relay, the quota milestones, the projector's turn and claim
WORKERS = re.compile(r"\s*(UPDATE outbox|SELECT quotas|UPDATE event_log|SELECT pg_try_advisory)")


def lead_events(n: int, start: datetime) -> list[Envelope]:
    lead, rep = f"lead-{n}", f"rep-{n % 3}"
    events: list[Envelope] = []
    at = start

    def emit(data: EventData, subject: str, version: int = 1) -> None:
        nonlocal at
        at += timedelta(milliseconds=30)
        events.append(make_event(data, org_id=ORG, subject_id=subject, subject_version=version, occurred_at=at))

    snapshot = ev.LeadSnapshot(lead_id=lead, product_line="saas", source="web", value=Decimal("1000"),
                               currency="USD", created_at=start, contact=ev.ContactData(email=f"{lead}@example.com"))
    emit(ev.LeadCreatedV1(lead=snapshot), lead)
    emit(ev.LeadRoutedV1(lead_id=lead, pipeline_id="p1", territory_id="t1", reason="rule"), lead)
    emit(ev.LeadAssignedV1(lead_id=lead, owner_id=rep, owner_name="Rep", team_id="T1", territory_id="t1",
                           reason="round robin", trigger="lead_created"), lead)
    emit(ev.StageAdvancedV1(lead_id=lead, pipeline_id="p1", to_stage_id="s1", to_stage_name="Qualify",
                            to_stage_position=1, win_probability=Decimal("0.1"), reason="entry", entered_at=at,
                            owner_id=rep), lead)
    for i in range(2):
        emit(ev.TaskCreatedV1(task_id=f"{lead}-task{i}", lead_id=lead, pipeline_id="p1", stage_id="s1", title="Call",
                              required=i == 0, due_at=at + timedelta(days=1), assignee_id=rep), f"{lead}-task{i}")
    enriched = snapshot.model_copy(update={"company": ev.CompanyData(name="Acme")})
    emit(ev.LeadUpdatedV1(lead=enriched, changed=["company.name"], cause="enrichment"), lead, 2)
    for kind in ("prospect", "rep"):
        emit(ev.EmailSentV1(delivery_id=str(uuid.uuid4()), lead_id=lead, recipient_kind=kind, rep_id=rep,
                            message_id=str(uuid.uuid4()), sent_at=at), lead)
    emit(ev.ActivityLoggedV1(activity_id=f"{lead}-welcome", lead_id=lead, kind="email", rep_id=rep, occurred_at=at,
                             source="sequence", subject="Welcome"), f"{lead}-welcome")
    emit(ev.RepNotifiedV1(delivery_id=str(uuid.uuid4()), rep_id=rep, lead_id=lead, reason="lead_assigned"), rep)
    emit(ev.ContactSyncedV1(delivery_id=str(uuid.uuid4()), lead_id=lead, list_id="l1", action="subscribed"), lead)
    return events


def shape(sql: str) -> str:
    """A statement's verb and table (a UNION ALL read by its first table)."""
    sql = re.sub(r"\s+", " ", sql).strip()
    found = re.match(r"(WITH \w+ AS \(\w+ \w+|INSERT INTO \w+|UPDATE \w+|DELETE FROM \w+|SELECT .{0,40}|\w+)", sql)
    return (found.group(1) if found else sql[:40]) + (" … UNION ALL" if "UNION ALL" in sql else "")


async def census(leads: int) -> None:
    url = f"{POSTGRES_URL.rstrip('/')}/bench_metrics_statements_{uuid.uuid4().hex[:8]}"
    await ensure_postgres_database(url)
    try:
        app = create_app(metrics_settings(url), clock=ManualClock(NOW))
        async with running_app(app):
            counted: dict[str, Counter[str]] = defaultdict(Counter)
            label = ["-"]

            def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                if not WORKERS.match(statement):
                    counted[label[0]][shape(statement)] += 1

            sa_event.listen(app.state.context.database.engine.sync_engine, "before_cursor_execute", seen)
            dispatcher = app.state.context.dispatcher
            start = datetime(2026, 4, 1, tzinfo=UTC)
            for n in range(leads):
                for envelope in lead_events(n, start + timedelta(minutes=n)):
                    label[0] = envelope.type
                    await dispatcher.handle_batch([(envelope.to_json(), {})])
            label[0] = "(a lead's events as one batch)"
            for n in range(leads, 2 * leads):
                await dispatcher.handle_batch([(e.to_json(), {}) for e in lead_events(n, start + timedelta(minutes=n))])
    finally:
        await drop_postgres_database(url)
    single = 0.0
    for kind, counts in sorted(counted.items()):
        total = sum(counts.values()) / leads
        single += total if kind.isalpha() else 0
        print(f"{kind}: {total:.1f} statements per lead")
        for statement, count in counts.most_common():
            print(f"    {count / leads:4.1f}  {statement}")
    print(f"each event a batch of its own: {single:.1f} statements per lead ({single / 12:.2f} per delivery)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=5)
    asyncio.run(census(parser.parse_args().leads))


if __name__ == "__main__":
    main()
