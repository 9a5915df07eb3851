"""One OpenAPI document for front-end teams: the six services' `/v1` APIs as the gateway serves them.

`salesflow openapi` builds each service's FastAPI app (nothing is started: no database, no broker), takes its
OpenAPI document and merges them into docs/openapi.json; `--check` fails when the file is not current (CI).
Only the `/v1` paths are kept (the gateway routes nothing else). Component schemas that two services define
differently, and clashing operation ids, are prefixed with the service's name so no service's `$ref` changes
meaning.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PUBLIC_PREFIX = "/v1/"
REF_PREFIX = "#/components/schemas/"


def service_documents() -> list[tuple[str, dict[str, Any]]]:
    """(service name, OpenAPI document) of each of the six services, in their fixed order."""
    from .runner import SERVICES

    documents = []
    for entry in SERVICES:
        app = entry.load_module("entrypoints.http").create_app()
        documents.append((entry.name, app.openapi()))
    return documents


def _camel(service: str) -> str:
    return "".join(part.capitalize() for part in service.removesuffix("-service").split("-"))


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                name = value[len(REF_PREFIX):]
                out[key] = REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge(documents: Iterable[tuple[str, Mapping[str, Any]]], *, title: str = "Salesflow API",
          version: str = "1") -> dict[str, Any]:
    documents = list(documents)
    # A schema name is shared only when every service that defines it defines it identically.
    definitions: dict[str, list[tuple[str, Any]]] = {}
    for service, doc in documents:
        for name, schema in (doc.get("components", {}).get("schemas") or {}).items():
            definitions.setdefault(name, []).append((service, schema))
    clashing = {name for name, defs in definitions.items()
                if any(json.dumps(s, sort_keys=True) != json.dumps(defs[0][1], sort_keys=True) for _, s in defs)}

    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    security_schemes: dict[str, Any] = {}
    tags: list[dict[str, Any]] = []
    path_owner: dict[str, str] = {}
    operation_ids: set[str] = set()
    for service, doc in documents:
        renames = {name: f"{_camel(service)}{name}" for name in clashing
                   if name in (doc.get("components", {}).get("schemas") or {})}
        doc = _rewrite_refs(doc, renames)
        for name, schema in (doc.get("components", {}).get("schemas") or {}).items():
            schemas[renames.get(name, name)] = schema
        for name, scheme in (doc.get("components", {}).get("securitySchemes") or {}).items():
            if name in security_schemes and security_schemes[name] != scheme:
                raise ValueError(f"{service} defines security scheme {name!r} unlike another service")
            security_schemes[name] = scheme
        tags.append({"name": service, "description": (doc.get("info") or {}).get("description") or service})
        for path, item in (doc.get("paths") or {}).items():
            if not path.startswith(PUBLIC_PREFIX):
                continue
            if path in paths:
                raise ValueError(f"{path} is served by both {path_owner[path]} and {service}")
            path_owner[path] = service
            merged_item = {}
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    merged_item[method] = operation
                    continue
                operation = dict(operation)
                operation["tags"] = [service, *[t for t in operation.get("tags", []) if t != service]]
                operation["x-salesflow-service"] = service
                op_id = operation.get("operationId")
                if op_id is not None:
                    if op_id in operation_ids:
                        op_id = f"{service.removesuffix('-service')}_{op_id}"
                    operation_ids.add(op_id)
                    operation["operationId"] = op_id
                merged_item[method] = operation
            paths[path] = merged_item

    components: dict[str, Any] = {"schemas": dict(sorted(schemas.items()))}
    if security_schemes:
        components["securitySchemes"] = security_schemes
    openapi_version = max((doc.get("openapi", "3.1.0") for _, doc in documents), default="3.1.0")
    return {
        "openapi": openapi_version,
        "info": {"title": title, "version": version,
                 "description": "The six Salesflow services behind one gateway (generated by `salesflow "
                                "openapi`; do not edit)."},
        "servers": [{"url": "/", "description": "the gateway"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": components,
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def export(target: Path, *, check: bool = False) -> bool:
    """Write (or, with check, compare) the combined document; True when the file was stale."""
    text = render(merge(service_documents()))
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if current == text:
        return False
    if not check:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return True
