"""pipeline-service: leads routed in and advanced by a goal, through RabbitMQ, against a bare floor.

Measures (1) LeadRouted + LeadAssigned for N leads (each: position, stage history, 2 tasks, 3 outbox events),
(2) N ActivityLogged(meeting) meeting the first stage's goal (each: advance, 2 tasks skipped, 2 created,
5 outbox events), both end to end from the broker to the committed state. Baseline, same run: N bare
transactions doing what every handler does at least (inbox row + locked update of the lead's row).

Run: `.venv/bin/python bench/pipeline_flow.py [--leads 200]` (needs the local PostgreSQL and RabbitMQ).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services/pipeline-service/tests"))

from pipeline_testkit import MONDAY_9AM, Pipe, activity, assigned, build_app, new_lead, routed  # noqa: E402

from pipeline_service.adapters.orm import positions  # noqa: E402
from salesflow_shared.bus import RabbitBus  # noqa: E402
from salesflow_shared.clock import ManualClock  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import utcnow  # noqa: E402
from salesflow_shared.infra_tables import inbox_table  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, eventually, running_app  # noqa: E402


async def in_stage(pipe: Pipe, stage_id: str) -> int:
    async with pipe.context.database.session() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(positions)
                                      .where(positions.c.stage_id == stage_id))).scalar_one()


async def wait_for(pipe: Pipe, stage_id: str, n: int) -> None:
    async def reached() -> None:
        assert await in_stage(pipe, stage_id) >= n

    await eventually(reached, timeout=3600, interval=0.02)


async def floor(pipe: Pipe, leads: list[str]) -> float:
    started = time.perf_counter()

    async def one(lead: str) -> None:
        async with pipe.context.database.session() as session, session.begin():
            await session.execute(sa.insert(inbox_table).values(handler="bench", event_id=str(uuid.uuid4()),
                                                                event_type="Bench", processed_at=utcnow()))
            await session.execute(sa.select(positions.c.lead_id).where(positions.c.lead_id == lead).with_for_update())
            await session.execute(sa.update(positions).where(positions.c.lead_id == lead).values(updated_at=utcnow()))
    for i in range(0, len(leads), 32):  # the consumer's prefetch
        await asyncio.gather(*(one(lead) for lead in leads[i:i + 32]))
    return time.perf_counter() - started


async def main(n: int) -> None:
    url = f"{POSTGRES_URL}/sft_bench_pipeline_{uuid.uuid4().hex[:8]}"
    namespace = f"b{uuid.uuid4().hex[:8]}."
    await ensure_postgres_database(url)
    clock = ManualClock(MONDAY_9AM)
    app = build_app(url, AMQP_URL, namespace, clock, db_pool_size=5)
    feeder = RabbitBus(AMQP_URL, namespace=namespace, client_name="bench-feeder")
    await feeder.start()
    try:
        async with running_app(app) as client:
            pipe = Pipe(client=client, context=app.state.context, clock=clock, feeder=feeder)
            pipeline = await pipe.instantiate("inbound-web-form")
            first, second = (s["id"] for s in pipeline["stages"][:2])
            leads = [new_lead() for _ in range(n)]
            started = time.perf_counter()
            for lead in leads:
                await pipe.send(pipe.envelope(assigned(lead, "rep-1"), lead))
                await pipe.send(pipe.envelope(routed(lead, pipeline["id"]), lead))
            await wait_for(pipe, first, n)
            routed_s = time.perf_counter() - started
            started = time.perf_counter()
            for lead in leads:
                await pipe.send(pipe.envelope(activity(lead, "meeting", clock.now()), lead))
            await wait_for(pipe, second, n)
            advanced_s = time.perf_counter() - started
            floor_s = await floor(pipe, leads)
    finally:
        await feeder.close()
        await delete_namespace(AMQP_URL, namespace)
        await drop_postgres_database(url)
    print(f"routed in: {2 * n} events in {routed_s:.2f} s = {2 * n / routed_s:.0f} events/s")
    print(f"goal met → advance: {n} events in {advanced_s:.2f} s = {n / advanced_s:.0f} events/s")
    print(f"baseline (inbox row + locked update, prefetch-sized batches): {n / floor_s:.0f} transactions/s; "
          f"advance/baseline = {(n / advanced_s) / (n / floor_s):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=200)
    asyncio.run(main(parser.parse_args().leads))
