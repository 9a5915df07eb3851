"""Live leaderboard lag of an incentive program: 500 participants, scored events at a fixed rate into one
program, the board watched through its server-sent event stream.

incentive-service runs as its own process (uvicorn, as deployed) on a fresh PostgreSQL database and a RabbitMQ
namespace. The bench publishes ActivityLogged meetings (10 points each, random participant, random lead among
5,000 of the run's own, never the same participant and lead twice) at `--rate` per second for `--seconds`, as
lead-service's relay would, and listens to
`/v1/programs/{id}/leaderboard/stream`. An event's lag is the time from its publication until the stream first
shows its participant with at least the points that event brought them to. (The same rep's meeting on the same
lead in the same minute is one meeting to the duplicate guard, which counts it once: a bench that drew such a
pair expected 10 points the board rightly never shows, and measured each later event of that rep as late as
the rep's next event. And the baseline's leads are not the loaded run's: the program is scored from a lead's
facts of its whole period, so a baseline lead's meeting would count again in the loaded run's program.)

Baseline in the same run: the same pipeline at `--baseline-rate` (default 50/s), where nothing queues — the floor
the stream's wake-up, the relay-free consumer and the scoring transaction give.
Run: `.venv/bin/python bench/program_leaderboard.py [--rate 1000 --seconds 20]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from salesflow_shared.bus import RabbitBus
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database
from salesflow_shared.events import ActivityLoggedV1, make_event
from salesflow_shared.testing import (
    AMQP_URL,
    POSTGRES_URL,
    auth_headers,
    delete_namespace,
    eventually,
    publish_envelope,
)

ORG = "bench-org"
PARTICIPANTS = [f"rep-{i:03d}" for i in range(500)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """incentive-service as a process on its own database and bus namespace."""

    def __init__(self, pool_size: int, batch: int) -> None:
        self.database_url = f"{POSTGRES_URL}/bench_programs_{uuid.uuid4().hex[:8]}"
        self.namespace = f"benchprog{uuid.uuid4().hex[:8]}."
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pool_size = pool_size
        self.batch = batch
        self.log = Path(tempfile.gettempdir()) / f"bench-incentive-{self.port}.log"
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        await ensure_postgres_database(self.database_url)
        env = {**os.environ, "SALESFLOW_ENVIRONMENT": "test", "SALESFLOW_DATABASE_URL": self.database_url,
               "SALESFLOW_AMQP_URL": AMQP_URL, "SALESFLOW_BUS_NAMESPACE": self.namespace,
               "SALESFLOW_LOG_LEVEL": "WARNING", "SALESFLOW_DB_POOL_SIZE": str(self.pool_size),
               # deliveries per consumer, and so per batch transaction
               "SALESFLOW_CONSUMER_PREFETCH": str(self.batch),
               "SALESFLOW_RECALCULATION_INTERVAL_S": "0", "SALESFLOW_PROGRAM_FINISH_INTERVAL_S": "0"}
        # The service runs beside the loop, which only polls it over HTTP; opening its log file is one quick call.
        self.process = subprocess.Popen(  # noqa: ASYNC220 - started once, never waited on from the loop
            [sys.executable, "-m", "uvicorn", "--factory", "incentive_service.entrypoints.http:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: ASYNC230 - see above
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"incentive-service did not start; see {self.log}")

    async def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            await delete_namespace(AMQP_URL, self.namespace)
            await drop_postgres_database(self.database_url)


async def run(service: Service, rate: int, seconds: float) -> tuple[list[float], int, float]:
    """Publish `rate` events/s for `seconds` into a new program; the lags (s), the events, the achieved rate."""
    now = datetime.now(UTC)
    headers = auth_headers(ORG, "manager", "bench")
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        created = await client.post("/v1/programs", headers=headers, json={
            "name": f"Bench {rate}/s", "format": "leaderboard", "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(), "participants": PARTICIPANTS,
            "rules": [{"behaviour": "meeting", "points": 10}]})
        created.raise_for_status()
        program_id = created.json()["id"]
        (await client.post(f"/v1/programs/{program_id}/start", headers=headers)).raise_for_status()

    shown: dict[str, int] = {}
    waiting: dict[str, list[tuple[int, float]]] = {}  # participant -> [(points expected, published at)]
    lags: list[float] = []
    ready = asyncio.Event()

    def seen(participant: str, points: int, at: float) -> None:
        shown[participant] = max(points, shown.get(participant, 0))
        pending = waiting.get(participant, [])
        while pending and pending[0][0] <= shown[participant]:
            lags.append(at - pending.pop(0)[1])

    async def listen() -> None:
        async with httpx.AsyncClient(base_url=service.url, timeout=None) as client, \
                client.stream("GET", f"/v1/programs/{program_id}/leaderboard/stream", headers=headers) as response:
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data, at = json.loads(line[6:]), time.perf_counter()
                    if event == "leaderboard":
                        ready.set()
                    for entry in data.get("entries", data.get("changes", [])):
                        seen(entry["id"], entry["points"], at)

    listener = asyncio.create_task(listen())
    await ready.wait()
    feeder = RabbitBus(AMQP_URL, namespace=service.namespace, client_name="bench-feeder")
    await feeder.start()
    points: dict[str, int] = {}
    total = int(rate * seconds)
    rng = random.Random(7)
    drawn: set[tuple[str, str]] = set()  # (participant, lead): a second meeting would be a duplicate

    def next_event(i: int):
        participant = rng.choice(PARTICIPANTS)
        lead = f"lead-{program_id[:8]}-{rng.randrange(5000)}"
        while (participant, lead) in drawn:
            lead = f"lead-{program_id[:8]}-{rng.randrange(5000)}"
        drawn.add((participant, lead))
        points[participant] = points.get(participant, 0) + 10
        return participant, points[participant], make_event(ActivityLoggedV1(
            activity_id=f"a-{uuid.uuid4().hex}", lead_id=lead, kind="meeting", rep_id=participant,
            occurred_at=datetime.now(UTC) - timedelta(seconds=1)), org_id=ORG, subject_id=lead)

    async def publish(participant: str, expected: int, envelope) -> None:
        waiting.setdefault(participant, []).append((expected, time.perf_counter()))
        await publish_envelope(feeder, envelope)

    # Every 10 ms, the events due by then, published concurrently (confirms awaited together).
    started, sent = time.perf_counter(), 0
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        if due > sent:
            await asyncio.gather(*(publish(*next_event(i)) for i in range(sent, due)))
            sent = due
        await asyncio.sleep(0.01)
    achieved = total / (time.perf_counter() - started)
    async def all_shown() -> None:
        assert len(lags) >= total

    with contextlib.suppress(AssertionError):  # after two minutes: report what was shown
        await eventually(all_shown, timeout=120, interval=0.1)
    listener.cancel()
    await feeder.close()
    return lags, total, achieved


def report(name: str, lags: list[float], total: int, achieved: float) -> None:
    ms = [1000 * lag for lag in lags]
    within = sum(1 for lag in lags if lag <= 1.0)
    print(f"{name}: {total} events at {achieved:,.0f}/s; shown {len(lags)}; lag ms p50 {pct(ms, .5):.0f} "
          f"p90 {pct(ms, .9):.0f} p99 {pct(ms, .99):.0f} max {max(ms):.0f}; within 1 s: {100 * within / total:.1f}%")
    edges = [100, 200, 300, 500, 750, 1000, 2000, 5000]
    counts, lower = [], 0
    for edge in edges:
        counts.append(f"<={edge}: {sum(1 for m in ms if lower < m <= edge)}")
        lower = edge
    counts.append(f">{edges[-1]}: {sum(1 for m in ms if m > edges[-1])}")
    print("  distribution (ms): " + ", ".join(counts))


async def main(rate: int, seconds: float, baseline_rate: int, pool_size: int, batch: int) -> None:
    service = Service(pool_size, batch)
    try:
        await service.start()
        report("baseline", *await run(service, baseline_rate, max(5.0, seconds / 2)))
        report("loaded  ", *await run(service, rate, seconds))
    finally:
        await service.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--baseline-rate", type=int, default=50)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256, help="the service's consumer prefetch (batch size)")
    args = parser.parse_args()
    print(f"incentive-service: {len(PARTICIPANTS)} participants, one program; batch {args.batch}; "
          f"load average {os.getloadavg()[0]:.1f}")
    asyncio.run(main(args.rate, args.seconds, args.baseline_rate, args.pool_size, args.batch))
