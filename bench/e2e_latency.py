"""End-to-end latency through the whole system: signed web-form submission → LeadAssigned, and → StageAdvanced
(the lead in its first stage), at a fixed offered rate for a bounded duration.

The five services run as real processes (tests/system_harness.py) on the local PostgreSQL and RabbitMQ, set up
as in the inbound journey (tests/e2e_testkit.setup_inbound_org: territory rule + round robin, welcome sequence,
Mailchimp rule, milestone rule, scoring rules, enrichment provider), with the local SMTP server, fake Mailchimp
and fake enrichment provider. Submissions are sent open-loop (each at its scheduled time, whatever the previous
one is doing). Arrival of LeadAssigned / StageAdvanced is observed by a queue of our own bound to the namespaced
exchange. Latency = event received − submission sent. Baseline in the same run: the HTTP round trip of
`GET /healthz` on lead-service at the same rate (what the client, the loop and uvicorn cost alone).
Per hop (which one holds the tail): each lead's path is timed from the services' own outbox and inbox rows (the
outbox row's `created_at` just before its commit; the inbox row's `processed_at` when the consumer began
handling the event) and our arrival times, all on this machine's clock. A hop from an outbox row to the next
handler is the relay's and the broker's together: the relay publishes a commit's events as the commit hands
them over and marks them sent a moment later, so `published_at` is not the publish's time.

Run: `.venv/bin/python bench/e2e_latency.py --rates 50 200 --duration 60`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in ["tests", "services/lead-service/tests", "services/notification-service/tests"]:
    sys.path.insert(0, str(ROOT / folder))

import aio_pika  # noqa: E402
import httpx  # noqa: E402
from e2e_testkit import ASSIGNMENT, LEAD, PIPELINE, World, new_org, running_world, setup_inbound_org, signed  # noqa: E402

from salesflow_shared.events import Envelope  # noqa: E402
from salesflow_shared.testing import AMQP_URL  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:  # gone (a PostgreSQL backend that ended)
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids() -> dict[str, list[int]]:
    """PostgreSQL's processes (one per connection) and RabbitMQ's Erlang VM."""
    found: dict[str, list[int]] = {"postgresql": [], "rabbitmq": []}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    name = comm.read().strip()
            except OSError:
                continue
            if name in ("postgres", "postmaster"):
                found["postgresql"].append(int(entry))
            elif name.startswith("beam"):
                found["rabbitmq"].append(int(entry))
    return found


class CpuMeter:
    """CPU time used by each service process, PostgreSQL and RabbitMQ between `start` and `stop`."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _sample(self) -> dict[tuple[str, int], float]:
        pids = {name: [service.process.pid] for name, service in self.world.system.services.items()
                if service.process is not None}
        pids.update(server_pids())
        return {(name, pid): cpu_seconds(pid) for name, group in pids.items() for pid in group}

    def start(self) -> None:
        self.began = self._sample()

    def stop(self) -> dict[str, float]:
        ended = self._sample()
        used: dict[str, float] = {}
        for (name, pid), seconds in ended.items():
            used[name] = used.get(name, 0.0) + seconds - self.began.get((name, pid), 0.0)
        return used


def summary(name: str, samples_s: list[float], expected: int) -> str:
    ms = [s * 1000 for s in samples_s]
    return (f"{name:<28} n={len(ms):>6}/{expected:<6} p50={pct(ms, 0.50):8.1f} ms  p95={pct(ms, 0.95):8.1f} ms  "
            f"p99={pct(ms, 0.99):8.1f} ms  max={max(ms) if ms else float('nan'):8.1f} ms")


class Arrivals:
    """Our own queue on the namespaced exchange: first arrival time of each event type per lead."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.first: dict[str, dict[str, float]] = {"LeadAssigned": {}, "StageAdvanced": {}}
        self.first_wall: dict[str, dict[str, float]] = {"LeadAssigned": {}, "StageAdvanced": {}}  # time.time()

    async def __aenter__(self) -> Arrivals:
        self.connection = await aio_pika.connect(AMQP_URL)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await channel.declare_exchange(f"{self.namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(f"{self.namespace}bench.{uuid.uuid4().hex[:6]}", exclusive=True)
        for event_type in self.first:
            await queue.bind(exchange, routing_key=event_type)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            now, wall = time.perf_counter(), time.time()
            await message.ack()
            envelope = Envelope.from_json(message.body)
            seen = self.first[envelope.type]
            if envelope.type == "StageAdvanced" and envelope.data.get("reason") != "entry":
                return
            seen.setdefault(envelope.subject_id, now)
            self.first_wall[envelope.type].setdefault(envelope.subject_id, wall)

        await queue.consume(on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()


async def offer(rate: float, duration: float, send) -> list:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    tasks = []
    for i in range(int(rate * duration)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    return await asyncio.gather(*tasks)


async def run_rate(world: World, rate: float, duration: float, settle: float) -> None:
    org = new_org(f"bench{int(rate)}")
    setup = await setup_inbound_org(world, org)
    form = setup.form
    tag = uuid.uuid4().hex[:6]
    sent_at: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    answered_at: dict[str, float] = {}
    refused = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    timeouts = httpx.Timeout(60, connect=30, pool=120)
    async with httpx.AsyncClient(base_url=world.url(LEAD), timeout=timeouts, limits=limits) as client, \
            Arrivals(world.system.namespace) as arrivals:
        baseline: list[float] = []

        async def ping(i: int) -> None:
            began = time.perf_counter()
            await client.get("/healthz")
            baseline.append(time.perf_counter() - began)
        await offer(rate, min(duration, 5), ping)

        async def submit(i: int) -> None:
            nonlocal refused
            fields = {"email": f"lead{i}-{tag}@bench-company{i % 50}.de", "first": f"Lead{i}", "last": "Bench",
                      "job": "CTO", "company": f"Bench Company {i % 50}", "country": "DE", "budget": "2000"}
            body = json.dumps(fields).encode()
            began, began_wall = time.perf_counter(), time.time()
            try:
                response = await client.post(f"/v1/forms/{form['id']}/submissions", content=body,
                                             headers=signed(form["signing_secret"], body))
            except httpx.HTTPError:  # a timeout under overload counts as refused
                refused += 1
                return
            if response.status_code in (200, 201):
                lead_id = response.json()["lead_id"]
                sent_at[lead_id], answered_at[lead_id] = began, time.perf_counter()
                sent_wall[lead_id] = began_wall
            else:
                refused += 1

        meter = CpuMeter(world)
        meter.start()
        offered_began = time.perf_counter()
        await offer(rate, duration, submit)
        offered_s = time.perf_counter() - offered_began
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if all(lead in arrivals.first["StageAdvanced"] and lead in arrivals.first["LeadAssigned"]
                   for lead in sent_at):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(5)  # the rest of each lead's work (emails, metrics) after it is in its stage
        cpu_used = meter.stop()
        assigned = [arrivals.first["LeadAssigned"][lead] - t for lead, t in sent_at.items()
                    if lead in arrivals.first["LeadAssigned"]]
        in_stage = [arrivals.first["StageAdvanced"][lead] - t for lead, t in sent_at.items()
                    if lead in arrivals.first["StageAdvanced"]]
    print(f"\n== {rate:g} leads/s offered for {duration:g} s: {len(sent_at)} accepted, {refused} refused, "
          f"offering took {offered_s:.1f} s (achieved {len(sent_at) / offered_s:.1f} leads/s)")
    print(summary("baseline GET /healthz", baseline, len(baseline)))
    print(summary("submission answered (HTTP)", [answered_at[k] - t for k, t in sent_at.items()], len(sent_at)))
    print(summary("answer → LeadAssigned", [arrivals.first["LeadAssigned"][k] - answered_at[k] for k in sent_at
                                            if k in arrivals.first["LeadAssigned"]], len(sent_at)))
    print(summary("submission → LeadAssigned", assigned, len(sent_at)))
    print(summary("submission → StageAdvanced", in_stage, len(sent_at)))
    leads = max(len(sent_at), 1)
    total = sum(cpu_used.values())
    await print_hops(world, sent_wall, arrivals.first_wall)
    print("CPU per accepted lead (all of its work, over the run):  " + "  ".join(
        f"{name.removesuffix('-service')} {1000 * seconds / leads:.1f} ms" for name, seconds in cpu_used.items()))
    print(f"  total {1000 * total / leads:.1f} ms per lead → at most {os.cpu_count() * leads / total:.1f} leads/s "
          f"on this machine's {os.cpu_count()} cores")


# Each hop of a lead's path: (name, the stamp it starts at, the stamp it ends at). Stamps: "sent" (the
# submission), "<service>:<out|in>:<EventType>:<created|processed>" and "arrived:<EventType>".
HOPS = [
    ("intake (request → commit)", "sent", "lead:out:LeadCreated:created"),
    ("LeadCreated → assignment handler", "lead:out:LeadCreated:created", "assignment:in:LeadCreated:processed"),
    ("assignment handling", "assignment:in:LeadCreated:processed", "assignment:out:LeadAssigned:created"),
    ("LeadAssigned → bench", "assignment:out:LeadAssigned:created", "arrived:LeadAssigned"),
    ("LeadRouted → pipeline handler", "assignment:out:LeadRouted:created", "pipeline:in:LeadRouted:processed"),
    ("pipeline handling", "pipeline:in:LeadRouted:processed", "pipeline:out:StageAdvanced:created"),
    ("StageAdvanced → bench", "pipeline:out:StageAdvanced:created", "arrived:StageAdvanced"),
]
OUTBOX_STAMPS = "SELECT payload::json->>'subject_id' AS lead, event_type, event_id, " \
    "extract(epoch FROM created_at) AS created FROM outbox " \
    "WHERE event_type = ANY(:types) AND (event_type <> 'StageAdvanced' OR payload::json->'data'->>'reason' = 'entry')"
INBOX_STAMPS = "SELECT event_id, event_type, extract(epoch FROM processed_at) AS processed FROM inbox " \
    "WHERE event_type = ANY(:types)"


async def print_hops(world: World, sent_wall: dict[str, float], arrived: dict[str, dict[str, float]]) -> None:
    """Each hop's percentiles over the leads, and where the slowest 5% of leads spent their time."""
    stamps: dict[str, dict[str, float]] = {lead: {"sent": t} for lead, t in sent_wall.items()}
    lead_of: dict[str, str] = {}  # event id → lead id
    for service, short, types in ((LEAD, "lead", ["LeadCreated"]),
                                  (ASSIGNMENT, "assignment", ["LeadRouted", "LeadAssigned"]),
                                  (PIPELINE, "pipeline", ["StageAdvanced"])):
        for row in await world.rows(service, OUTBOX_STAMPS, types=types):
            lead_of[row["event_id"]] = row["lead"]
            if row["lead"] in stamps:
                stamps[row["lead"]].setdefault(f"{short}:out:{row['event_type']}:created", float(row["created"]))
    for service, short, types in ((ASSIGNMENT, "assignment", ["LeadCreated"]), (PIPELINE, "pipeline", ["LeadRouted"])):
        for row in await world.rows(service, INBOX_STAMPS, types=types):
            lead = lead_of.get(row["event_id"])
            if lead in stamps:
                stamps[lead].setdefault(f"{short}:in:{row['event_type']}:processed", float(row["processed"]))
    for event_type, by_lead in arrived.items():
        for lead, t in by_lead.items():
            if lead in stamps:
                stamps[lead][f"arrived:{event_type}"] = t
    complete = {lead: seen for lead, seen in stamps.items()
                if all(start in seen and end in seen for _, start, end in HOPS)}
    print(f"per hop ({len(complete)} leads with every stamp):")
    for name, start, end in HOPS:
        print("  " + summary(name, [seen[end] - seen[start] for seen in complete.values()], len(complete)))
    if not complete:
        return
    total = {lead: seen["arrived:StageAdvanced"] - seen["sent"] for lead, seen in complete.items()}
    slowest = sorted(total, key=total.__getitem__)[-max(1, len(total) // 20):]
    print(f"  slowest {len(slowest)} leads (submission → StageAdvanced), ms per hop:")
    for lead in reversed(slowest):
        seen = complete[lead]
        print(f"    {1000 * total[lead]:7.1f}: " + " ".join(
            f"{1000 * (seen[end] - seen[start]):.0f}" for _, start, end in HOPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200])
    parser.add_argument("--duration", type=float, default=60, help="seconds of offered load per rate")
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait for the last events")
    args = parser.parse_args()
    with running_world(Path(tempfile.mkdtemp(prefix="e2e-latency-")), pool_size=10, event_holds=False) as world:
        for rate in args.rates:  # the harness starts and stops the processes outside any event loop
            asyncio.run(run_rate(world, rate, args.duration, args.settle))


if __name__ == "__main__":
    main()
