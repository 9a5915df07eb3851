"""The baseline for bench/intake: a bare FastAPI endpoint that inserts the same lead row with asyncpg.

No signature check, no raw-submission store, no mapping, scoring, de-duplication, outbox or events: the
floor a real intake is compared against. Run by run.py: `uvicorn baseline_app:app` with BASELINE_DATABASE_URL.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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
    yield
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


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
