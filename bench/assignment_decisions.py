"""assignment-service: round-robin decisions per second on PostgreSQL, one replica vs two, against the floor
set by the rotation row lock alone.

Every decision locks its team's rotation row (and the candidates' rep rows) until commit, so decisions on one
team are serialised across replicas; this shows what that costs. Each decision: inbox row, lead projection,
rule evaluation, rotation + rep locks, open-lead counts, the stored explanation, LeadRouted + LeadAssigned in
the outbox. Baseline: transactions that only lock and bump the same kind of rotation row.

Run: `.venv/bin/python bench/assignment_decisions.py [--leads 1000] [--concurrency 16]`
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "assignment-service" / "tests"))

from assignment_testkit import add_reps, add_team, assignment_app, fallback, lead_created, owners, publish_rules  # noqa: E402

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.testing import POSTGRES_URL  # noqa: E402


async def dispatch_all(apps, envelopes, concurrency: int) -> float:
    queue: asyncio.Queue = asyncio.Queue()
    for e in envelopes:
        queue.put_nowait(e)

    async def worker(app) -> None:
        while not queue.empty():
            await app.state.context.dispatcher.dispatch(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker(app) for app in apps for _ in range(concurrency)))
    return time.perf_counter() - started


async def lock_floor(url: str, transactions: int, concurrency: int) -> float:
    engines = [sa.ext.asyncio.create_async_engine(url, pool_size=concurrency) for _ in range(2)]
    async with engines[0].begin() as conn:
        await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS bench_rotation (key text primary key, position bigint)"))
        await conn.execute(sa.text("INSERT INTO bench_rotation VALUES ('k', 0) ON CONFLICT DO NOTHING"))
    remaining = [transactions]

    async def worker(engine) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            async with engine.begin() as conn:
                await conn.execute(sa.text("SELECT position FROM bench_rotation WHERE key = 'k' FOR UPDATE"))
                await conn.execute(sa.text("UPDATE bench_rotation SET position = position + 1 WHERE key = 'k'"))

    started = time.perf_counter()
    await asyncio.gather(*(worker(e) for e in engines for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    for engine in engines:
        await engine.dispose()
    return elapsed


async def main(leads: int, concurrency: int) -> None:
    url = f"{POSTGRES_URL.rstrip('/')}/sfbench_assignment_{uuid.uuid4().hex[:8]}"
    await ensure_postgres_database(url)
    try:
        async with assignment_app(url, log_level="ERROR") as (app_a, client), \
                assignment_app(url, log_level="ERROR", migrate_on_start=False) as (app_b, _):
            reps = [f"rep-{i}" for i in range(7)]
            await add_reps(client, reps)
            await publish_rules(client, [fallback(await add_team(client, "Seven", reps))])
            one = await dispatch_all([app_a], [lead_created(f"one-{i}") for i in range(leads)], concurrency)
            two = await dispatch_all([app_a, app_b], [lead_created(f"two-{i}") for i in range(leads)], concurrency)
            counts = Counter(v for k, v in (await owners(app_a)).items())
        floor = await lock_floor(url, leads, concurrency)
    finally:
        await drop_postgres_database(url)
    print(f"round-robin decisions, {leads} leads, {concurrency} concurrent handlers per replica:")
    print(f"  1 replica : {leads / one:8.0f} decisions/s")
    print(f"  2 replicas: {leads / two:8.0f} decisions/s   (counts per rep {sorted(counts.values())})")
    print(f"  baseline  : {leads / floor:8.0f} lock-and-bump transactions/s on one rotation row, 2 engines")
    print(f"  ratio 2 replicas / baseline: {floor / two:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.leads, args.concurrency))
