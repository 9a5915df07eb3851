"""The baseline for bench/intake: a bare FastAPI app doing each measured request's database work with asyncpg.

`POST /submit` inserts the same lead row a submission makes. No signature check, no raw-submission store, no
mapping, scoring, de-duplication, outbox or events: the floor a real intake is compared against.

`GET /read/{name}` (bench/intake/request_cpu.py) runs, in one transaction, the exact statements a service sends
for one read (captured from the service's own code, with their parameters, into the pickle named by
BASELINE_READS_FILE) and answers their rows as JSON: the floor of that read.

`POST /write/{name}` does the same for a write (BASELINE_WRITES_FILE): the statements the service's own intake
sent for one lead, in one transaction, each identifier and the email made new for the request (so every
request inserts its own lead, as the service's do), then the event it published, with a publisher confirm, and
answers the inserted rows as JSON: the floor of the same database and broker work, without the service's
framework, validation, domain code and SQLAlchemy.

Run by run.py and request_cpu.py: `uvicorn baseline_app:app` with BASELINE_DATABASE_URL (and
BASELINE_READS_FILE, BASELINE_WRITES_FILE).
"""
from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

DDL = """
CREATE TABLE IF NOT EXISTS leads (
    id text PRIMARY KEY, org_id text NOT NULL, email text, first_name text, last_name text, company text,
    title text, source text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL
)"""


@asynccontextmanager
async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
    app.state.pool = await asyncpg.create_pool(os.environ["BASELINE_DATABASE_URL"], min_size=5, max_size=10)
    async with app.state.pool.acquire() as conn:
        await conn.execute(DDL)
    # name -> (the pool of the service's database, [(sql, parameters)])
    app.state.reads = {}
    reads_file = os.environ.get("BASELINE_READS_FILE")
    if reads_file:
        # name -> (the service's database, [(sql, parameters)], the settings the service's connections run with)
        captured: dict[str, tuple[str, list[tuple[str, tuple[Any, ...]]], dict[str, str]]] = pickle.loads(
            await asyncio.to_thread(Path(reads_file).read_bytes))
        for name, (dsn, statements, settings) in captured.items():
            app.state.reads[name] = (await asyncpg.create_pool(dsn, min_size=2, max_size=10,
                                                               server_settings=settings or None), statements)
    # name -> (pool, [(sql, parameters, many)], the captured email, the exchange, the captured event message)
    app.state.writes = {}
    broker = None
    writes_file = os.environ.get("BASELINE_WRITES_FILE")
    if writes_file:
        writes: dict[str, dict[str, Any]] = pickle.loads(await asyncio.to_thread(Path(writes_file).read_bytes))
        broker = await aio_pika.connect(os.environ["BASELINE_AMQP_URL"])
        channel = await broker.channel(publisher_confirms=True)
        for name, write in writes.items():
            exchange = await channel.declare_exchange(write["exchange"], aio_pika.ExchangeType.TOPIC, durable=True)
            app.state.writes[name] = (await asyncpg.create_pool(write["dsn"], min_size=2, max_size=10),
                                      write["statements"], write["email"], exchange, write["message"])
    yield
    for pool, *_ in [*app.state.reads.values(), *app.state.writes.values()]:
        await pool.close()
    if broker is not None:
        await broker.close()
    await app.state.pool.close()


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def made_new(value: Any, ids: dict[str, str], email: str, new_email: str) -> Any:
    """A captured parameter with each identifier in it replaced by the request's own (the same old id gets the
    same new one in every statement of the request) and the captured email by the request's."""
    if isinstance(value, str):
        value = UUID_TEXT.sub(lambda m: ids.setdefault(m.group(0), str(uuid.uuid4())), value)
        return value.replace(email, new_email)
    if isinstance(value, list | tuple):
        return type(value)(made_new(v, ids, email, new_email) for v in value)
    return value


app = FastAPI(lifespan=lifespan)


@app.post("/submit")
async def submit(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    lead_id = str(uuid.uuid4())
    name = (body.get("name") or "").partition(" ")
    async with request.app.state.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO leads (id, org_id, email, first_name, last_name, company, title, source, status, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 'web_form', 'open', $8)",
            lead_id, "bench-org", body.get("email", "").lower(), name[0], name[2] or None, body.get("company"),
            body.get("job"), datetime.now(UTC))
    return JSONResponse({"lead_id": lead_id}, status_code=201)


@app.get("/read/{name}")
async def read(name: str, request: Request) -> Response:
    pool, statements = request.app.state.reads[name]
    results = []
    async with pool.acquire() as conn, conn.transaction():
        for sql, parameters, _many in statements:
            results.append([dict(row) for row in await conn.fetch(sql, *parameters)])
    return Response(json.dumps(results, default=str), media_type="application/json")


@app.post("/write/{name}")
async def write(name: str, request: Request) -> Response:
    pool, statements, email, exchange, message = request.app.state.writes[name]
    new_email = json.loads(await request.body())["email"]
    ids: dict[str, str] = {}
    results = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            for sql, parameters, many in statements:
                if many:
                    await conn.executemany(sql, [made_new(p, ids, email, new_email) for p in parameters])
                else:
                    results.append([dict(row) for row in await conn.fetch(
                        sql, *made_new(parameters, ids, email, new_email))])
        await exchange.publish(aio_pika.Message(
            made_new(message["body"], ids, email, new_email).encode(), content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=made_new(message["event_id"], ids, email, ""),
            type=message["event_type"], headers=message["headers"]), routing_key=message["event_type"], mandatory=True)
    return Response(json.dumps(results, default=str), status_code=201, media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
