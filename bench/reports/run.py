"""metrics-service reports at scale, and its ingest rate.

1. Generates realistic orgs (250 reps in 25 teams, 3 pipelines of 6 stages, leads over two years, about five
   timeline rows per lead: stage entries plus the outcome, a task per lead, daily activity counters per rep)
   and bulk-loads the read models with COPY, one org per size (default 100k, 300k and 1M leads) in one
   PostgreSQL database, like tenants sharing it.
2. Times every report through the HTTP app (ASGI, in process: routing, auth, SQL, JSON) for one quarter,
   p50 of --runs runs after a warm-up, per size, and prints how each time grows with the lead count.
3. Ingest: generated events (LeadCreated, LeadRouted, LeadAssigned, StageAdvanced ×~4, an activity, the
   outcome) are published to RabbitMQ while no consumer runs; metrics-service then starts as real processes
   (uvicorn, default settings) and drains the queue (batched consumer, inbox, event log; the projector into
   the read models and rollups), in three layouts (LAYOUTS): the consumer alone with nothing projecting (the
   baseline), consumer and projector in one process, and the projector in its own process as deployed. The
   rates are events/s from the first event logged until all are in the log and until all are in the read
   models. Also the projector alone over a logged backlog (batches of 1000 and 200, as the worker applies
   them), in the same database as the big orgs.

Run: `.venv/bin/python bench/reports/run.py [--sizes 100000,300000,1000000] [--runs 5] [--ingest 10000]`.
The event log is not bulk-loaded (the reports never read it); the read models are what the consumer builds,
and the rollups the projector keeps are computed from them after the COPY (rollups.all_fill_sql).
To iterate without the ~6 minute 1M load: `--keep` once, then `--reuse` (loads only the orgs missing from
the kept database; new migrations run on it, filling new rollups from the loaded read models; revision 0014
empties the read models to replay the log, so a database kept from before it must be loaded again), e.g.
`run.py --sizes 1000000 --ingest 0 --keep` then `run.py --sizes 1000000 --ingest 0 --reuse`.
`--reports coaching,stalled-deals` times only those reports. `--cpu` also gives each report's p50 CPU time (this
process and the database backends, read from /proc: PostgreSQL on this machine): on a machine shared with other
work the wall time mostly measures waiting for a core, the CPU time far less.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "metrics-service"))

from metrics_service.adapters import rollups  # noqa: E402
from metrics_service.config import Settings  # noqa: E402
from metrics_service.entrypoints.http import create_app  # noqa: E402
from salesflow_shared.clock import ManualClock  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import Envelope, make_event  # noqa: E402
from salesflow_shared.events import catalogue as ev  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, auth_headers, delete_namespace, eventually  # noqa: E402

DB_NAME = "salesflow_bench_metrics"
NOW = datetime(2026, 1, 15, tzinfo=UTC)
START = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
SPAN = datetime(2026, 1, 1, tzinfo=UTC).timestamp() - START
DAY = 86400.0
REPS = [(f"rep-{i:03d}", f"Rep {i}", f"team-{i // 10:02d}") for i in range(250)]
# account managers: a third of the won customers are handed over to one of them (the closer keeps the credit)
ACCOUNT_MANAGERS = [(f"am-{i}", f"Account manager {i}", "team-am") for i in range(5)]
PIPELINES = ["pl-a", "pl-b", "pl-c"]
PROBS = [Decimal(p) for p in ("0.05", "0.10", "0.20", "0.35", "0.60", "0.80")]
ASK_POSITION = 5
PRODUCT_LINES = ["saas", "services", "hardware", "support", "training"]
SOURCES = ["web", "referral", "event", "partner", "outbound", "ads"]
TERRITORIES = [f"terr-{i}" for i in range(8)]
Q = {"from": "2025-07-01T00:00:00Z", "to": "2025-10-01T00:00:00Z"}
REPORTS = [
    ("funnel", Q), ("win-rate", {**Q, "group_by": "rep"}), ("deal-size", Q), ("sales-cycle", Q),
    ("response-time", Q), ("conversion", {**Q, "group_by": "product_line"}), ("activities", Q),
    ("production", Q), ("forecast", {"period": "quarter", "group_by": "team"}),
    ("forecast-accuracy", {"scope": "rep"}), ("quota-attainment", {"period": "quarter", "date": "2025-08-01"}),
    ("adoption", Q), ("coaching", Q), ("stalled-deals", Q),
    ("leaderboard", {"period": "quarter", "date": "2025-08-01", "metric": "revenue"}),
    ("leaderboard", {"period": "quarter", "date": "2025-08-01", "metric": "activities"}),
    ("handovers", Q),
]


# the app's connections to the bench database (not the one asking)
BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def database_url() -> str:
    return f"{POSTGRES_URL.rstrip('/')}/{DB_NAME}"


# ------------------------------------------------------------------ data generation
def generate(org: str, n: int, seed: int):  # type: ignore[no-untyped-def]
    """Rows for m_leads, m_timeline and m_tasks of one org (tuples in column order)."""
    rng = random.Random(seed)
    leads, timeline, tasks = [], [], []
    seq = 0
    for i in range(n):
        lead_id = f"{org}-L{i:08d}"
        rep_id, _, team = REPS[rng.randrange(len(REPS))]
        pipeline = PIPELINES[rng.randrange(3)]
        created = START + (i + rng.random()) * SPAN / n  # leads arrive over time, as in production
        value = Decimal(rng.randrange(500, 50000))
        expected = date.fromtimestamp(created + rng.uniform(30, 120) * DAY)
        at = created + rng.random() * 3600
        entered = at
        stays = []
        position = 1
        while True:
            stays.append((position, at))
            if position == 6 or rng.random() > 0.78:
                break
            at += rng.expovariate(1 / (5 * DAY))
            position += 1
        end = at + rng.expovariate(1 / (6 * DAY))
        r = rng.random()
        if end > NOW.timestamp() or r < 0.12:
            outcome, closed = "open", None
        elif position >= 5 and r < 0.75 or r < 0.2:
            outcome, closed = "won", end
        elif r < 0.9:
            outcome, closed = "lost", end
        else:
            outcome, closed = "disqualified", end
        last_pos, last_at = stays[-1]
        status = "completed" if outcome != "open" or rng.random() < 0.6 else "open"
        due = last_at + 2 * DAY
        overdue = status == "open" and due < NOW.timestamp()
        tasks.append((org, f"{lead_id}-k", lead_id, f"{pipeline}-s{last_pos}", True, due, status, overdue))
        reasons = ["entry"] + ["goal_met" if rng.random() < 0.7 else "manual" for _ in stays[1:]]
        for k, (pos, t) in enumerate(stays):
            nxt = stays[k + 1] if k + 1 < len(stays) else None
            seq += 1
            timeline.append((f"{org}-{seq:012d}", org, lead_id, "stage", t, 1, pipeline, f"{pipeline}-s{pos}", pos,
                             pos == ASK_POSITION, PROBS[pos - 1], reasons[k],
                             None, None, nxt[1] if nxt else closed, "stage" if nxt else (outcome if closed else None),
                             nxt[0] if nxt else None, reasons[k + 1] if nxt else None, rep_id, team, pipeline, entered,
                             pos == last_pos and status == "completed"))
        if closed is not None:
            seq += 1
            timeline.append((f"{org}-{seq:012d}", org, lead_id, outcome, closed, 2, pipeline, None, None, False,
                             None, None, value if outcome == "won" else None, "USD" if outcome == "won" else None,
                             None, None, None, None, rep_id, team, pipeline, entered, False))
        ask = next((t for p, t in stays if p == ASK_POSITION), None)
        territory = TERRITORIES[rng.randrange(8)]
        owner, owner_team = rep_id, team  # now; credit stays with the rep who owned it (rep_id, team)
        if outcome == "won" and rng.random() < 0.33:
            owner, _, owner_team = ACCOUNT_MANAGERS[rng.randrange(len(ACCOUNT_MANAGERS))]
        first_activity = created + rng.expovariate(1 / (6 * 3600)) if rng.random() < 0.85 else None
        leads.append((org, lead_id, 1, "", True, created, PRODUCT_LINES[rng.randrange(5)], SOURCES[rng.randrange(6)],
                      value, "USD", datetime(expected.year, expected.month, expected.day, tzinfo=UTC).timestamp(),
                      1, "", pipeline, TERRITORIES[rng.randrange(8)], 1, "", owner, owner_team, None,
                      territory, pipeline, entered, 1, last_pos, ask, f"{pipeline}-s{last_pos}",
                      last_pos, last_at, PROBS[last_pos - 1], outcome, closed,
                      value if outcome == "won" else None, "USD" if outcome == "won" else None, 0, first_activity,
                      due if status == "open" else None, overdue, rep_id, team, territory, rep_id, team, territory))
    return leads, timeline, tasks


LEAD_COLUMNS = ["org_id", "lead_id", "snap_ver", "snap_tb", "is_created", "created_ts", "product_line", "source",
                "value", "currency", "expected_close_ts", "route_ver", "route_tb", "routed_pipeline_id",
                "routed_territory_id", "assign_ver", "assign_tb", "owner_id", "team_id", "assigned_territory_id",
                "territory_id", "pipeline_id", "pipeline_entered_ts", "first_position", "max_position",
                "ask_entered_ts", "current_stage_id", "current_position", "current_stage_entered_ts",
                "current_win_probability", "outcome", "closed_ts", "won_value", "won_currency", "reopen_count",
                "first_owner_activity_ts", "open_task_due_ts", "open_task_overdue", "credit_owner_id", "credit_team_id",
                "credit_territory_id", "first_owner_id", "first_team_id", "first_territory_id"]
TIMELINE_COLUMNS = ["event_id", "org_id", "lead_id", "kind", "at_ts", "rank", "pipeline_id", "stage_id", "position",
                    "is_ask", "win_probability", "reason", "value", "currency", "next_ts", "next_kind",
                    "next_position", "next_reason", "owner_id", "team_id", "lead_pipeline_id", "cohort_ts",
                    "tasks_done"]
TASK_COLUMNS = ["org_id", "task_id", "lead_id", "stage_id", "required", "due_ts", "status", "overdue"]


async def load_org(conn: asyncpg.Connection, org: str, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    leads, timeline, tasks = generate(org, n, seed=n)
    t1 = time.perf_counter()
    await conn.copy_records_to_table("m_leads", records=leads, columns=LEAD_COLUMNS)
    await conn.copy_records_to_table("m_timeline", records=timeline, columns=TIMELINE_COLUMNS)
    await conn.copy_records_to_table("m_tasks", records=tasks, columns=TASK_COLUMNS)
    rng = random.Random(n)
    days = range(int(START // DAY), int((START + SPAN) // DAY))
    scale = max(n / 100_000, 0.1)
    daily = [(org, rep, d, rng.randrange(int(6 * scale) + 1), rng.randrange(int(1800 * scale) + 1),
              rng.randrange(int(8 * scale) + 1), rng.randrange(int(10 * scale) + 1), rng.randrange(3),
              rng.randrange(2), rng.randrange(2), rng.randrange(3), rng.randrange(5), rng.randrange(5))
             for rep, _, _ in REPS for d in days]
    await conn.copy_records_to_table("m_rep_daily", records=daily, columns=[
        "org_id", "rep_id", "day", "calls", "talk_seconds", "emails_logged", "emails_sequence", "meetings", "demos",
        "proposals", "notes", "records_entered", "records_updated"])
    await conn.copy_records_to_table("m_reps", records=[(org, r, name, team, "")
                                                        for r, name, team in REPS + ACCOUNT_MANAGERS],
                                     columns=["org_id", "rep_id", "name", "team_id", "tb"])
    await conn.copy_records_to_table("m_stages", records=[
        (org, p, f"{p}-s{k}", f"Stage {k}", k, k == ASK_POSITION, PROBS[k - 1], "") for p in PIPELINES
        for k in range(1, 7)], columns=["org_id", "pipeline_id", "stage_id", "name", "position", "is_ask",
                                         "win_probability", "tb"])
    quota_rows = [(str(uuid.uuid4()), org, "rep", r, "quarter", date(2025, 7, 1), Decimal(200000), "USD", 1, NOW, NOW)
                  for r, _, _ in REPS]
    await conn.copy_records_to_table("quotas", records=quota_rows, columns=[
        "quota_id", "org_id", "scope", "scope_id", "period", "period_start", "amount", "currency", "version",
        "created_at", "updated_at"])
    t2 = time.perf_counter()
    # the rollups the projector keeps as events arrive, computed here from the loaded read models at once
    for statement in rollups.all_fill_sql(" AND org_id = $1"):
        await conn.execute(statement, org)
    return {"generate_s": t1 - t0, "copy_s": t2 - t1, "rollups_s": time.perf_counter() - t2,
            "timeline_rows": len(timeline)}


# ------------------------------------------------------------------ report timing
def backends_cpu_ms(pids: list[int]) -> float:
    """CPU time (user + system) the PostgreSQL backends with these process ids have used, in ms (the server runs
    on this machine: /proc/<pid>/stat; a backend that has gone counts 0). Resolution: one clock tick (10 ms)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


async def time_reports(app, client: httpx.AsyncClient, org: str, runs: int,  # type: ignore[no-untyped-def]
                       only: set[str] | None = None, cpu: dict[str, float] | None = None,
                       conn: asyncpg.Connection | None = None) -> dict[str, float]:
    """p50 ms of each report; with `cpu` (and `conn`, a connection to the database) also the p50 CPU ms each
    request cost, this process's plus the database backends' (what a busy machine inflates far less)."""
    headers = auth_headers(org, "manager", "bench")
    admin = auth_headers(org, "admin", "bench")
    for day in ("2025-07-01", "2025-10-01"):  # two closed-period snapshots for forecast accuracy
        # frozen on the periods' first day, as the worker does (a period that has ended is refused)
        app.state.context.clock = ManualClock(datetime.fromisoformat(day).replace(tzinfo=UTC))
        r = await client.post("/v1/forecasts/snapshots", json={"period": "quarter", "date": day}, headers=admin)
        app.state.context.clock = ManualClock(NOW)
        assert r.status_code == 201, r.text
    out = {}
    for path, params in REPORTS:
        if only and path not in only:
            continue
        samples, cpu_samples = [], []
        for i in range(runs + 1):
            if cpu is not None and conn is not None:
                pids = [r["pid"] for r in await conn.fetch(BACKENDS)]
                cpu_before = time.process_time() * 1000 + backends_cpu_ms(pids)
            t = time.perf_counter()
            r = await client.get(f"/v1/reports/{path}", params=params, headers=headers)
            elapsed = time.perf_counter() - t
            assert r.status_code == 200, (path, r.text)
            if i:
                samples.append(elapsed * 1000)
                if cpu is not None and conn is not None:
                    pids = [r["pid"] for r in await conn.fetch(BACKENDS)]
                    cpu_samples.append(time.process_time() * 1000 + backends_cpu_ms(pids) - cpu_before)
        name = f"{path}{'/' + params['metric'] if 'metric' in params else ''}"
        out[name] = statistics.median(samples)
        if cpu is not None and cpu_samples:
            cpu[name] = statistics.median(cpu_samples)
    return out


# ------------------------------------------------------------------ ingest
def ingest_events(org: str, leads: int) -> list[Envelope]:
    rng = random.Random(7)
    out: list[Envelope] = []
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(leads):
        lead_id = f"ing-{uuid.uuid4().hex[:12]}"
        rep_id, name, team = REPS[rng.randrange(len(REPS))]
        t = base + timedelta(minutes=i)
        snap = ev.LeadSnapshot(lead_id=lead_id, product_line="saas", source="web", value=Decimal(1000),
                               currency="USD", created_at=t)
        out.append(make_event(ev.LeadCreatedV1(lead=snap), org_id=org, subject_id=lead_id, occurred_at=t))
        out.append(make_event(ev.LeadRoutedV1(lead_id=lead_id, pipeline_id="pl-a", reason="r"), org_id=org,
                              subject_id=lead_id, occurred_at=t))
        out.append(make_event(ev.LeadAssignedV1(lead_id=lead_id, owner_id=rep_id, owner_name=name, team_id=team,
                                                reason="r"), org_id=org, subject_id=lead_id, subject_version=2,
                              occurred_at=t))
        for k in range(1, 2 + rng.randrange(4)):
            at = t + timedelta(days=k)
            out.append(make_event(ev.StageAdvancedV1(
                lead_id=lead_id, pipeline_id="pl-a", to_stage_id=f"pl-a-s{k}", to_stage_name=f"Stage {k}",
                to_stage_position=k, win_probability=PROBS[k - 1], reason="goal_met" if k > 1 else "entry",
                entered_at=at), org_id=org, subject_id=lead_id, subject_version=k, occurred_at=at))
        out.append(make_event(ev.ActivityLoggedV1(activity_id=str(uuid.uuid4()), lead_id=lead_id, kind="call",
                                                  rep_id=rep_id, occurred_at=t + timedelta(hours=2),
                                                  duration_seconds=300), org_id=org, subject_id=lead_id))
        out.append(make_event(ev.LeadWonV1(lead_id=lead_id, pipeline_id="pl-a", value=Decimal(900), currency="USD",
                                           won_at=t + timedelta(days=9)), org_id=org, subject_id=lead_id,
                              subject_version=9))
    return out


async def connect() -> asyncpg.Connection:
    for _ in range(60):  # the machine's PostgreSQL is shared; wait for a free connection slot
        try:
            return await asyncpg.connect(database_url().replace("postgresql+asyncpg", "postgresql"))
        except asyncpg.exceptions.TooManyConnectionsError:
            await asyncio.sleep(5)
    raise SystemExit("PostgreSQL has no free connection slot")


async def log_count(conn: asyncpg.Connection, org: str, projected: bool = False) -> int:
    sql = "SELECT count(*) FROM event_log WHERE org_id = $1" + (" AND projected" if projected else "")
    return int(await conn.fetchval(sql, org))


LAYOUTS = {
    # name: the SALESFLOW_PROJECTOR setting of each process started
    "log": ["separate"],  # the consumer alone, nothing projects: the baseline
    "one-process": ["in-process"],  # consumer and projector in one process (the default, embedded mode)
    "two-processes": ["separate", "only"],  # as deployed: the projector in its own process (deploy/)
}


def start_service(projector: str, namespace: str, port: int) -> subprocess.Popen[bytes]:
    """metrics-service as deployed: its own uvicorn process, configured by environment variables."""
    env = {**os.environ, "SALESFLOW_ENVIRONMENT": "test", "SALESFLOW_DATABASE_URL": database_url(),
           "SALESFLOW_AMQP_URL": AMQP_URL, "SALESFLOW_BUS_NAMESPACE": namespace, "SALESFLOW_LOG_LEVEL": "WARNING",
           "SALESFLOW_FORECAST_SNAPSHOT_INTERVAL_S": "0", "SALESFLOW_QUOTA_MILESTONE_INTERVAL_S": "0",
           "SALESFLOW_PROJECTOR": projector, "SALESFLOW_MIGRATE_ON_START": "false"}
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory",
                             "metrics_service.entrypoints.http:create_app", "--port", str(port),
                             "--log-level", "warning"], env=env, cwd=ROOT)


async def ingest_backlog(conn: asyncpg.Connection, events: list[Envelope], org: str, layout: str
                         ) -> tuple[float, float]:
    """events/s through RabbitMQ into the log, and into the read models. The events are published while no
    consumer runs; then the layout's processes start and drain the queue with their default settings. Rates
    are timed from the first event logged (process start-up is not ingest) to the last one logged and the last
    one projected."""
    import aio_pika

    namespace = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(environment="test", database_url=database_url(), amqp_url=AMQP_URL, bus_namespace=namespace,
                        log_level="WARNING", forecast_snapshot_interval_s=0, quota_milestone_interval_s=0,
                        projector="separate")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        app = create_app(settings, clock=ManualClock(NOW))
        async with app.router.lifespan_context(app):
            pass  # declares the queues
        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(f"{namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        bodies = [(e.type, e.to_json()) for e in events]
        for i in range(0, len(bodies), 500):
            await asyncio.gather(*[exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=kind)
                                   for kind, body in bodies[i:i + 500]])
        await connection.close()
        processes = [start_service(role, namespace, 18105 + k) for k, role in enumerate(LAYOUTS[layout])]
        async def logged_count(*, projected: bool = False, at_least: int = 1) -> int:
            count = await log_count(conn, org, projected=projected)
            assert count >= at_least
            return count

        first = await eventually(logged_count, timeout=600, interval=0.01)
        started = time.perf_counter()
        await eventually(lambda: logged_count(at_least=len(events)), timeout=3600, interval=0.02)
        logged = time.perf_counter() - started
        if layout != "log":
            await eventually(lambda: logged_count(projected=True, at_least=len(events)), timeout=3600, interval=0.02)
        projected = time.perf_counter() - started
        return (len(events) - first) / logged, (len(events) - first) / projected
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        await delete_namespace(AMQP_URL, namespace)


async def project_alone(events: list[Envelope], batch_size: int) -> float:
    """events/s of the projector alone: the events written to the log first (as the consumer does), then
    applied in arrival order in batches, as the projector worker does with a backlog."""
    from metrics_service.service_layer.projections import record_many
    from metrics_service.service_layer.projector import project_all
    from salesflow_shared.db import Database

    database = Database(database_url(), pool_size=2)
    try:
        async with database.session() as session:
            for i in range(0, len(events), 200):
                await record_many(session, events[i:i + 200], datetime.now(UTC))
            await session.commit()
        started = time.perf_counter()
        await project_all(database, batch_size)
        return len(events) / (time.perf_counter() - started)
    finally:
        await database.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ingest", type=int, default=1500, help="leads whose events are ingested (~9 each)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database: load only missing orgs")
    parser.add_argument("--reports", default="", help="time only these reports (comma-separated paths, "
                        "e.g. coaching,stalled-deals,funnel); default all")
    parser.add_argument("--cpu", action="store_true", help="also the p50 CPU ms per report: this process's and "
                        "the PostgreSQL backends' (/proc, a local server), which a loaded machine inflates far "
                        "less than the wall time")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    for _attempt in range(60):  # the machine's PostgreSQL is shared; wait for a free connection slot
        try:
            if not args.reuse:
                await drop_postgres_database(database_url())
            await ensure_postgres_database(database_url())
            break
        except asyncpg.exceptions.TooManyConnectionsError:
            await asyncio.sleep(5)
    app = create_app(Settings(environment="test", database_url=database_url(), amqp_url="", log_level="WARNING",
                              forecast_snapshot_interval_s=0), clock=ManualClock(NOW))
    conn = await connect()
    results: dict[int, dict[str, float]] = {}
    cpu_results: dict[int, dict[str, float]] = {}
    try:
        async with app.router.lifespan_context(app):  # runs the migrations
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
            for n in sizes:
                org = f"bench-{n}"
                if not await conn.fetchval("SELECT count(*) FROM m_leads WHERE org_id = $1", org):
                    await conn.execute("DELETE FROM forecast_snapshots WHERE org_id = $1", org)
                    load = await load_org(conn, org, n)
                    t = time.perf_counter()
                    # VACUUM as autovacuum would after a bulk load (it is off on this machine): it sets the
                    # visibility map that the reports' index-only scans rely on
                    await conn.execute("VACUUM ANALYZE")
                    print(f"{n:>9,} leads: generated in {load['generate_s']:.0f} s, COPY {load['copy_s']:.0f} s "
                          f"({int(load['timeline_rows']):,} timeline rows), rollups {load['rollups_s']:.0f} s, "
                          "VACUUM ANALYZE "
                          f"{time.perf_counter() - t:.0f} s", flush=True)
                await conn.execute("DELETE FROM forecast_snapshots WHERE org_id = $1", org)
                cpu_results[n] = {}
                results[n] = await time_reports(app, client, org, args.runs,
                                                {r for r in args.reports.split(",") if r} or None,
                                                cpu_results[n] if args.cpu else None, conn)
                print("   " + ", ".join(f"{k} {v:.0f}" for k, v in results[n].items()), flush=True)
                if args.cpu:
                    print("   CPU ms: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu_results[n].items()), flush=True)
            await client.aclose()

        print("\np50 ms per report (one quarter, manager's view of the whole org); growth = largest / smallest")
        header = f"{'report':<26}" + "".join(f"{n:>12,}" for n in sizes) + f"{'growth':>9}"
        print(header)
        for name in results[sizes[0]]:
            values = [results[n][name] for n in sizes]
            print(f"{name:<26}" + "".join(f"{v:>12.1f}" for v in values) + f"{values[-1] / values[0]:>8.1f}x")
        print(f"(lead count grows {sizes[-1] / sizes[0]:.0f}x; target p50 <= 100 ms)")
        if args.cpu:
            print("\np50 CPU ms per report (this process + the PostgreSQL backends; 10 ms resolution per backend)")
            print(header[:-9])
            for name in cpu_results[sizes[0]]:
                print(f"{name:<26}" + "".join(f"{cpu_results[n][name]:>12.1f}" for n in sizes))
            print(f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end)")

        if args.ingest:
            run_id = uuid.uuid4().hex[:6]
            per_lead = len(ingest_events('x', args.ingest)) / args.ingest
            print(f"\ningest ({args.ingest} leads, ~{per_lead:.1f} events each), "
                  "queue filled before the service starts:")
            labels = {"log": "into the log, nothing projects (baseline)",
                      "one-process": "into the log and read models, one process",
                      "two-processes": "into the log and read models, projector in its own process"}
            for layout, label in labels.items():
                org = f"bench-ingest-{run_id}-{layout}"
                events = ingest_events(org, args.ingest)
                logged, projected = await ingest_backlog(conn, events, org, layout)
                rate = logged if layout == "log" else projected
                print(f"  RabbitMQ -> {label}: {rate:,.0f} events/s ({len(events):,} events; "
                      f"log reached at {logged:,.0f} events/s)", flush=True)
            for batch_size in (1000, 200):
                batch_events = ingest_events(f"bench-ingest-{run_id}-p{batch_size}", args.ingest)
                rate = await project_alone(batch_events, batch_size)
                print(f"  projector alone, batches of {batch_size}: {rate:,.0f} events/s", flush=True)
            print("  (target >= 2,000 events/s)")
    finally:
        await conn.close()
        if not args.keep and not args.reuse:
            await drop_postgres_database(database_url())


if __name__ == "__main__":
    asyncio.run(main())
