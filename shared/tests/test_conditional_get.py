"""ETag and If-None-Match on every API read (salesflow_shared.middleware.ConditionalGetMiddleware)."""
from __future__ import annotations

import hashlib

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse

from salesflow_shared.middleware import ConditionalGetMiddleware

REPORT = {"report": "funnel", "stages": [{"name": "Qualify", "leads": 3}]}


def _app() -> FastAPI:
    app = FastAPI()
    state = {"report": dict(REPORT)}

    @app.get("/v1/leads/{lead_id}")
    async def versioned(lead_id: str) -> JSONResponse:
        return JSONResponse({"id": lead_id, "version": 4}, headers={"ETag": '"4"'})

    @app.get("/v1/reports/funnel")
    async def report() -> dict:
        return state["report"]

    @app.get("/v1/reports/funnel.csv")
    async def report_csv() -> Response:
        return Response("stage,leads\nQualify,3\n", media_type="text/csv")

    @app.get("/v1/exports/leads")
    async def export() -> StreamingResponse:
        async def rows():
            yield b"id\n"
            yield b"l-1\n"
        return StreamingResponse(rows(), media_type="text/csv")

    @app.get("/v1/missing")
    async def missing() -> JSONResponse:
        return JSONResponse({"title": "Not found"}, status_code=404)

    @app.middleware("http")  # as in every service (request metrics): it re-streams each answer in chunks
    async def measure(request, call_next):  # type: ignore[no-untyped-def]
        return await call_next(request)

    app.state.report = state
    app.add_middleware(ConditionalGetMiddleware)
    return app


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_versioned_read_keeps_its_etag_and_answers_304_when_it_is_still_current() -> None:
    async with await _client(_app()) as client:
        read = await client.get("/v1/leads/l-1")
        assert read.status_code == 200 and read.headers["etag"] == '"4"'
        same = await client.get("/v1/leads/l-1", headers={"If-None-Match": '"3", "4"'})
        assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == '"4"'
        assert "content-length" not in same.headers or same.headers["content-length"] == "0"
        weak = await client.get("/v1/leads/l-1", headers={"If-None-Match": 'W/"4"'})
        assert weak.status_code == 304  # If-None-Match compares weakly (RFC 9110 13.1.2)
        stale = await client.get("/v1/leads/l-1", headers={"If-None-Match": '"3"'})
        assert stale.status_code == 200 and stale.json() == {"id": "l-1", "version": 4}


async def test_a_report_gets_the_digest_of_its_bytes_as_a_strong_etag_that_changes_with_it() -> None:
    app = _app()
    async with await _client(app) as client:
        first = await client.get("/v1/reports/funnel")
        expected = '"' + hashlib.sha256(first.content).hexdigest()[:32] + '"'
        assert first.headers["etag"] == expected and not expected.startswith("W/")
        assert (await client.get("/v1/reports/funnel", headers={"If-None-Match": expected})).status_code == 304
        assert (await client.get("/v1/reports/funnel", headers={"If-None-Match": "*"})).status_code == 304
        app.state.report["report"] = {**REPORT, "stages": [{"name": "Qualify", "leads": 4}]}
        changed = await client.get("/v1/reports/funnel", headers={"If-None-Match": expected})
        assert changed.status_code == 200 and changed.headers["etag"] != expected
        assert changed.json()["stages"][0]["leads"] == 4
        csv_report = await client.get("/v1/reports/funnel.csv")
        assert csv_report.headers["etag"] == '"' + hashlib.sha256(b"stage,leads\nQualify,3\n").hexdigest()[:32] + '"'


async def test_streams_and_errors_pass_untouched() -> None:
    async with await _client(_app()) as client:
        export = await client.get("/v1/exports/leads", headers={"If-None-Match": "*"})
        assert export.status_code == 200 and export.text == "id\nl-1\n" and "etag" not in export.headers
        missing = await client.get("/v1/missing", headers={"If-None-Match": "*"})
        assert missing.status_code == 404 and "etag" not in missing.headers
