"""pipeline-service's own CPU per lead for the five deliveries of an inbound lead, handed one at a time to the
dispatcher's batch path (as the bus hands them at 2 leads/s), on PostgreSQL, in this process (no broker: the
relay publishes to the in-process bus).

Each lead: LeadCreated, ActivityLogged (a note: no goal met), LeadRouted naming the owner (version 1), the
LeadAssigned of the same decision (version 2) and LeadUpdated, into the inbound-web-form template's pipeline
(its first stage: a visit, two tasks, StageAdvanced and two TaskCreated). Printed per lead: the process's CPU
time (user + system) and the SQL statements sent; with `--calls`, the Python function calls instead (cProfile:
deterministic, unlike CPU time on a shared machine). Baseline, same run: the same five deliveries as bare
transactions (an inbox row, the lead's row locked and updated), through the service's own database and session.

Run: `.venv/bin/python bench/pipeline_deliveries.py [--leads 300] [--rounds 2] [--calls]`
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services/pipeline-service/tests"))

from pipeline_testkit import (  # noqa: E402
    MONDAY_9AM,
    Pipe,
    activity,
    assigned,
    build_app,
    lead_created,
    lead_updated,
    new_lead,
    routed,
)

from pipeline_service.adapters.orm import positions  # noqa: E402
from salesflow_shared.clock import ManualClock  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import Envelope, utcnow  # noqa: E402
from salesflow_shared.infra_tables import inbox_table  # noqa: E402
from salesflow_shared.testing import POSTGRES_URL, running_app  # noqa: E402

DELIVERIES_PER_LEAD = 5


async def lead_deliveries(pipe: Pipe, pipeline_id: str) -> None:
    """One lead's five deliveries, each a batch of one."""
    lead = new_lead()
    owner = routed(lead, pipeline_id).model_copy(update={"owner_id": "rep-1", "owner_timezone": "Europe/Paris"})
    for envelope in (pipe.envelope(lead_created(lead, country="FR"), lead),
                     pipe.envelope(activity(lead, "note", pipe.clock.now()), lead),
                     pipe.envelope(owner, lead, version=1),
                     pipe.envelope(assigned(lead, "rep-1"), lead, version=2),
                     pipe.envelope(lead_updated(lead, ["country"], country="DE"), lead)):
        await deliver(pipe, envelope)


async def deliver(pipe: Pipe, envelope: Envelope) -> None:
    await pipe.context.dispatcher.handle_batch([(envelope.to_json(), {})])


_KEY = (positions.c.org_id == "bench") & (positions.c.lead_id == sa.bindparam("lead_id_"))
_BARE = (sa.insert(inbox_table), sa.select(positions.c.lead_id).where(_KEY).with_for_update(),
         sa.update(positions).where(_KEY).values(updated_at=sa.bindparam("now")))  # built once, as the service's


async def bare_deliveries(pipe: Pipe, _pipeline_id: str) -> None:
    """The baseline: each delivery an inbox row and the lead's row locked and written, in one transaction."""
    lead = new_lead()
    claim, lock, write = _BARE
    async with pipe.context.database.session() as session, session.begin():
        await session.execute(sa.insert(positions).values(org_id="bench", lead_id=lead, lead={}, updated_at=utcnow()))
    for _ in range(DELIVERIES_PER_LEAD):
        async with pipe.context.database.session() as session, session.begin():
            await session.execute(claim, {"handler": "bench", "event_id": str(uuid.uuid4()), "event_type": "Bench",
                                          "processed_at": utcnow()})
            await session.execute(lock, {"lead_id_": lead})
            await session.execute(write, {"lead_id_": lead, "now": utcnow()})


async def measure(pipe: Pipe, pipeline_id: str, flow: Callable[[Pipe, str], Awaitable[None]], leads: int,
                  calls: bool) -> str:
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    engine = pipe.context.database.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", count)
    profile = cProfile.Profile() if calls else None
    cpu = time.process_time()
    if profile is not None:
        profile.enable()
    for _ in range(leads):
        await flow(pipe, pipeline_id)
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - cpu
    sa.event.remove(engine, "before_cursor_execute", count)
    # (the relay's statements, on its own schedule, are counted too)
    statements_per_delivery = f"{statements[0] / leads / DELIVERIES_PER_LEAD:.1f} statements per delivery"
    if profile is not None:
        return f"{pstats.Stats(profile).total_calls / leads:,.0f} Python calls, {statements_per_delivery}"
    return f"{1000 * cpu / leads:.2f} ms CPU, {statements_per_delivery}"


async def main(leads: int, rounds: int, calls: bool) -> None:
    url = f"{POSTGRES_URL}/bench_pipeline_{uuid.uuid4().hex[:8]}"
    await ensure_postgres_database(url)
    try:
        clock = ManualClock(MONDAY_9AM)
        app = build_app(url, "", "", clock)
        async with running_app(app) as client:
            pipe = Pipe(client=client, context=app.state.context, clock=clock, feeder=None)
            pipeline_id = (await pipe.instantiate("inbound-web-form"))["id"]
            for flow in (lead_deliveries, bare_deliveries):  # warm both (statement caches, pools)
                for _ in range(30):
                    await flow(pipe, pipeline_id)
            for n in range(rounds):
                project = await measure(pipe, pipeline_id, lead_deliveries, leads, calls)
                bare = await measure(pipe, pipeline_id, bare_deliveries, leads, calls)
                print(f"round {n + 1}, per lead ({leads} leads): pipeline-service {project}; bare {bare}", flush=True)
    finally:
        await drop_postgres_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", action="store_true", help="count Python calls (cProfile) instead of CPU time")
    args = parser.parse_args()
    asyncio.run(main(args.leads, args.rounds, args.calls))
