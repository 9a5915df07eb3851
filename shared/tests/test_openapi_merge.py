"""The combined OpenAPI document the gateway's users get (`salesflow openapi`)."""
from __future__ import annotations

import json

import pytest

from salesflow_shared import openapi_merge
from salesflow_shared.openapi_merge import merge


def _doc(paths: dict, schemas: dict, description: str = "") -> dict:
    return {"openapi": "3.1.0", "info": {"title": "x", "version": "0", "description": description},
            "paths": paths, "components": {"schemas": schemas}}


def _op(op_id: str, ref: str) -> dict:
    return {"operationId": op_id, "responses": {"200": {"content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}}}


def test_merge_keeps_v1_paths_shares_identical_schemas_and_prefixes_clashing_ones() -> None:
    problem = {"type": "object", "properties": {"title": {"type": "string"}}}
    lead = _doc({"/v1/leads": {"get": _op("list", "Item")}, "/healthz": {"get": _op("healthz", "Problem")}},
                {"Item": {"type": "object", "properties": {"email": {"type": "string"}}}, "Problem": problem})
    pipeline = _doc({"/v1/tasks/{task_id}": {"get": _op("list", "Item")}},
                    {"Item": {"type": "object", "properties": {"due_at": {"type": "string"}}}, "Problem": problem})

    merged = merge([("lead-service", lead), ("pipeline-service", pipeline)])

    assert sorted(merged["paths"]) == ["/v1/leads", "/v1/tasks/{task_id}"]  # /healthz is not routed by the gateway
    schemas = merged["components"]["schemas"]
    assert sorted(schemas) == ["LeadItem", "PipelineItem", "Problem"]
    lead_get = merged["paths"]["/v1/leads"]["get"]
    task_get = merged["paths"]["/v1/tasks/{task_id}"]["get"]
    assert lead_get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/LeadItem")
    assert task_get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PipelineItem")
    assert schemas["PipelineItem"]["properties"] == {"due_at": {"type": "string"}}
    assert (lead_get["operationId"], task_get["operationId"]) == ("list", "pipeline_list")
    assert lead_get["tags"][0] == "lead-service" and task_get["x-salesflow-service"] == "pipeline-service"


def test_merge_refuses_a_path_served_by_two_services() -> None:
    doc = _doc({"/v1/leads": {"get": _op("a", "X")}}, {"X": {"type": "object"}})
    with pytest.raises(ValueError, match="/v1/leads"):
        merge([("lead-service", doc), ("metrics-service", doc)])


def test_export_check_reports_a_stale_file_without_writing_it(tmp_path, monkeypatch) -> None:
    doc = _doc({"/v1/reports": {"get": _op("r", "R")}}, {"R": {"type": "object"}})
    monkeypatch.setattr(openapi_merge, "service_documents", lambda: [("metrics-service", doc)])
    target = tmp_path / "openapi.json"

    assert openapi_merge.export(target, check=True) is True and not target.exists()
    assert openapi_merge.export(target) is True
    assert "/v1/reports" in json.loads(target.read_text())["paths"]
    assert openapi_merge.export(target, check=True) is False
    target.write_text(target.read_text().replace("/v1/reports", "/v1/old"))
    assert openapi_merge.export(target, check=True) is True


def test_the_six_services_documents_merge_without_clashes() -> None:
    merged = merge(openapi_merge.service_documents())
    assert [t["name"] for t in merged["tags"]] == ["lead-service", "pipeline-service", "assignment-service",
                                                    "notification-service", "metrics-service", "incentive-service"]
    assert all(path.startswith("/v1/") for path in merged["paths"])
