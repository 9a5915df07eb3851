"""Web-form intake throughput: signed submissions over HTTP to lead-service (PostgreSQL + RabbitMQ) against a
bare FastAPI + asyncpg insert of the same row, measured in the same run.

Both servers run as one uvicorn process each on this machine; the load generator (this process) keeps
`--concurrency` requests in flight, each a new person (a new lead). Printed: accepted leads/s, p50/p99
latency, and the lead-service/baseline throughput ratio. After the run it checks that every accepted
submission is a lead and that every LeadCreated event reached a RabbitMQ queue.

Run: `.venv/bin/python bench/intake/run.py [--requests 3000] [--concurrency 32]`
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "services" / "lead-service"))

from salesflow_shared.auth import mint_token  # noqa: E402
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.settings import DEV_JWT_SECRET  # noqa: E402
from salesflow_shared.signatures import sign  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace  # noqa: E402

FORM = {"name": "bench", "mapping": {"email": "contact.email", "name": "contact.full_name",
                                     "company": "company.name", "job": "contact.title"},
        "required": ["contact.email"], "defaults": {"product_line": "bench"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "uvicorn", *args, "--log-level", "warning", "--no-access-log"],
                            env={**os.environ, **env}, cwd=cwd)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def body_for(run: str, i: int) -> bytes:
    return json.dumps({"email": f"person{i}.{run}@company{i % 500}.com", "name": f"Person{i} Bench",
                       "company": f"Company {i % 500}", "job": "Head of Operations"}).encode()


Request = tuple[str, str, dict[str, str], bytes | None]  # method, url, headers, body


async def drive_requests(make: Callable[[int], Request], requests: int, concurrency: int, pid: int | None,
                         ok: Callable[[int], bool] = lambda status: 200 <= status < 300) -> dict[str, Any]:
    """`requests` requests (`make(i)` is the i-th), `concurrency` in flight: answers with an `ok` status per
    second, p50/p99 latency, and the CPU of process `pid` over the run per such answer."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    answered = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def worker() -> None:
            nonlocal answered
            for i in counter:
                method, url, headers, body = make(i)
                started = time.perf_counter()
                try:
                    response = await client.request(method, url, headers=headers, content=body)
                except httpx.HTTPError as exc:  # counted, not fatal: the run reports what was answered
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - started)
                if ok(response.status_code):
                    answered += 1
                else:
                    key = f"{response.status_code} {response.text[:120]}"
                    errors[key] = errors.get(key, 0) + 1
        cpu_before = cpu_seconds(pid) if pid else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds(pid) - cpu_before) if pid else 0.0
    return {"accepted": answered, "rate": answered / elapsed,
            "p50_ms": pct(latencies, 0.5) * 1000 if latencies else 0.0,
            "p99_ms": pct(latencies, 0.99) * 1000 if latencies else 0.0, "elapsed_s": elapsed,
            "cpu_ms_per_lead": cpu * 1000 / max(answered, 1), "errors": errors}


async def drive(url: str, requests: int, concurrency: int, run: str, secret: str | None,
                pid: int | None = None) -> dict[str, Any]:
    def submission(i: int) -> Request:
        body = body_for(run, i)
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["Salesflow-Signature"] = sign(secret, body, int(time.time()))
        return "POST", url, headers, body

    return await drive_requests(submission, requests, concurrency, pid, ok=lambda status: status == 201)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    namespace = f"bench{tag}."
    lead_db = f"{POSTGRES_URL.rstrip('/')}/sfbench_lead_{tag}"
    base_db = f"{POSTGRES_URL.rstrip('/')}/sfbench_base_{tag}"
    await ensure_postgres_database(lead_db)
    await ensure_postgres_database(base_db)
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(f"{namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                              durable=True)
    queue = await channel.declare_queue(f"{namespace}test.events", durable=True)
    await queue.bind(exchange, routing_key="LeadCreated")
    lead_port, base_port = free_port(), free_port()
    processes = [
        start(["--factory", "lead_service.entrypoints.http:create_app", "--port", str(lead_port)],
              {"SALESFLOW_DATABASE_URL": lead_db, "SALESFLOW_AMQP_URL": AMQP_URL,
               "SALESFLOW_BUS_NAMESPACE": namespace, "SALESFLOW_LOG_LEVEL": "WARNING",
               "SALESFLOW_ENVIRONMENT": "test"}, ROOT),
        start(["baseline_app:app", "--port", str(base_port)],
              {"BASELINE_DATABASE_URL": base_db.replace("+asyncpg", "")}, Path(__file__).parent),
    ]
    try:
        await wait_ready(f"http://127.0.0.1:{lead_port}/readyz")
        await wait_ready(f"http://127.0.0.1:{base_port}/healthz")
        token = mint_token(DEV_JWT_SECRET, sub="bench", org="bench-org", role="admin")
        async with httpx.AsyncClient() as client:
            form = (await client.post(f"http://127.0.0.1:{lead_port}/v1/forms", json=FORM,
                                      headers={"Authorization": f"Bearer {token}"})).json()
        lead_url = f"http://127.0.0.1:{lead_port}/v1/forms/{form['id']}/submissions"
        base_url = f"http://127.0.0.1:{base_port}/submit"

        await drive(base_url, args.warmup, args.concurrency, "warm", None)
        await drive(lead_url, args.warmup, args.concurrency, "warm", form["signing_secret"])
        # interleaved, twice each; the better of the two runs of each is reported
        results: dict[str, list[dict[str, float]]] = {"baseline": [], "lead-service": []}
        for round_ in range(2):
            results["baseline"].append(await drive(base_url, args.requests, args.concurrency, f"b{round_}", None,
                                                   processes[1].pid))
            results["lead-service"].append(await drive(lead_url, args.requests, args.concurrency, f"l{round_}",
                                                       form["signing_secret"], processes[0].pid))

        expected_leads = args.warmup + 2 * args.requests
        conn = await asyncpg.connect(lead_db.replace("+asyncpg", ""))
        try:
            deadline = time.monotonic() + 60
            while True:
                leads, unsent = await conn.fetchval("SELECT count(*) FROM leads"), await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL")
                if unsent == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        queued = (await channel.declare_queue(f"{namespace}test.events", durable=True, passive=True)
                  ).declaration_result.message_count

        print(f"bench/intake: {args.requests} submissions x2 rounds, concurrency {args.concurrency}, "
              f"one uvicorn process each, {os.cpu_count()} CPUs")
        best = {}
        for name, runs in results.items():
            best[name] = max(runs, key=lambda r: r["rate"])
            for r in runs:
                print(f"  {name:13} {r['rate']:8.0f} leads/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms"
                      f"   server CPU {r['cpu_ms_per_lead']:5.2f} ms/lead"
                      f"   accepted {int(r['accepted'])}/{args.requests}"
                      + (f"   errors {r['errors']}" if r["errors"] else ""))
        ratio = best["lead-service"]["rate"] / best["baseline"]["rate"]
        print(f"  best: lead-service {best['lead-service']['rate']:.0f}/s vs baseline {best['baseline']['rate']:.0f}/s"
              f" → ratio {ratio:.2f} (target ≥ 0.60)")
        cpu_ratio = best["lead-service"]["cpu_ms_per_lead"] / max(best["baseline"]["cpu_ms_per_lead"], 1e-9)
        print(f"  server CPU per accepted lead: lead-service/baseline = {cpu_ratio:.1f}x")
        print(f"  check: {leads} leads stored (expected {expected_leads}), outbox unsent {unsent}, "
              f"{queued} LeadCreated in the RabbitMQ queue")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        await connection.close()
        await delete_namespace(AMQP_URL, namespace)
        await drop_postgres_database(lead_db)
        await drop_postgres_database(base_db)


if __name__ == "__main__":
    asyncio.run(main())
