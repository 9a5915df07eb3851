"""CPU-seconds per lead of the whole system against the physical floor of the same hops, in one run; and idle cost.

The five services run as real processes (tests/system_harness.py, full mode: PostgreSQL + RabbitMQ) with the
production defaults for every poll interval, set up as in the inbound journey (tests/e2e_testkit
.setup_inbound_org: scoring, enrichment, territory routing and round robin, goals and tasks, a welcome sequence,
a Mailchimp rule, a milestone rule), with the local SMTP server, fake Mailchimp and fake enrichment provider.

1. Idle: `--idle` seconds with no traffic: CPU (% of a core) and commits/s (pg_stat_database.xact_commit of
   the service's own database) per service.
2. Load: `--leads` signed web-form submissions offered open-loop at `--rate` leads/s, then until every lead is
   assigned and in its first stage and every service's published and handled counters stop moving. Printed:
   CPU-seconds per lead for each service, for the PostgreSQL backends serving the services' databases, and for
   RabbitMQ (one Erlang VM the whole machine shares: other people's traffic is in it too, so it is printed
   apart); events published, deliveries handled, SQL statements (the services' own counter) and commits per
   lead, and statements per delivery; events per lead by type.
3. Floor: bench/floor.py as one process, same rate, same number of leads, each lead a chain of as many
   deliveries as the system handled per lead (rounded), each delivery its minimal hops (inbox + state + outbox
   in one transaction, confirmed publish, ack). Same CPU accounting. The ratio project/floor is printed for the
   services + PostgreSQL, and with RabbitMQ included.

With `--profile DIR`, py-spy samples every service process during the load and the share of each layer
(SQLAlchemy, asyncpg, aio-pika, pydantic, FastAPI/Starlette/uvicorn, logging, tracing, Prometheus, the
services' own code, the rest) is printed per service; the raw stacks stay in DIR.

Run: `.venv/bin/python bench/cpu_per_lead.py [--rate 5] [--leads 150] [--idle 10] [--profile /tmp/profiles]`
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in ["tests", "services/lead-service/tests", "services/notification-service/tests", "bench"]:
    sys.path.insert(0, str(ROOT / folder))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from e2e_latency import Arrivals, cpu_seconds, offer, server_pids  # noqa: E402
from e2e_testkit import LEAD, World, new_org, running_world, setup_inbound_org, signed  # noqa: E402

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.settings import ServiceSettings  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, eventually  # noqa: E402

PLAIN_POSTGRES = POSTGRES_URL.replace("+asyncpg", "")

# What a deployment runs with (the test harness shortens these to make tests fast).
PRODUCTION_INTERVALS = {
    "lead-service": {"SALESFLOW_ENRICHMENT_POLL_INTERVAL_S": "2.0"},
    "pipeline-service": {"SALESFLOW_OVERDUE_SWEEP_INTERVAL_S": "30", "SALESFLOW_REOPEN_INTERVAL_S": "60"},
    "assignment-service": {},
    "notification-service": {"SALESFLOW_SCHEDULER_POLL_INTERVAL_S": "1.0"},
    "metrics-service": {"SALESFLOW_FORECAST_SNAPSHOT_INTERVAL_S": "300", "SALESFLOW_QUOTA_MILESTONE_INTERVAL_S": "60"},
    "incentive-service": {},  # (its recalculation and program sweeps run at their defaults already)
}
for values in PRODUCTION_INTERVALS.values():  # the settings' defaults (the harness shortens them)
    for setting in ("outbox_poll_interval_s", "worker_idle_poll_s"):
        if setting in ServiceSettings.model_fields:  # (so that this script also measures older code)
            values[f"SALESFLOW_{setting.upper()}"] = str(ServiceSettings.model_fields[setting].default)


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def connect_admin() -> asyncpg.Connection:
    for _ in range(60):  # a shared server may be at its connection limit for a while
        try:
            return await asyncpg.connect(f"{PLAIN_POSTGRES}/postgres")
        except asyncpg.TooManyConnectionsError:
            await asyncio.sleep(1)
    raise RuntimeError("PostgreSQL stayed at its connection limit")


async def fetch_from_postgres(sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await connect_admin()
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])"


async def commits(databases: list[str]) -> dict[str, int]:
    rows = await fetch_from_postgres(
        "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY($1::text[])", databases)
    return {r["datname"]: int(r["xact_commit"]) for r in rows}


class Meter:
    """CPU of named processes, of the PostgreSQL backends of some databases and of RabbitMQ; commits of those
    databases; between `start` and `stop`.

    Backends come and go (a pool's overflow connections close when returned), so they are followed every
    0.2 s and each one's last reading counts: a backend that lived between two readings is missed, one that
    ended loses at most its last 0.2 s."""

    def __init__(self, processes: dict[str, int], databases: dict[str, str]) -> None:
        self.processes = processes  # name → pid
        self.databases = databases  # name → database

    def _sample(self, backend_pids: list[int]) -> dict[tuple[str, int], float]:
        keys = [*((name, pid) for name, pid in self.processes.items()), *(("postgresql", pid) for pid in backend_pids),
                *(("rabbitmq", pid) for pid in server_pids()["rabbitmq"])]
        return {key: cpu_seconds(key[1]) for key in keys if os.path.exists(f"/proc/{key[1]}")}  # not gone

    async def backends(self) -> list[int]:
        """The pids of the PostgreSQL backends connected to the databases."""
        try:
            rows = await self.admin.fetch(BACKENDS, list(self.databases.values()))
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
            # the shared server closed it (someone's restart test, an admin): once more on a new connection
            self.admin = await connect_admin()
            rows = await self.admin.fetch(BACKENDS, list(self.databases.values()))
        return [r["pid"] for r in rows]

    def _keep(self, readings: dict[tuple[str, int], float]) -> None:
        for key, used in readings.items():  # CPU time only grows (a process read as it exited reads 0)
            self.latest[key] = max(used, self.latest.get(key, 0.0))

    async def _follow_backends(self) -> None:
        while True:
            try:
                self._keep(self._sample(await self.backends()))
            except Exception as exc:  # noqa: BLE001 - a reading missed, whatever the reason: the next one counts
                print(f"  (backends not read: {exc!r})", flush=True)
            await asyncio.sleep(0.2)

    async def start(self) -> None:
        self.admin = await connect_admin()
        self.began_at = time.perf_counter()
        self.began = self._sample(await self.backends())
        self.latest = dict(self.began)
        self.began_commits = await commits(list(self.databases.values()))
        self.follower = asyncio.create_task(self._follow_backends())

    async def stop(self) -> None:
        self.seconds = time.perf_counter() - self.began_at
        self.follower.cancel()
        await asyncio.gather(self.follower, return_exceptions=True)
        self._keep(self._sample(await self.backends()))
        await self.admin.close()
        ended_commits = await commits(list(self.databases.values()))
        self.cpu: dict[str, float] = {}
        for (name, pid), used in self.latest.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + used - self.began.get((name, pid), 0.0)
        self.commits = {name: ended_commits.get(db, 0) - self.began_commits.get(db, 0)
                        for name, db in self.databases.items()}


def counters(text: str, metric: str, label: str = "") -> Counter[str]:
    """Sum of a Prometheus counter by the value of `label` (default: its first label; '' when it has none)."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(metric + "{") or line.startswith(metric + " "):
            value = re.search(label + r'="([^"]*)"', line.split(" ")[0])
            found[value.group(1) if value else ""] += float(line.rsplit(" ", 1)[1])
    return found


async def scrape(world: World) -> dict[str, dict[str, Counter[str]]]:
    out = {}
    async with httpx.AsyncClient(timeout=120) as client:  # a saturated service answers late
        for name in world.system.services:
            text = (await client.get(f"{world.url(name)}/metrics")).text
            out[name] = {"published": counters(text, "salesflow_events_published_total"),
                         "handled": counters(text, "salesflow_messages_handled_total"),
                         "outcomes": counters(text, "salesflow_messages_handled_total", "outcome"),
                         "statements": counters(text, "salesflow_db_statements_total"),
                         "commits": counters(text, "salesflow_db_commits_total")}
    return out


# Package directory → layer; a sample counts for the innermost frame that is in one of them.
LAYERS = [("sqlalchemy", "SQLAlchemy"), ("asyncpg", "asyncpg"), ("aio_pika", "aio-pika/aiormq"),
          ("aiormq", "aio-pika/aiormq"), ("pamqp", "aio-pika/aiormq"), ("pydantic", "pydantic"),
          ("fastapi", "FastAPI/Starlette/uvicorn"), ("starlette", "FastAPI/Starlette/uvicorn"),
          ("uvicorn", "FastAPI/Starlette/uvicorn"), ("h11", "FastAPI/Starlette/uvicorn"),
          ("httptools", "FastAPI/Starlette/uvicorn"), ("httpx", "httpx/httpcore"), ("httpcore", "httpx/httpcore"),
          ("structlog", "logging"), ("/logging/", "logging"), ("opentelemetry", "tracing"),
          ("prometheus_client", "Prometheus"), ("orjson", "JSON"), ("/json/", "JSON"),
          ("salesflow_shared", "salesflow_shared"), ("_service/", "service code"),
          # py-spy (without --native) shows C code by the Python frame that called it: the event loop's own
          # frame stands for what runs in C under it (asyncpg's protocol parsing, epoll, the C parts of asyncio)
          ("runners.py", "event loop + C extensions"), ("asyncio", "asyncio (Python)")]


def profile_layers(raw: Path) -> Counter[str]:
    """Samples per layer from py-spy's raw output (one `frame;frame;...;leaf count` line per stack)."""
    found: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a line py-spy was still writing when it was read
            continue
        layer = "other" if stack.strip() else "no Python frame (native threads)"
        for frame in reversed(stack.split(";")):
            layer = next((name for marker, name in LAYERS if marker in frame), "")
            if layer:
                break
        found[layer or ("other" if stack.strip() else "no Python frame (native threads)")] += int(count)
    return found


def start_profiles(world: World, folder: Path) -> list[subprocess.Popen[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(s.process.pid), "--format", "raw", "--rate", "50",
                              "--nonblocking", "-o", str(folder / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, s in world.system.services.items() if s.process is not None]


def stop_profiles(profilers: list[subprocess.Popen[bytes]], folder: Path) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        profiler.wait(timeout=60)
    print("\n== where each service's CPU goes (py-spy samples by layer, % of the service's samples)")
    for raw in sorted(folder.glob("*.txt")):
        layers = profile_layers(raw)
        total = max(sum(layers.values()), 1)
        print(f"  {raw.stem:22} " + ", ".join(f"{name} {100 * n / total:.0f}" for name, n in layers.most_common()))


def delta(after: dict, before: dict, kind: str) -> Counter[str]:  # type: ignore[type-arg]
    total: Counter[str] = Counter()
    for name in after:
        for key, value in after[name][kind].items():
            total[key] += value - before[name][kind].get(key, 0)
    return total


# The hot paths: a delivery's inbox and handlers ("consumer"), the outbox relay, and metrics-service's
# projector when it runs as its own worker (in-process, the consumer applies what it logs). Not: HTTP requests
# (the intake), and the workers that send (emails, Mailchimp calls, sequence steps) or sweep.
HOT_PATHS = ("consumer", "relay", "projector")


def per_service(after: dict, before: dict, kind: str) -> dict[str, float]:  # type: ignore[type-arg]
    return {name: sum(after[name][kind].values()) - sum(before[name][kind].values()) for name in after}


def own_commits(after: dict, before: dict, meter: Meter) -> dict[str, float]:  # type: ignore[type-arg]
    """Each service's own commits; the database's count where the service does not report them (older code)."""
    own = per_service(after, before, "commits")
    return {name: own[name] if any(after[name]["commits"].values()) else meter.commits[name] for name in own}


async def measure_idle(world: World, databases: dict[str, str], seconds: float) -> None:
    processes = {name: s.process.pid for name, s in world.system.services.items() if s.process is not None}
    meter = Meter(processes, databases)
    await asyncio.sleep(3)  # whatever the set-up started has finished
    before = await scrape(world)
    await meter.start()
    await asyncio.sleep(seconds)
    await meter.stop()
    after = await scrape(world)
    statements = per_service(after, before, "statements")
    committed = own_commits(after, before, meter)
    print(f"\n== idle, {meter.seconds:.1f} s without traffic (target per service: <= 0.5 % of a core, "
          f"<= 1 commit/s)")
    for name in databases:
        print(f"  {name:22} CPU {100 * meter.cpu.get(name, 0) / meter.seconds:5.2f} % of a core   "
              f"commits {committed[name] / meter.seconds:5.2f}/s "
              f"(database {meter.commits[name] / meter.seconds:5.2f}/s)"
              f"   statements {statements[name] / meter.seconds:5.1f}/s")
    print(f"  {'postgresql backends':22} CPU {100 * meter.cpu.get('postgresql', 0) / meter.seconds:5.2f} % of a core")


async def measure_load(world: World, databases: dict[str, str], rate: float, leads: int,
                       settle: float, profile: Path | None = None) -> dict[str, float]:
    org = new_org("cpu")
    setup = await setup_inbound_org(world, org)
    form = setup.form
    tag = uuid.uuid4().hex[:6]
    sent: list[str] = []
    refused = 0
    processes = {name: s.process.pid for name, s in world.system.services.items() if s.process is not None}
    meter = Meter(processes, databases)
    async with httpx.AsyncClient(base_url=world.url(LEAD), timeout=60) as client, \
            Arrivals(world.system.namespace) as arrivals:
        await asyncio.sleep(3)  # the set-up's own events are through
        before = await scrape(world)
        profilers = start_profiles(world, profile) if profile is not None else []
        await meter.start()

        async def submit(i: int) -> None:
            nonlocal refused
            fields = {"email": f"lead{i}-{tag}@bench-company{i % 50}.de", "first": f"Lead{i}", "last": "Bench",
                      "job": "CTO", "company": f"Bench Company {i % 50}", "country": "DE", "budget": "2000"}
            body = json.dumps(fields).encode()
            response = await client.post(f"/v1/forms/{form['id']}/submissions", content=body,
                                         headers=signed(form["signing_secret"], body))
            if response.status_code in (200, 201):
                sent.append(response.json()["lead_id"])
            else:
                refused += 1

        await offer(rate, leads / rate, submit)
        deadline = time.monotonic() + settle

        async def all_routed() -> None:
            assert all(lead in arrivals.first["StageAdvanced"] and lead in arrivals.first["LeadAssigned"]
                       for lead in sent)

        with contextlib.suppress(AssertionError):  # past the settling time: measure with what has arrived
            await eventually(all_routed, timeout=settle, interval=0.5)
        # the rest of each lead's work (emails, Mailchimp, enrichment, metrics): until the counters stand still
        last = None
        while time.monotonic() < deadline:
            now = await scrape(world)
            totals = (sum(delta(now, before, "published").values()), sum(delta(now, before, "handled").values()))
            if totals == last:
                break
            last = totals
            await asyncio.sleep(3)
        await meter.stop()
        after = await scrape(world)
    if profile is not None:
        stop_profiles(profilers, profile)
    n = max(len(sent), 1)
    published, handled = delta(after, before, "published"), delta(after, before, "handled")
    statements = sum(delta(after, before, "statements").values())
    deliveries = sum(handled.values())
    services_cpu = sum(meter.cpu.get(name, 0) for name in databases)
    result = {"leads": len(sent), "services": services_cpu / n, "postgresql": meter.cpu.get("postgresql", 0) / n,
              "rabbitmq": meter.cpu.get("rabbitmq", 0) / n, "events": sum(published.values()) / n,
              "deliveries": deliveries / n, "statements": statements / n,
              "commits": sum(own_commits(after, before, meter).values()) / n, "seconds": meter.seconds}
    print(f"\n== load: {len(sent)} leads accepted ({refused} refused) offered at {rate:g}/s; measured over "
          f"{meter.seconds:.1f} s")
    print("  CPU ms per lead: " + "  ".join(f"{name.removesuffix('-service')} {1000 * meter.cpu.get(name, 0) / n:.1f}"
                                          for name in databases)
          + f"  | postgresql {1000 * result['postgresql']:.1f}  rabbitmq {1000 * result['rabbitmq']:.1f}")
    print(f"  per lead: {result['events']:.1f} events published, {result['deliveries']:.1f} deliveries handled, "
          f"{result['statements']:.0f} SQL statements ({statements / max(deliveries, 1):.1f} per delivery), "
          f"{result['commits']:.1f} commits")
    print("  commits per lead by service (its own): " + "  ".join(
        f"{name.removesuffix('-service')} {value / n:.1f}"
        for name, value in own_commits(after, before, meter).items()))
    print("  statements per lead by service: " + "  ".join(
        f"{name.removesuffix('-service')} {value / n:.1f}"
        for name, value in per_service(after, before, "statements").items()))
    handled_by_service = per_service(after, before, "handled")
    statements_by_service = per_service(after, before, "statements")
    print("  deliveries per lead by service (statements per delivery, its intake and workers included): "
          + "  ".join(f"{name.removesuffix('-service')} {value / n:.1f} "
                      f"({statements_by_service[name] / max(value, 1):.1f})"
                      for name, value in handled_by_service.items()))
    by_path = {name: Counter({path: after[name]["statements"][path] - before[name]["statements"].get(path, 0)
                              for path in after[name]["statements"]}) for name in after}
    if any(set(paths) - {""} for paths in by_path.values()):  # (older code counts statements without their path)
        print("  statements per lead by service and path: " + "; ".join(
            f"{name.removesuffix('-service')} " + " ".join(f"{path} {value / n:.1f}"
                                                          for path, value in paths.most_common() if value)
            for name, paths in by_path.items()))
        print("  statements per delivery on the hot paths (" + ", ".join(HOT_PATHS) + "): " + "  ".join(
            f"{name.removesuffix('-service')} "
            f"{sum(paths[p] for p in HOT_PATHS) / max(handled_by_service[name], 1):.1f}"
            for name, paths in by_path.items()))
    print("  events per lead by type: " + ", ".join(f"{t} {v / n:.2f}" for t, v in published.most_common()))
    print("  deliveries per lead by outcome: " + ", ".join(
        f"{t} {v / n:.2f}" for t, v in delta(after, before, "outcomes").most_common()))
    print("  deliveries per lead by type: " + ", ".join(f"{t} {v / n:.2f}" for t, v in handled.most_common()))
    return result


async def measure_floor(rate: float, leads: int, deliveries: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    url = f"{PLAIN_POSTGRES}/sfbench_floor_{tag}"
    namespace = f"floor{tag}."
    await ensure_postgres_database(url)
    # ASYNC220 allowed: the floor process runs beside the loop, which talks to it only through pipes read in a thread
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor.py"), "--database-url", url,  # noqa: ASYNC220
                                "--namespace", namespace, "--leads", str(leads), "--rate", str(rate),
                                "--deliveries", str(deliveries)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdin is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("ready"), line
        meter = Meter({"floor": process.pid}, {"floor": database_name(url)})
        await meter.start()
        process.stdin.write("go\n")
        process.stdin.flush()
        line = await asyncio.to_thread(process.stdout.readline)
        await meter.stop()
        assert line.startswith("done"), line
        process.stdin.write("exit\n")
        process.stdin.flush()
        await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            process.kill()
        await drop_postgres_database(url)
        await delete_namespace(AMQP_URL, namespace)
    n = leads
    result = {"services": meter.cpu["floor"] / n, "postgresql": meter.cpu.get("postgresql", 0) / n,
              "rabbitmq": meter.cpu.get("rabbitmq", 0) / n, "commits": meter.commits["floor"] / n}
    print(f"\n== floor: {leads} leads at {rate:g}/s, {deliveries} deliveries each, measured over {meter.seconds:.1f} s")
    print(f"  CPU ms per lead: floor process {1000 * result['services']:.1f}  | postgresql "
          f"{1000 * result['postgresql']:.1f}  rabbitmq {1000 * result['rabbitmq']:.1f}; commits per lead "
          f"{result['commits']:.1f}; statements per delivery 3 (+ BEGIN/COMMIT)")
    return result


def report(project: dict[str, float], floor: dict[str, float]) -> None:
    own = lambda r: r["services"] + r["postgresql"]  # noqa: E731
    print("\n== CPU-seconds per lead, project vs floor (same run)")
    print(f"  services (or floor process) + their PostgreSQL backends: project {own(project):.3f}  "
          f"floor {own(floor):.3f}  ratio {own(project) / own(floor):.2f}x  (target <= 1.5x)")
    total = lambda r: own(r) + r["rabbitmq"]  # noqa: E731
    print(f"  + RabbitMQ (shared VM, includes others' traffic):  project {total(project):.3f}  "
          f"floor {total(floor):.3f}  ratio {total(project) / total(floor):.2f}x")
    print(f"  at most {os.cpu_count() / total(project):.1f} leads/s on this machine's {os.cpu_count()} cores "
          f"(floor {os.cpu_count() / total(floor):.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--leads", type=int, default=150)
    parser.add_argument("--idle", type=float, default=10, help="seconds of idle measurement (0: none)")
    parser.add_argument("--settle", type=float, default=180)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--profile", type=Path, help="a folder: profile the services with py-spy during the load")
    args = parser.parse_args()
    print(f"bench/cpu_per_lead: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    # small pools: PostgreSQL's connections are shared with everyone else on the machine
    with running_world(Path(tempfile.mkdtemp(prefix="cpu-per-lead-")), pool_size=3,
                       extra=PRODUCTION_INTERVALS, event_holds=False) as world:
        databases = {name: database_name(s.database_url) for name, s in world.system.services.items()}
        if args.idle > 0:
            asyncio.run(measure_idle(world, databases, args.idle))
        project = asyncio.run(measure_load(world, databases, args.rate, args.leads, args.settle, args.profile))
    if not args.no_floor:
        floor = asyncio.run(measure_floor(args.rate, project["leads"], max(1, round(project["deliveries"]))))
        report(project, floor)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
