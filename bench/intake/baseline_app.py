"""The baseline for bench/intake: a bare FastAPI app doing each measured request's database work with asyncpg.

`POST /submit` inserts the same lead row a submission makes. No signature check, no raw-submission store, no
mapping, scoring, de-duplication, outbox or events: the floor a real intake is compared against.

`GET /read/{name}` (bench/intake/request_cpu.py) runs, in one transaction, the exact statements a service sends
for one read (captured from the service's own code, with their parameters, into the pickle named by
BASELINE_READS_FILE) and answers their rows as JSON: the floor of that read.

Run by run.py and request_cpu.py: `uvicorn baseline_app:app` with BASELINE_DATABASE_URL (and BASELINE_READS_FILE).
"""
from __future__ import annotations

import asyncio
import json
import os
import pickle
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
        captured: dict[str, tuple[str, list[tuple[str, tuple[Any, ...]]]]] = pickle.loads(
            await asyncio.to_thread(Path(reads_file).read_bytes))
        for name, (dsn, statements) in captured.items():
            app.state.reads[name] = (await asyncpg.create_pool(dsn, min_size=2, max_size=10), statements)
    yield
    for pool, _ in app.state.reads.values():
        await pool.close()
    await app.state.pool.close()


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
        for sql, parameters in statements:
            results.append([dict(row) for row in await conn.fetch(sql, *parameters)])
    return Response(json.dumps(results, default=str), media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
