"""CPU per delivery of the event backbone alone, against the floor's per-delivery work, in one run.

The backbone is the shared code every service runs a delivery through: consume (aio-pika), parse the envelope,
inbox claim, the handler's unit of work, outbox insert, commit, relay claim / confirmed publish / mark, ack.
Here it runs in one process as a one-handler service (`ServiceContext`, production settings, full mode) whose
handler does what the floor's does: one UPDATE of the lead's state row, and the next event of the chain
published through the unit of work. Each lead is a chain of `--deliveries` such deliveries.
The floor is bench/floor.py's worker (raw asyncpg with prepared statements, raw aio-pika: inbox insert, state
update, outbox insert in one transaction, confirmed publish, ack), one worker, in a process of its own.

Each side runs in a child process of its own; this process offers the leads' first messages open-loop at
`--rate` leads/s (its own CPU is not counted) and reads the child's CPU and that of the child's PostgreSQL
backends from /proc. The backbone runs twice: consuming one by one (pipeline, assignment, notification) and in
batches with one batch in hand (lead, incentive). Printed per side: CPU µs per delivery (process, of which
user time: the Python side, less shaken by a loaded machine than the system time of the socket calls; PostgreSQL),
statements and commits per delivery (the backbone's own counters), and the ratio to the floor.

Run: `.venv/bin/python bench/backbone.py [--leads 100] [--deliveries 10] [--rate 10] [--repeat 1]`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import aio_pika  # noqa: E402
import asyncpg  # noqa: E402
import floor  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from e2e_latency import cpu_seconds  # noqa: E402

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import Envelope, LeadErasedV1, make_event  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace  # noqa: E402

PLAIN_POSTGRES = POSTGRES_URL.replace("+asyncpg", "")
SERVICE = "test"  # (the queue names `delete_namespace` knows)
MODES = ("floor", "backbone", "backbone-batched")


# ---------------------------------------------------------------- the child processes

async def wait_for(leads: int, done: asyncio.Queue[str]) -> dict[str, Any]:
    """Between "go" and the last lead's last delivery (+ a moment for its commit and ack): this process's CPU."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu, started = os.times(), time.perf_counter()
    print("going", flush=True)
    for _ in range(leads):
        await done.get()
    await asyncio.sleep(0.3)
    used = os.times()
    return {"user_s": used.user - cpu.user, "system_s": used.system - cpu.system,
            "seconds": time.perf_counter() - started}


async def report(result: dict[str, Any]) -> None:
    """Tell the driver, and keep the database connections open until it has read their backends' CPU."""
    print("done " + json.dumps(result), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run_floor(args: argparse.Namespace) -> None:
    pool = await asyncpg.create_pool(args.database_url, min_size=2, max_size=3)
    async with pool.acquire() as conn:
        await conn.execute(floor.DDL)
        await conn.executemany("INSERT INTO lead_state (lead_id, hops) VALUES ($1, 0)", [(i,) for i in args.lead_ids])
    connection = await aio_pika.connect(args.amqp_url)
    done: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(floor.worker(0, 1, pool, connection, args.namespace, done))
    await asyncio.sleep(1)  # declared and consuming
    print("ready", flush=True)
    try:
        await report(await wait_for(len(args.lead_ids), done))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await connection.close()
        await pool.close()


lead_state = sa.Table("lead_state", sa.MetaData(), sa.Column("lead_id", sa.Text, primary_key=True),
                      sa.Column("hops", sa.Integer, nullable=False))
BUMP = sa.update(lead_state).where(lead_state.c.lead_id == sa.bindparam("lead")).values(hops=lead_state.c.hops + 1)


async def run_backbone(args: argparse.Namespace, batched: bool) -> None:
    from salesflow_shared.app import ServiceContext, ServiceDefinition
    from salesflow_shared.infra_tables import INFRA_METADATA
    from salesflow_shared.logging import configure_logging
    from salesflow_shared.settings import ServiceSettings
    from salesflow_shared.tracing import configure_tracing
    from salesflow_shared.uow import UnitOfWork

    settings = ServiceSettings(database_url=args.database_url.replace("postgresql://", "postgresql+asyncpg://"),
                               amqp_url=args.amqp_url, bus_namespace=args.namespace, migrate_on_start=False,
                               service_name=SERVICE, db_pool_size=3)
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing(settings.tracing_exporter, settings.tracing_endpoint, settings.tracing_sample_ratio)
    done: asyncio.Queue[str] = asyncio.Queue()

    async def next_hop(data: LeadErasedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        """The floor's handler: the lead's state row bumped, the next event of the chain (subject_version says
        how many deliveries are left, this one included) published through the unit of work."""
        await uow.session.execute(BUMP, {"lead": data.lead_id})
        if envelope.subject_version > 1:
            uow.publish(data, org_id=envelope.org_id, subject_id=data.lead_id,
                        subject_version=envelope.subject_version - 1)
        else:
            done.put_nowait(data.lead_id)

    definition = ServiceDefinition(name=SERVICE, settings=settings, routers=[], migrations_path=Path("unused"),
                                   event_handlers={LeadErasedV1.event_type: [next_hop]}, consume_in_batches=batched,
                                   max_batches_in_flight=1 if batched else None)
    context = ServiceContext(definition, None)
    async with context.database.engine.begin() as conn:
        await conn.run_sync(INFRA_METADATA.create_all)
        await conn.run_sync(lead_state.metadata.create_all)
        await conn.execute(sa.insert(lead_state), [{"lead_id": i, "hops": 0} for i in args.lead_ids])
    await context.start()
    print("ready", flush=True)
    try:
        def counted() -> dict[str, float]:
            return {name: context.metrics.registry.get_sample_value(f"salesflow_db_{name}_total") or 0.0
                    for name in ("statements", "commits")}

        before = counted()
        measured = await wait_for(len(args.lead_ids), done)
        await report(measured | {name: value - before[name] for name, value in counted().items()})
    finally:
        await context.stop()


def child(args: argparse.Namespace) -> None:
    args.lead_ids = [line.strip() for line in sys.stdin.readline().split(",")]
    runner = run_floor(args) if args.child == "floor" else run_backbone(args, args.child == "backbone-batched")
    asyncio.run(runner)


# ---------------------------------------------------------------- the driver

async def backends(database: str) -> list[int]:
    conn = await asyncpg.connect(f"{PLAIN_POSTGRES}/postgres")
    try:
        return [r["pid"] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)]
    finally:
        await conn.close()


async def offer(mode: str, namespace: str, lead_ids: list[str], deliveries: int, rate: float) -> None:
    """Each lead's first message, open-loop at `rate` per second, as its producer's relay would publish it."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        if mode == "floor":
            exchange = await channel.declare_exchange(f"{namespace}floor", aio_pika.ExchangeType.DIRECT, durable=True)
        else:
            exchange = await channel.declare_exchange(f"{namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                      durable=True)
        started = time.perf_counter()
        for i, lead_id in enumerate(lead_ids):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if mode == "floor":
                body, key = json.dumps({"id": str(uuid.uuid4()), "lead_id": lead_id, "left": deliveries}), "0"
            else:
                envelope = make_event(LeadErasedV1(lead_id=lead_id), org_id="org-bench", subject_id=lead_id,
                                      subject_version=deliveries)
                body, key = envelope.model_dump_json(), LeadErasedV1.event_type
            await exchange.publish(aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                                    content_type="application/json"), routing_key=key)
    finally:
        await connection.close()


async def measure(mode: str, args: argparse.Namespace) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    database = f"sfbench_backbone_{tag}"
    url = f"{PLAIN_POSTGRES}/{database}"
    namespace = f"bb{tag}."
    lead_ids = [str(uuid.uuid4()) for _ in range(args.leads)]
    await ensure_postgres_database(url)
    # ASYNC220 allowed: the child runs beside the loop, which talks to it only through pipes read in a thread
    process = subprocess.Popen([sys.executable, __file__, "--child", mode, "--database-url", url,  # noqa: ASYNC220
                                "--namespace", namespace], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdin is not None and process.stdout is not None
        tell(process, ",".join(lead_ids))
        await expect(process, "ready")
        profiler = None if args.profile is None else subprocess.Popen(  # noqa: ASYNC220 (stopped below)
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(process.pid), "--format", "raw",
             "--rate", "200", "--nonblocking", "-o", str(args.profile / f"{mode}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids = await backends(database)
        before = {pid: cpu_seconds(pid) for pid in pids}
        tell(process, "go")
        await expect(process, "going")
        await offer(mode, namespace, lead_ids, args.deliveries, args.rate)
        line = await expect(process, "done")
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await asyncio.to_thread(profiler.wait, 60)
        after = {pid: cpu_seconds(pid) for pid in await backends(database)}
        tell(process, "exit")
        await asyncio.to_thread(process.wait, 60)
    finally:
        await clean_up(process, mode, url, namespace)
    result = json.loads(line.removeprefix("done "))
    n = args.leads * args.deliveries
    if mode == "floor":  # per delivery: inbox, state, outbox (not on a lead's last), in one transaction
        result |= {"statements": 3 * n - args.leads, "commits": n}
    postgresql = sum(max(after.get(pid, 0.0) - before.get(pid, 0.0), 0.0) for pid in after)
    return {"process_us": 1e6 * (result["user_s"] + result["system_s"]) / n, "user_us": 1e6 * result["user_s"] / n,
            "postgresql_us": 1e6 * postgresql / n,
            "statements": result["statements"] / n, "commits": result["commits"] / n, "seconds": result["seconds"]}


def tell(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


async def clean_up(process: subprocess.Popen[str], mode: str, url: str, namespace: str) -> None:
    if process.poll() is None:
        process.kill()
    await drop_postgres_database(url)
    await delete_namespace(AMQP_URL, namespace)
    if mode == "floor":
        await delete_floor_queue(namespace)


async def expect(process: subprocess.Popen[str], word: str) -> str:
    """The child's next line that starts with `word` (its log lines go to the same output and are skipped)."""
    assert process.stdout is not None
    while True:
        line = await asyncio.to_thread(process.stdout.readline)
        if not line:
            raise RuntimeError(f"the child ended before saying {word!r}")
        if line.startswith(word):
            return line


async def delete_floor_queue(namespace: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(f"{namespace}floor.0")
        await channel.exchange_delete(f"{namespace}floor")
    finally:
        await connection.close()


def driver(args: argparse.Namespace) -> None:
    print(f"bench/backbone: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.leads} leads x "
          f"{args.deliveries} deliveries at {args.rate:g} leads/s")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes}
    for _ in range(args.repeat):
        for mode in args.modes:  # interleaved: a change in the machine's load touches every side alike
            results[mode].append(asyncio.run(measure(mode, args)))
    print(f"{'':18} {'process µs/delivery':>20} {'(user)':>7} {'PostgreSQL µs':>14} {'statements':>11} "
          f"{'commits':>8}  ratio to floor (user)")
    best = {mode: min(runs, key=lambda r: r["process_us"]) for mode, runs in results.items()}
    for mode, runs in results.items():
        r = best[mode]
        ratio = f"{r['process_us'] / best['floor']['process_us']:.2f}x " \
                f"({r['user_us'] / best['floor']['user_us']:.2f}x)" if "floor" in best else ""
        every = " / ".join(f"{run['process_us']:.0f} ({run['user_us']:.0f})" for run in runs)
        print(f"  {mode:16} {r['process_us']:20.0f} {r['user_us']:7.0f} {r['postgresql_us']:14.0f} "
              f"{r['statements']:11.2f} {r['commits']:8.2f}  {ratio}   (each run: {every}; {r['seconds']:.1f} s)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100)
    parser.add_argument("--deliveries", type=int, default=10, help="deliveries per lead (a chain)")
    parser.add_argument("--rate", type=float, default=10.0, help="leads offered per second")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side (the best one is printed)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--profile", type=Path, help="a folder: py-spy's raw stacks of each side's process")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--amqp-url", default=AMQP_URL, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
