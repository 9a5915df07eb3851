"""Server CPU per request of intake and the common reads, each against a bare FastAPI + asyncpg app doing the
same database work, measured in the same run (issue 21: ≤ 3× the bare app's).

Starts lead-service, pipeline-service and metrics-service (one uvicorn process each, PostgreSQL + RabbitMQ, each
on a broker namespace of its own so none consumes another's events) and `baseline_app.py` (one uvicorn
process). Seeds each service through its own API and events, then measures, one endpoint at a time, the CPU
time (user + system, /proc) of the process that answers, divided by the requests answered:

  api-intake   POST /v1/leads (lead-service)                          vs  bare: insert the lead row
  api-intake-same-work  POST /v1/leads again                         vs  bare: the same writes and publish
  form-intake  POST /v1/forms/{id}/submissions, signed (lead-service) vs  bare: insert the lead row
  lead-list    GET /v1/leads?limit=50 (lead-service)                  vs  bare: the same statements
  position     GET /v1/positions/{lead_id} (pipeline-service)         vs  bare: the same statements
  funnel       GET /v1/reports/funnel?from&to (metrics-service)       vs  bare: the same statements

"The same statements" are captured from the service's own read code (SQLAlchemy's before_cursor_execute, with
their parameters) and replayed by the bare app with asyncpg in one transaction, answering the rows as JSON:
the database work is identical, what differs is everything the service does around it. `api-intake-same-work`
does the same for the API intake's writes (captured from lead-service's own `enter_lead` and commit, on a
database of their own; each identifier and the email made new per request), followed by the publish of its
event with a confirm: how far the intake is from the same database and broker work done bare. Every event
either side publishes is routed (a sink queue holding nothing is bound to each namespace), as in a deployment.
Two interleaved rounds per endpoint; the lower CPU per request of each side is compared.

Run: `.venv/bin/python bench/intake/request_cpu.py [--requests 1000] [--concurrency 16]`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (HERE, ROOT / "services" / "lead-service", ROOT / "services" / "pipeline-service",
              ROOT / "services" / "metrics-service", ROOT / "services" / "metrics-service" / "tests"):
    sys.path.insert(0, str(extra))

from metrics_testkit import Q1, build_history, other_org_history  # noqa: E402
from run import Request, drive_requests, free_port, start, wait_ready  # noqa: E402
from sqlalchemy import event  # noqa: E402

from lead_service.bootstrap import MIGRATIONS as LEAD_MIGRATIONS  # noqa: E402
from lead_service.domain.lead import LeadIn  # noqa: E402
from lead_service.service_layer.entry import enter_lead  # noqa: E402
from lead_service.service_layer.ingest import load_org_setup  # noqa: E402
from lead_service.service_layer.timeline import record_own_events  # noqa: E402
from salesflow_shared.auth import Principal, mint_token  # noqa: E402
from salesflow_shared.bus import RabbitBus  # noqa: E402
from salesflow_shared.db import Database, drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import LeadAssignedV1, LeadCreatedV1, LeadRoutedV1, LeadSnapshot, make_event  # noqa: E402
from salesflow_shared.migrations import run_migrations  # noqa: E402
from salesflow_shared.settings import DEV_JWT_SECRET  # noqa: E402
from salesflow_shared.signatures import sign  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, publish_envelope  # noqa: E402
from salesflow_shared.uow import UnitOfWork, outbox_row  # noqa: E402

ORG = "bench-org"
METRICS_ORG = "org-x"  # metrics_testkit's history
FORM = {"name": "bench", "mapping": {"email": "contact.email", "name": "contact.full_name",
                                     "company": "company.name", "job": "contact.title"},
        "required": ["contact.email"], "defaults": {"product_line": "bench"}}

async def sink_events(namespace: str) -> None:
    """Route every event published in `namespace` to a queue that keeps none (as a deployment routes each to
    its consumers), so neither side's publishes come back unroutable. `delete_namespace` removes it."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(namespace + "salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(namespace + "test.events", durable=False, arguments={"x-max-length": 0})
        await queue.bind(exchange, routing_key="#")
    finally:
        await connection.close()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


Captured = list[tuple[str, Any, bool]]  # (SQL as sent to asyncpg, its parameters, executemany?)


async def capture(url: str, work: Callable[[UnitOfWork], Awaitable[Any]],
                  record_published: Any = None) -> Captured:
    """The statements the service's own code sends for one read or write (`record_published`: the service's
    commit hook, for a write)."""
    database = Database(url, pool_size=1)
    captured: Captured = []
    driver_fetch = asyncpg.Connection.fetch
    try:
        async with database.session() as session:  # connect first: the dialect's own first queries are not the read's
            await session.execute(__import__("sqlalchemy").text("SELECT 1"))

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            captured.append((statement, list(parameters) if many else tuple(parameters or ()), many))
        event.listen(database.engine.sync_engine, "before_cursor_execute", record)

        # Some reads run statements on the driver's connection directly (metrics-service's reports: their rows
        # without SQLAlchemy's result processing), which SQLAlchemy's event does not see: recorded here, in order.
        # SQLAlchemy's own statements go through prepared statements (and its BEGIN through `execute`), so nothing
        # is recorded twice.
        async def fetch_recorded(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            captured.append((query, tuple(args), False))
            return await driver_fetch(self, query, *args, **kwargs)
        asyncpg.Connection.fetch = fetch_recorded  # type: ignore[method-assign]
        async with UnitOfWork(database, "bench", record_published=record_published) as uow:
            await work(uow)
    finally:
        asyncpg.Connection.fetch = driver_fetch  # type: ignore[method-assign]
        await database.dispose()
    return captured



async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated endpoints to measure (default: all)")
    parser.add_argument("--pause", type=float, default=0,
                        help="seconds to wait before measuring (to attach a profiler to the printed pids)")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    namespaces = {name: f"bench{tag}{name}." for name in ("lead", "pipe", "metrics", "base")}
    urls = {name: f"{POSTGRES_URL.rstrip('/')}/sfbench_{name}_{tag}"
            for name in ("lead", "pipe", "metrics", "base", "writes")}
    for url in urls.values():
        await ensure_postgres_database(url)
    reads_file = Path(tempfile.mkdtemp()) / "reads.pickle"
    writes_file = reads_file.with_name("writes.pickle")
    ports = {name: free_port() for name in ("lead", "pipe", "metrics", "base")}
    common = {"SALESFLOW_AMQP_URL": AMQP_URL, "SALESFLOW_LOG_LEVEL": "WARNING", "SALESFLOW_ENVIRONMENT": "test"}
    processes = {
        name: start(["--factory", f"{module}.entrypoints.http:create_app", "--port", str(ports[name])],
                    {**common, "SALESFLOW_DATABASE_URL": urls[name], "SALESFLOW_BUS_NAMESPACE": namespaces[name]},
                    ROOT)
        for name, module in (("lead", "lead_service"), ("pipe", "pipeline_service"), ("metrics", "metrics_service"))}
    feeders: list[RabbitBus] = []
    try:
        for name in ("lead", "pipe", "metrics"):
            await wait_ready(f"http://127.0.0.1:{ports[name]}/readyz")
        admin = {"Authorization": "Bearer " + mint_token(DEV_JWT_SECRET, sub="bench", org=ORG, role="admin")}
        manager = {"Authorization": "Bearer " + mint_token(DEV_JWT_SECRET, sub="boss", org=METRICS_ORG,
                                                            role="manager")}
        lead_base, pipe_base, metrics_base = (f"http://127.0.0.1:{ports[n]}" for n in ("lead", "pipe", "metrics"))

        # ---- seed: a web form (lead-service), a routed lead with open tasks (pipeline-service), an event history
        # (metrics-service); the lead list fills with the intake rounds' leads
        async with httpx.AsyncClient(timeout=60) as client:
            form = (await client.post(f"{lead_base}/v1/forms", json=FORM, headers=admin)).json()
            pipeline = (await client.post(f"{pipe_base}/v1/pipelines/templates/inbound-web-form/instantiate",
                                          headers=admin)).json()
            feeder = RabbitBus(AMQP_URL, namespace=namespaces["pipe"], client_name="bench-feeder")
            await feeder.start()
            feeders.append(feeder)
            position_lead = str(uuid.uuid4())
            for data in (LeadCreatedV1(lead=LeadSnapshot(lead_id=position_lead, timezone="Europe/Paris")),
                         LeadAssignedV1(lead_id=position_lead, owner_id="rep-1", owner_name="Rep", reason="bench"),
                         LeadRoutedV1(lead_id=position_lead, pipeline_id=pipeline["id"], reason="bench")):
                await publish_envelope(feeder, make_event(data, org_id=ORG, subject_id=position_lead,
                                                          subject_version=1))
            metrics_feeder = RabbitBus(AMQP_URL, namespace=namespaces["metrics"], client_name="bench-feeder")
            await metrics_feeder.start()
            feeders.append(metrics_feeder)
            history = build_history().events + other_org_history().events
            for envelope in history:
                await publish_envelope(metrics_feeder, envelope)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                position = (await client.get(f"{pipe_base}/v1/positions/{position_lead}", headers=admin))
                conn = await asyncpg.connect(urls["metrics"].replace("+asyncpg", ""))
                try:
                    logged, pending = await conn.fetchrow(
                        "SELECT count(*), count(*) FILTER (WHERE NOT projected) FROM event_log")
                finally:
                    await conn.close()
                if position.status_code == 200 and len(position.json()["open_tasks"]) == 2 and \
                        logged == len(history) and pending == 0:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("the seed did not arrive in 120 s")

        await sink_events(namespaces["lead"])

        def api_body(i: int, email: str) -> dict[str, Any]:
            return {"contact": {"first_name": "Ada", "last_name": f"Person{i}", "email": email, "title": "CTO"},
                    "company": {"name": f"Firm {i % 500}"}, "country": "DE", "value": "1200.00", "currency": "EUR",
                    "source": "api"}

        def api_lead(run: str) -> Callable[[int], Request]:
            def make(i: int) -> Request:
                return "POST", f"{lead_base}/v1/leads", {**admin, "Content-Type": "application/json"}, \
                    json.dumps(api_body(i, f"p{i}.{run}@firm{i}.com")).encode()
            return make

        def bare_write(name: str) -> Callable[[str], Callable[[int], Request]]:
            return lambda run: lambda i: ("POST", f"http://127.0.0.1:{ports['base']}/write/{name}",
                                          {"Content-Type": "application/json"},
                                          json.dumps({"email": f"p{i}.{run}@firm{i}.com"}).encode())

        def form_submission(run: str) -> Callable[[int], Request]:
            def make(i: int) -> Request:
                body = json.dumps({"email": f"person{i}.{run}@company{i % 500}.com", "name": f"Person{i} Bench",
                                   "company": f"Company {i % 500}", "job": "Head of Operations"}).encode()
                return "POST", f"{lead_base}/v1/forms/{form['id']}/submissions", \
                    {"Content-Type": "application/json",
                     "Salesflow-Signature": sign(form["signing_secret"], body, int(time.time()))}, body
            return make

        def bare_insert(run: str) -> Callable[[int], Request]:
            def make(i: int) -> Request:
                body = json.dumps({"email": f"person{i}.{run}@company{i % 500}.com", "name": f"Person{i} Bench",
                                   "company": f"Company {i % 500}", "job": "Head of Operations"}).encode()
                return "POST", f"http://127.0.0.1:{ports['base']}/submit", {"Content-Type": "application/json"}, body
            return make

        def get(url: str, headers: dict[str, str] | None = None) -> Callable[[str], Callable[[int], Request]]:
            return lambda run: lambda i: ("GET", url, headers or {}, None)

        # ---- the bare app's reads: the statements each service's own read code sends, captured
        from lead_service.adapters.repository import leads as lead_repo
        from metrics_service.adapters import repository as metrics_repo
        from metrics_service.adapters.reports import Filters as ReportFilters
        from metrics_service.domain.periods import to_ts
        from metrics_service.service_layer.reports.funnel import funnel as funnel_rows
        from pipeline_service.service_layer.views import position_json

        async with httpx.AsyncClient(timeout=60) as client:
            for i in range(60):  # a page of leads in the list before its statements are captured
                method, url, headers, body = api_lead("seed")(i)
                assert (await client.request(method, url, headers=headers, content=body)).status_code == 201

        admin_principal = Principal(user_id="bench", org_id=ORG, role="admin")
        q_from, q_to = (datetime.fromisoformat(Q1[k].replace("Z", "+00:00")) for k in ("from", "to"))

        async def funnel(uow: UnitOfWork) -> Any:
            async with metrics_repo.report_reads(uow.session):
                return await funnel_rows(uow.session, ReportFilters(
                    org_id=METRICS_ORG, from_ts=to_ts(q_from), to_ts=to_ts(q_to), now=datetime.now(UTC)))

        captured = {
            "lead-list": (urls["lead"], await capture(urls["lead"], lambda uow: lead_repo.leads_page(
                uow.session, admin_principal, lead_repo.LeadFilter(), limit=50, cursor=None))),
            "position": (urls["pipe"], await capture(urls["pipe"], lambda uow: position_json(
                uow, admin_principal, position_lead, datetime.now(UTC)))),
            "funnel": (urls["metrics"], await capture(urls["metrics"], funnel)),
        }
        # The settings the service's connections run with (metrics-service: its reports' planner settings, set
        # once per connection), given to the bare app's connections for the same read: the same database work.
        connection_settings = {"funnel": dict(getattr(metrics_repo, "REPORT_SETTINGS", {}))}
        reads_file.write_bytes(pickle.dumps({name: (url.replace("+asyncpg", ""), statements,
                                                    connection_settings.get(name, {}))
                                             for name, (url, statements) in captured.items()}))

        # ---- the bare app's writes: what lead-service's own intake sends for one lead, on a database of its own
        captured_email = "p.captured@firmcaptured.com"
        await run_migrations(Database(urls["writes"]), LEAD_MIGRATIONS, "lead-service")
        setup_database = Database(urls["writes"], pool_size=1)
        async with setup_database.session() as session:
            intake_setup = await load_org_setup(session, ORG, enrichment_provider=False)
        await setup_database.dispose()
        published: list[Any] = []

        async def intake(uow: UnitOfWork) -> None:
            await enter_lead(uow, ORG, LeadIn.model_validate(api_body(0, captured_email)), intake_setup,
                             rep_id=None, now=uow.clock.now())
            await uow.commit()
            published.extend(uow.published)

        intake_writes = await capture(urls["writes"], intake, record_own_events)
        assert len(published) == 1, published
        row = outbox_row(published[0], None)
        writes_file.write_bytes(pickle.dumps({"api-intake": {
            "dsn": urls["writes"].replace("+asyncpg", ""), "statements": intake_writes, "email": captured_email,
            "exchange": namespaces["base"] + "salesflow.events",
            "message": {"body": row["payload"], "event_id": row["event_id"], "event_type": row["event_type"],
                        "headers": row["headers"]}}}))
        await sink_events(namespaces["base"])
        processes["base"] = start(["baseline_app:app", "--port", str(ports["base"])],
                                  {"BASELINE_DATABASE_URL": urls["base"].replace("+asyncpg", ""),
                                   "BASELINE_READS_FILE": str(reads_file), "BASELINE_WRITES_FILE": str(writes_file),
                                   "BASELINE_AMQP_URL": AMQP_URL}, HERE)
        await wait_ready(f"http://127.0.0.1:{ports['base']}/healthz")
        bare = f"http://127.0.0.1:{ports['base']}"

        Maker = Callable[[str], Callable[[int], Request]]  # a run's name -> its i-th request
        endpoints: dict[str, tuple[str, Maker, Maker]] = {
            "api-intake": ("lead", api_lead, bare_insert),
            "api-intake-same-work": ("lead", api_lead, bare_write("api-intake")),
            "form-intake": ("lead", form_submission, bare_insert),
            "lead-list": ("lead", get(f"{lead_base}/v1/leads?limit=50", admin), get(f"{bare}/read/lead-list")),
            "position": ("pipe", get(f"{pipe_base}/v1/positions/{position_lead}", admin), get(f"{bare}/read/position")),
            "funnel": ("metrics", get(f"{metrics_base}/v1/reports/funnel?from={Q1['from']}&to={Q1['to']}", manager),
                       get(f"{bare}/read/funnel")),
        }
        wanted = [name for name in endpoints if not args.only or name in args.only.split(",")]
        print(f"pids: lead-service {processes['lead'].pid}, pipeline-service {processes['pipe'].pid}, "
              f"metrics-service {processes['metrics'].pid}, bare {processes['base'].pid}", flush=True)
        if args.pause:
            await asyncio.sleep(args.pause)
        load_at_start = load_average()
        results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name in wanted:
            service, service_request, bare_request = endpoints[name]
            await drive_requests(bare_request(f"{name}-wb"), args.warmup, args.concurrency, None)
            await drive_requests(service_request(f"{name}-ws"), args.warmup, args.concurrency, None)
            results[name] = {"service": [], "bare": []}
            for round_ in range(2):
                results[name]["bare"].append(await drive_requests(
                    bare_request(f"{name}-b{round_}"), args.requests, args.concurrency, processes["base"].pid))
                results[name]["service"].append(await drive_requests(
                    service_request(f"{name}-s{round_}"), args.requests, args.concurrency, processes[service].pid))

        print(f"bench/intake/request_cpu: {args.requests} requests x2 rounds per endpoint and side, concurrency "
              f"{args.concurrency}, one uvicorn process each, {os.cpu_count()} CPUs; load average {load_at_start} "
              f"at the start, {load_average()} at the end")
        print("  statements replayed by the bare app (as captured from the service's own code):")
        for name, statements in [*((n, st) for n, (_, st) in captured.items()), ("api-intake", intake_writes)]:
            print(f"    {name}: " + "; ".join(" ".join(sql.split())[:60] + "…" for sql, _, _ in statements))
        print(f"  {'endpoint':20} {'service CPU ms/req (rounds)':>30} {'bare CPU ms/req (rounds)':>27} "
              f"{'ratio':>6}   service req/s, p50")
        for name, sides in results.items():
            service_cpu = min(r["cpu_ms_per_lead"] for r in sides["service"])
            bare_cpu = min(r["cpu_ms_per_lead"] for r in sides["bare"])
            rounds = lambda runs: " / ".join(f"{r['cpu_ms_per_lead']:.2f}" for r in runs)  # noqa: E731
            best = min(sides["service"], key=lambda r: r["cpu_ms_per_lead"])
            print(f"  {name:20} {service_cpu:8.2f} ({rounds(sides['service']):>15}) {bare_cpu:8.2f} "
                  f"({rounds(sides['bare']):>13}) {service_cpu / max(bare_cpu, 1e-9):5.1f}x"
                  f"   {best['rate']:6.0f}/s {best['p50_ms']:6.1f} ms")
            for side, runs in sides.items():
                for r in runs:
                    if r["errors"] or r["accepted"] < args.requests:
                        print(f"    {side}: answered {r['accepted']}/{args.requests}, failures {r['errors']}")
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except Exception:  # noqa: BLE001 - a process that will not stop is killed
                process.kill()
        for feeder in feeders:
            await feeder.close()
        for namespace in namespaces.values():
            await delete_namespace(AMQP_URL, namespace)
        for url in urls.values():
            await drop_postgres_database(url)


if __name__ == "__main__":
    asyncio.run(main())
