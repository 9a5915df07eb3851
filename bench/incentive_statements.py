"""incentive-service: commission statements for an org of 200 reps and 50,000 won deals in a quarter.

Measures, on the local PostgreSQL (and RabbitMQ for the last figure):
1. every statement of the quarter computed and stored (what `POST /v1/statements/compute` does), target <= 5 s;
   baseline: the same run's bare I/O — reading every win and writing as many line rows, no plan maths;
2. one rep's recomputation after a new win of theirs (read, compute, version, write), p50 over N, target
   <= 50 ms; baseline: the same reads without the computation;
3. a new win reflected on the statement end to end (LeadWon published on RabbitMQ -> consumer -> queued ->
   recalculation worker -> line stored), p50/max over N, target <= 1 s; baseline: the same event's arrival in
   the service (outcome row stored, before any recalculation).

The plan is the worked example's: retroactive tiers on a quarterly quota, a product-line SPIFF, a cap, a
recoverable draw, a 90-day clawback; one overlay manager per team of 20 (ten managers, each credited on 5,000 wins).
Run: .venv/bin/python bench/incentive_statements.py [--reps 200] [--deals 50000] [--samples 30]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import sqlalchemy as sa
from httpx import ASGITransport, AsyncClient

from incentive_service.adapters.orm import deal_outcomes, statement_lines, statements
from incentive_service.adapters.repository.sources import load_wins
from incentive_service.config import Settings
from incentive_service.entrypoints.http import create_app
from incentive_service.service_layer.statements import OrgData, recompute, recompute_many
from salesflow_shared.bus import OutgoingMessage, RabbitBus
from salesflow_shared.clock import ManualClock
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database
from salesflow_shared.events import LeadWonV1, make_event
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, auth_headers, delete_namespace

ORG = "bench-org"
Q_START, Q_END = date(2027, 1, 1), date(2027, 4, 1)
TEAM_SIZE = 20


def plan(managers: list[tuple[str, str]]) -> dict:
    return {
        "name": "Bench AE", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
        "coverage": {"roles": ["ae", "manager"]},
        "credit": {"overlays": [{"participant": m, "teams": [t], "percent": "10"} for m, t in managers]},
        "base_rate": "0.05",
        "tiers": {"mode": "retroactive", "bands": [{"from": "0", "to": "50", "rate": "0.03"},
                                                   {"from": "50", "to": "100", "rate": "0.05"},
                                                   {"from": "100", "to": None, "rate": "0.08"}]},
        "cap": "250000", "hurdle": "20",
        "spiffs": [{"name": "Cloud", "kind": "product_line", "product_line": "cloud", "amount": "150"}],
        "draw": {"amount": "3000", "recoverable": True}, "clawback": {"days": 90},
    }


def people(reps: int) -> tuple[list[str], dict[str, str], list[tuple[str, str]]]:
    """Rep ids, each rep's team, and (manager, team) pairs."""
    rep_ids = [f"rep-{i:03d}" for i in range(reps)]
    teams = {rep: f"team-{i // TEAM_SIZE}" for i, rep in enumerate(rep_ids)}
    return rep_ids, teams, [(f"mgr-{t.split('-')[1]}", t) for t in sorted(set(teams.values()))]


async def load(database_url: str, reps: int, deals: int) -> None:
    """Payees, quotas and won deals straight into the tables (COPY), as the handlers would have stored them."""
    rng = random.Random(7)
    rep_ids, teams, managers = people(reps)
    now = datetime(2027, 3, 31, tzinfo=UTC)
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await conn.copy_records_to_table("payees", columns=["org_id", "participant_id", "name", "team_ids", "active",
                                                            "directory_version", "currency", "role", "updated_at"],
                                         records=[(ORG, r, r, f'["{teams[r]}"]', True, 1, "EUR", "ae", now)
                                                  for r in rep_ids] +
                                         [(ORG, m, m, f'["{t}"]', True, 1, "EUR", "manager", now) for m, t in managers])
        await conn.copy_records_to_table("quotas", columns=["org_id", "quota_id", "scope", "scope_id", "period",
                                                            "period_start", "period_end", "amount", "currency",
                                                            "version", "removed"],
                                         records=[(ORG, str(uuid.uuid4()), "rep", r, "quarter", Q_START, Q_END,
                                                   Decimal("500000"), "EUR", 1, False) for r in rep_ids])
        deal_rows, outcome_rows = [], []
        seconds = int((datetime(2027, 3, 31, tzinfo=UTC) - datetime(2027, 1, 1, tzinfo=UTC)).total_seconds())
        for i in range(deals):
            rep = rep_ids[i % reps]
            lead = f"lead-{i:06d}"
            value = Decimal(rng.randrange(500, 4000) * 10)
            line = "cloud" if i % 5 == 0 else "crm"
            deal_rows.append((ORG, lead, 1, line, f"company-{i % 20000}", value, "EUR", rep, teams[rep], 1, now))
            outcome_rows.append((ORG, str(uuid.uuid4()), lead, "won",
                                 datetime(2027, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(seconds)),
                                 value, "EUR", rep, teams[rep]))
        await conn.copy_records_to_table("deals", columns=["org_id", "lead_id", "lead_version", "product_line",
                                                           "company_key", "value", "currency", "owner_id", "team_id",
                                                           "assigned_version", "updated_at"], records=deal_rows)
        await conn.copy_records_to_table("deal_outcomes", columns=["org_id", "event_id", "lead_id", "kind", "at",
                                                                   "value", "currency", "owner_id", "team_id"],
                                         records=outcome_rows)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(reps: int, deals: int, samples: int) -> None:
    database_url = f"{POSTGRES_URL}/bench_incentive_{uuid.uuid4().hex[:8]}"
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    await ensure_postgres_database(database_url)
    clock = ManualClock(datetime(2027, 3, 31, 12, tzinfo=UTC))
    settings = Settings(environment="test", database_url=database_url, amqp_url=AMQP_URL, bus_namespace=namespace,
                        log_level="WARNING", recalculation_interval_s=0.05)
    app = create_app(settings, clock=clock)
    try:
        async with app.router.lifespan_context(app):
            context = app.state.context
            rep_ids, _, managers = people(reps)
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://bench") as client:
                response = await client.post("/v1/plans", json=plan(managers), headers=auth_headers(ORG, "admin"))
                assert response.status_code == 201, response.text
            while True:  # the worker takes the plan's recalculation (nothing to compute yet) before the load
                async with context.database.session() as session:
                    if not (await session.execute(sa.text("SELECT 1 FROM recalculation_queue"))).first():
                        break
                await asyncio.sleep(0.05)
            await load(database_url, reps, deals)

            # ---------------------------------------------------------- 1. all statements
            started = time.perf_counter()
            async with context.uow() as uow:
                data = await OrgData.load(uow, ORG)
                await recompute_many(uow, data, {(p, Q_START): "recalculation"
                                                 for p in [*rep_ids, *(m for m, _ in managers)]}, clock.now())
                await uow.commit()
            all_s = time.perf_counter() - started
            async with context.uow() as uow:
                n_statements = (await uow.session.execute(sa.select(sa.func.count()).select_from(statements))).scalar()
                n_lines = (await uow.session.execute(sa.select(sa.func.count()).select_from(statement_lines))).scalar()
            started = time.perf_counter()
            async with context.uow() as uow:  # baseline: read every win, write as many rows, no maths
                rows = (await uow.session.execute(sa.select(deal_outcomes).where(deal_outcomes.c.org_id == ORG))).all()
                await uow.session.execute(sa.insert(statement_lines), [{
                    "org_id": "baseline", "line_id": str(uuid.uuid4()), "statement_id": "baseline", "seq": i,
                    "kind": "commission", "key": r.event_id, "lead_id": r.lead_id, "amount": r.value,
                    "description": "baseline", "steps": []} for i, r in enumerate(rows)])
                await uow.rollback()
            baseline_all_s = time.perf_counter() - started

            # ---------------------------------------------------------- 2. one rep's recomputation
            timings, reads = [], []
            for k in range(samples):
                rep = rep_ids[k % len(rep_ids)]
                async with context.uow() as uow:
                    await uow.session.execute(sa.insert(deal_outcomes).values(
                        org_id=ORG, event_id=str(uuid.uuid4()), lead_id=f"extra-{k}", kind="won",
                        at=datetime(2027, 3, 30, tzinfo=UTC), value=Decimal("12345"), currency="EUR", owner_id=rep,
                        team_id=f"team-{rep_ids.index(rep) // TEAM_SIZE}"))
                    await uow.commit()
                started = time.perf_counter()
                async with context.uow() as uow:
                    data = await OrgData.load(uow, ORG)
                    assert await recompute(uow, data, rep, Q_START, "credit_changed", clock.now()) == "updated"
                    await uow.commit()
                timings.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                async with context.uow() as uow:
                    await OrgData.load(uow, ORG)
                    await load_wins(uow.session, ORG, Q_START, Q_END, rep)
                reads.append((time.perf_counter() - started) * 1000)

            # ---------------------------------------------------------- 3. a new win, end to end
            feeder = RabbitBus(AMQP_URL, namespace=namespace, client_name="bench-feeder")
            await feeder.start()
            arrivals, reflected = [], []
            try:
                for k in range(max(5, samples // 3)):
                    rep, lead = rep_ids[(k * 7) % len(rep_ids)], f"live-{k}"
                    event = make_event(LeadWonV1(lead_id=lead, pipeline_id="p", value=Decimal("20000"),
                                                 currency="EUR", owner_id=rep,
                                                 won_at=datetime(2027, 3, 31, 10, tzinfo=UTC)),
                                       org_id=ORG, subject_id=lead)
                    started = time.perf_counter()
                    await feeder.publish(OutgoingMessage(event_id=str(event.id), event_type=event.type,
                                                         body=event.to_json(), headers={"x-org-id": ORG}))
                    arrived = None
                    while True:
                        async with context.database.session() as session:
                            if arrived is None and (await session.execute(sa.select(deal_outcomes.c.event_id).where(
                                    deal_outcomes.c.event_id == str(event.id)))).first():
                                arrived = time.perf_counter() - started
                            line = (await session.execute(sa.select(statement_lines.c.line_id).where(
                                statement_lines.c.org_id == ORG, statement_lines.c.lead_id == lead))).first()
                        if line is not None:
                            reflected.append(time.perf_counter() - started)
                            arrivals.append(arrived if arrived is not None else reflected[-1])
                            break
                        if time.perf_counter() - started > 30:
                            raise RuntimeError(f"win {lead} not on the statement after 30 s")
                        await asyncio.sleep(0.005)
            finally:
                await feeder.close()
    finally:
        await drop_postgres_database(database_url)
        await delete_namespace(AMQP_URL, namespace)

    print(f"incentive-service statements: {reps} reps + {len(managers)} overlay managers, {deals:,} won deals in "
          f"one quarter")
    print(f"1. all statements computed: {all_s:.2f} s for {n_statements} statements, {n_lines:,} lines "
          f"(target <= 5 s); baseline (read every win, write as many rows, no maths) {baseline_all_s:.2f} s "
          f"(ratio {all_s / baseline_all_s:.1f}x)")
    print(f"2. one rep's recomputation after a new win: p50 {statistics.median(timings):.1f} ms, "
          f"p90 {pct(timings, 0.9):.1f} ms over {len(timings)} (target p50 <= 50 ms); baseline (the same reads, no "
          f"maths or writes) p50 {statistics.median(reads):.1f} ms")
    print(f"3. a new win on the statement end to end: p50 {statistics.median(reflected) * 1000:.0f} ms, "
          f"max {max(reflected) * 1000:.0f} ms over {len(reflected)} (target <= 1 s); baseline (the event stored by "
          f"the consumer) p50 {statistics.median(arrivals) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--deals", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.reps, args.deals, args.samples))
