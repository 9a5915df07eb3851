"""The published API contract (docs/openapi.json and each service's document) and the check of answers."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from salesflow_shared import openapi_merge
from salesflow_shared.contract import contract_violations, document_contract, page_of, record_fields, returns

COMBINED = json.loads((Path(__file__).resolve().parents[2] / "docs/openapi.json").read_text())
PUBLIC = {("post", "/v1/forms/{form_id}/submissions"), ("get", "/v1/sequences/unsubscribe/{token}"),
          ("post", "/v1/sequences/unsubscribe/{token}")}


def operations():
    for path, item in COMBINED["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_every_success_answer_is_a_named_model_and_every_error_the_one_problem() -> None:
    untyped, inlined_errors = [], []
    for method, path, operation in operations():
        for status, answer in operation["responses"].items():
            for media_type, content in (answer.get("content") or {}).items():
                schema = json.dumps(content.get("schema", {}))
                if status.startswith("2") and media_type == "application/json" and '"$ref"' not in schema:
                    untyped.append(f"{method} {path} {status}")
                if status >= "400" and content.get("schema") != {"$ref": "#/components/schemas/Problem"}:
                    inlined_errors.append(f"{method} {path} {status}")
    assert untyped == [] and inlined_errors == []


def test_operation_ids_are_short_unique_camel_case_and_schema_titles_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9]{2,40}", op_id) for op_id in ids), ids
    assert {"createLead", "listLeads", "getFunnelReport", "getLeadTimeline", "getPosition"} <= set(ids)
    titles = [schema.get("title", name) for name, schema in COMBINED["components"]["schemas"].items()]
    assert len(titles) == len(set(titles))
    assert all(schema.get("title", name) == name for name, schema in COMBINED["components"]["schemas"].items())


def test_security_and_headers_are_declared_where_they_act() -> None:
    assert COMBINED["components"]["securitySchemes"]["bearerAuth"] == {
        **COMBINED["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    for method, path, operation in operations():
        names = {p.get("name") or p["$ref"].rsplit("/", 1)[-1] for p in operation.get("parameters", [])}
        assert "XCorrelationId" in names, (method, path)
        if (method, path) in PUBLIC:
            assert operation["security"] == [], (method, path)
        else:
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403", "404"} <= set(operation["responses"]), (method, path)
        if method in ("put", "patch"):
            assert "IfMatch" in names and {"412", "428"} <= set(operation["responses"]), (method, path)
    create = COMBINED["paths"]["/v1/leads"]["post"]
    assert "Idempotency-Key" in {p.get("name") for p in create["parameters"]}
    assert set(create["responses"]["201"]["headers"]) >= {"ETag", "Location", "X-Correlation-ID"}
    assert set(create["responses"]) >= {"200", "201"}  # an open lead with the same email is updated instead
    submit = COMBINED["paths"]["/v1/forms/{form_id}/submissions"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    assert "Salesflow-Signature" in {p.get("name") for p in submit["parameters"]}
    assert "text/csv" in COMBINED["paths"]["/v1/imports"]["post"]["requestBody"]["content"]
    assert "Retry-After" in submit["responses"]["429"]["headers"]


def test_the_checked_in_document_is_what_the_services_publish() -> None:
    assert openapi_merge.render(openapi_merge.merge(openapi_merge.service_documents())) == \
        (Path(__file__).resolve().parents[2] / "docs/openapi.json").read_text()


class Thing(BaseModel):
    id: str
    created_at: datetime


def _app() -> FastAPI:
    router = APIRouter()

    @router.get("/v1/things", **returns(page_of(Thing)))
    async def list_things() -> dict:
        return {}

    app = FastAPI()
    app.include_router(router)
    document_contract(app)
    return app


def test_answers_are_checked_against_the_document() -> None:
    app = _app()
    check = lambda status, body, ct="application/json": contract_violations(  # noqa: E731
        app, "GET", "/v1/things", status, ct, json.dumps(body).encode())
    good = {"items": [{"id": "t1", "created_at": "2026-01-05T09:30:00Z"}], "next_cursor": None}
    assert check(200, good) == []
    naive = {"items": [{"id": "t1", "created_at": "2026-01-05T09:30:00"}], "next_cursor": None}
    assert check(200, naive) and "created_at" in check(200, naive)[0]  # a time without its offset
    assert check(200, {"items": [{"id": 1, "created_at": "2026-01-05T09:30:00Z"}]})  # a number for a string
    assert check(200, good, "text/csv")  # an undeclared content type
    assert check(418, {"title": "teapot"})  # an undeclared status
    assert check(422, {"type": "about:blank", "title": "x", "status": 422, "detail": "d"},
                 "application/problem+json") == []


@dataclass(frozen=True)
class ThingRecord:
    org_id: str
    id: str
    amount: Decimal
    note: str | None
    done_at: datetime | None = None


def test_a_response_declared_from_its_record_answers_a_new_column_without_repeating_it() -> None:
    class ThingOut(record_fields(ThingRecord, omit=("org_id",))):
        """A thing."""

        amount: str = Field(description="decimal string")
        seconds: float | None

    schema = ThingOut.model_json_schema()
    # the record's order, the left-out column gone, the redeclared one in place, the added one last
    assert list(schema["properties"]) == ["id", "amount", "note", "done_at", "seconds"]
    assert schema["required"] == ["id", "amount", "note", "done_at", "seconds"]  # a default does not make it optional
    assert schema["properties"]["amount"] == {"description": "decimal string", "title": "Amount", "type": "string"}
    assert schema["properties"]["done_at"]["anyOf"] == [{"format": "date-time", "type": "string"}, {"type": "null"}]
    assert schema["description"] == "A thing."
    with pytest.raises(TypeError, match="no fields"):
        record_fields(ThingRecord, omit=("orgid",))
