"""The API contract every service publishes: one set of shared shapes and one way of declaring them.

Front-end teams generate clients from the OpenAPI documents (docs/openapi.json), so every operation declares
what it answers, the same way in every service:

- success bodies: `@router.get(..., **returns(LeadOut, etag=True))` documents the model (and the ETag header)
  without changing what the route sends (routes build their JSON themselves; the contract tests check that
  what they send matches what is declared);
- lists: `page_of(LeadOut)` is the one pagination envelope, as a concrete named model (`LeadOutPage`);
- errors: every operation refers to the one `Problem` component (RFC 9457) for the statuses it can answer,
  derived from what it takes (`build_openapi`); nothing is inlined per route. A route that may answer another
  status (e.g. 429) names it in its decorator (`responses={429: {"description": "..."}}`) and gets the same
  Problem answer with its headers;
- security: the bearer JWT scheme, applied to every operation that authenticates;
- headers: `X-Correlation-ID` on every request and response, `Idempotency-Key` on every POST (see
  idempotency.py; a POST that cannot honour one says why with `idempotency_exempt`), a required `If-Match`
  (412, 428) on every PATCH and PUT, `ETag` with `If-None-Match` and 304 on every JSON read (served by
  `middleware.ConditionalGetMiddleware`), `Retry-After` where a 429 or 503 may come, and the IETF
  `RateLimit-Limit` / `-Remaining` / `-Reset` on every answer of an operation that may answer 429;
- operation ids: short and unique (camelCase of the route's name, `createLead`), tags by resource.

`document_contract(app)` is installed by `create_service_app`. A new service (e.g. incentive-service) follows
the conventions by:
1. building its app with `create_service_app` (errors, security, headers, operation ids, tags: automatic);
2. `returns(Model, etag=...)` on each route (or `response_model=` plus `etag_header()`), its answer models in
   `entrypoints/responses.py` (one that answers a repository record's columns takes them from the record with
   `record_fields`), lists as `page_of(Item)` served by `pagination.keyset_page` (limit + cursor, bad cursor
   422);
3. `preconditions.strong_etag` / `preconditions.check_if_match` for ETags and If-Match (strong, 428, 412);
4. `clock.Rfc3339` for times it reads, `clock.rfc3339` / `clock.UtcDateTime` for times it writes, and
   `StrictBool` for booleans;
5. a line in `TAG_DESCRIPTIONS` for each new resource, then `salesflow openapi` (CI checks the document is
   current, Redocly-clean and generates typed clients).
"""
from __future__ import annotations

import dataclasses
import re
import typing
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, create_model

from .clock import UtcDateTime
from .errors import PROBLEM_CONTENT_TYPE, PROBLEM_SCHEMA
from .pagination import Page

SCHEMA_REF = "#/components/schemas/"
HEADER_REF = "#/components/headers/"
PARAMETER_REF = "#/components/parameters/"
SECURITY_SCHEME = "bearerAuth"

# Money is a decimal string (never a float: 0.1 + 0.2 must stay 0.30), two decimals at most.
MONEY_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,2})?$"


class Money(BaseModel):
    """An amount in a currency: the shape of every money value the API answers."""

    model_config = ConfigDict(title="Money")
    amount: str = Field(pattern=MONEY_PATTERN, description="decimal string, e.g. \"1250.00\"")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")


class LeadReference(BaseModel):
    """Which lead something is about (the id every service shares)."""

    model_config = ConfigDict(title="LeadReference")
    lead_id: str


def _answered_type(hint: Any) -> Any:
    """A record's instant is answered with its offset (SQLite, in embedded mode, reads it back naive)."""
    if hint is datetime:
        return UtcDateTime
    if hint == datetime | None:
        return UtcDateTime | None
    return hint


def record_fields(record: type[Any], *, omit: tuple[str, ...] = ()) -> type[BaseModel]:
    """The fields of a repository record (a dataclass) as the base of the response model that answers it, so a
    column is declared once: `class DeliveryOut(record_fields(Delivery, omit=("payload",)))`.

    Every field is required in the answer (the routes send each one, null included), in the record's order, with
    the record's type; the response class names the fields it leaves out, redeclares the ones it answers in
    another form (money as a decimal string, a description) and adds the ones the record has not.
    """
    hints = typing.get_type_hints(record)
    names = [field.name for field in dataclasses.fields(record)]
    if unknown := set(omit) - set(names):
        raise TypeError(f"{record.__name__} has no fields {sorted(unknown)}")
    answered: dict[str, Any] = {name: (_answered_type(hints[name]), ...) for name in names if name not in omit}
    return create_model(f"{record.__name__}Fields", __module__=record.__module__, **answered)


_PAGES: dict[type, type] = {}


def page_of(item: type[BaseModel], name: str | None = None) -> type[Page[Any]]:
    """The concrete pagination envelope of `item` (`LeadOut` -> `LeadOutPage`), created once per item model."""
    if item not in _PAGES:
        title = name or f"{item.__name__}Page"
        # valid-type: the page's item model is a value here (one class per item model, made at run time)
        _PAGES[item] = type(title, (Page[item],), {"model_config": ConfigDict(title=title),  # type: ignore[valid-type]
                                                   "__module__": item.__module__})
    return _PAGES[item]


# A success answer that is a file rather than JSON (e.g. `returns(CSV_FILE, media_type="text/csv")`).
CSV_FILE: dict[str, Any] = {"type": "string", "description": "CSV text, UTF-8, with a header row"}
# Headers a success answer may document beside its body (`returns(..., headers=LOCATION)`).
LOCATION: dict[str, Any] = {"Location": {"$ref": HEADER_REF + "Location"}}


def returns(model: Any, *, status: int = 200, etag: bool = False, description: str = "Success",
            headers: dict[str, Any] | None = None, media_type: str = "application/json",
            also: dict[int, Any] | None = None, errors: tuple[int, ...] = (),
            checked_beyond_schema: tuple[str, ...] = ()) -> dict[str, Any]:
    """Decorator arguments documenting the success answer (`model` is a pydantic model or a JSON schema).

    The route's output is not filtered through the model (`response_model=None`): routes answer their JSON
    themselves (often with an ETag), and the contract tests check the answers against these declarations.
    `also` documents other success statuses, e.g. `{200: LeadOut}` beside 201 for "updated instead"; `errors`
    the problem statuses the route answers beyond the ones its method, path and security imply (e.g. 403 on a
    public route that refuses an origin), each referenced to the one problem+json schema. `checked_beyond_schema`
    names the fields the route checks further than its JSON Schema can say (ids that must exist, an end after a
    start, a real time zone): a request the schema allows may still be a 422 naming one of them, and only them
    (see CHECKED_BEYOND_SCHEMA).
    """
    responses: dict[int | str, Any] = {status: _success(model, etag, description, headers, media_type)}
    for other_status, other_model in (also or {}).items():
        responses[other_status] = _success(other_model, etag, "Success", None, media_type)
    for error_status in errors:
        responses[error_status] = {"description": ERROR_DESCRIPTIONS[error_status]}
    if checked_beyond_schema:
        responses[422] = {"description": ERROR_DESCRIPTIONS[422], CHECKED_BEYOND_SCHEMA: list(checked_beyond_schema)}
    return {"response_model": None, "responses": responses}


# The document extension naming why a POST takes no Idempotency-Key (every other POST declares and honours it).
IDEMPOTENCY_EXEMPT = "x-idempotency-key-exempt"


def idempotency_exempt(reason: str) -> dict[str, Any]:
    """`openapi_extra` of a POST that cannot honour Idempotency-Key, stating why (the contract tests read it)."""
    return {IDEMPOTENCY_EXEMPT: reason}


def etag_header(status: int = 200, *, checked_beyond_schema: tuple[str, ...] = ()) -> dict[str, Any]:
    """Decorator arguments declaring the ETag header on a route that keeps its `response_model` (and, as in
    `returns`, the fields it checks beyond its schema)."""
    responses: dict[int, Any] = {status: {"headers": {"ETag": {"$ref": HEADER_REF + "ETag"}}}}
    if checked_beyond_schema:
        responses[422] = {"description": ERROR_DESCRIPTIONS[422], CHECKED_BEYOND_SCHEMA: list(checked_beyond_schema)}
    return {"responses": responses}


def _success(model: Any, etag: bool, description: str, headers: dict[str, Any] | None,
             media_type: str) -> dict[str, Any]:
    declared: dict[str, Any] = dict(headers or {})
    if etag:
        declared["ETag"] = {"$ref": HEADER_REF + "ETag"}
    answer: dict[str, Any] = {"description": description}
    if declared:
        answer["headers"] = declared
    if isinstance(model, type) and issubclass(model, BaseModel):
        answer["model"] = model
        if media_type != "application/json":
            answer["content"] = {media_type: {}}
    else:
        answer["content"] = {media_type: {"schema": model}}
    return answer


# --- the document --------------------------------------------------------------------------------------------

COMPONENT_HEADERS: dict[str, Any] = {
    "XCorrelationId": {"description": "The request's correlation id (yours, or one made for you); every event "
                                      "the request causes carries it", "schema": {"type": "string"}},
    "ETag": {"description": "Strong validator of this representation; send it back in If-Match to change it",
             "schema": {"type": "string", "pattern": r'^"[^"]*"$'}},
    "RetryAfter": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}},
    # IETF draft-ietf-httpapi-ratelimit-headers, on every answer of a request a rate limit acted on.
    "RateLimitLimit": {"description": "Requests allowed per minute by the limit that acted on this request",
                       "schema": {"type": "integer", "minimum": 0}},
    "RateLimitRemaining": {"description": "Requests left now under that limit",
                           "schema": {"type": "integer", "minimum": 0}},
    "RateLimitReset": {"description": "Seconds until that limit is fully available again",
                       "schema": {"type": "integer", "minimum": 0}},
    "Location": {"description": "The URL of the created resource", "schema": {"type": "string"}},
}
COMPONENT_PARAMETERS: dict[str, Any] = {
    "IfMatch": {"name": "If-Match", "in": "header", "required": True,
                "description": "The strong ETag you read (a singleton never set is at \"0\"). Every PATCH and PUT "
                               "changes a versioned resource: without If-Match it is refused with 428, with a stale "
                               "or weak (W/) one with 412",
                "schema": {"type": "string", "minLength": 1}},
    "IfNoneMatch": {"name": "If-None-Match", "in": "header", "required": False,
                    "description": "The ETag you hold; 304 with no body when the answer is still the same",
                    "schema": {"type": "string"}},
    "XCorrelationId": {"name": "X-Correlation-ID", "in": "header", "required": False,
                       "description": "Your id for this request (echoed back; carried by the events it causes, so "
                                      "the lead timeline shows its effects)",
                       "schema": {"type": "string", "maxLength": 100}},
}

# What each status means, for every operation that may answer it.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request",
    401: "Missing or invalid bearer token",
    403: "The token's role may not do this",
    404: "Not found (also for another organization's ids)",
    409: "Conflict, e.g. an Idempotency-Key reused with another body, or a state that forbids the change",
    410: "Gone: the stored answer to this Idempotency-Key was erased with the personal data it held",
    412: "If-Match does not match the current ETag",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed; `errors` names each field",
    428: "If-Match required",
    429: "Rate limited; retry after Retry-After seconds",
    503: "Unavailable for now (e.g. the database); retry after Retry-After seconds, with the same Idempotency-Key",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}

# The 422 answer's list of fields an operation checks beyond its JSON Schema. A request the schema allows is
# answered 422 only for one of these fields (a field path like `steps.0.template_id` is covered by `steps`), so
# a client (and the schema fuzzer) can tell a business rule from an undocumented constraint. Every operation
# with a `cursor` lists it: a cursor is valid only if this API issued it. `*` says the service validates the
# whole body itself (a free-form document such as a commission plan).
CHECKED_BEYOND_SCHEMA = "x-checked-beyond-schema"

# Tags follow resources: the first path segment after /v1, except where a sub-resource is its own resource.
TAG_OVERRIDES: dict[str, str] = {"/v1/leads/custom-fields": "custom-fields", "/v1/routing-rules": "routing",
                                 "/v1/pipelines/templates": "pipeline-templates"}


# What each resource tag holds (Redocly and generated docs show them; a new resource adds its line).
TAG_DESCRIPTIONS: dict[str, str] = {
    "activities": "Calls, emails, meetings, demos, proposals and notes logged on a lead",
    "admin": "Operations of an organization's admin (parked messages)",
    "assignments": "Assignment decisions (who got a lead, by which rule, and why) and manual reassignment",
    "companies": "Companies leads belong to",
    "contacts": "The people leads are about",
    "custom-fields": "Typed custom fields of an organization's leads",
    "deliveries": "What was emailed, synced to Mailchimp or sent to webhooks, to whom, why, with the outcome",
    "forecasts": "Forecast snapshots frozen at each period's start",
    "forms": "Web forms, their public submission endpoint and stored submissions",
    "imports": "CSV imports of leads and their progress",
    "leads": "Leads: create, read, list, export, edit, disqualify, delete, erase, and a lead's timeline",
    "mailchimp": "Mailchimp settings and the stage rules that subscribe or unsubscribe leads",
    "milestones": "Milestone rules that notify reps (deals won, big stage exits, first deal, quota reached)",
    "operations": "Health, readiness and Prometheus metrics of a service",
    "pipeline-templates": "Ready-made pipelines an admin can instantiate",
    "pipelines": "Pipelines and their ordered stages (guidance, goals, task templates)",
    "positions": "Where each lead stands in its pipeline; moving, winning and losing leads",
    "quotas": "Quotas of reps and teams per period",
    "reports": "Sales reports over the event history (JSON or CSV)",
    "reps": "The rep directory: skills, capacity, working hours and absences",
    "routing": "Versioned routing rules and their simulation",
    "scoring-rules": "Rules that score leads",
    "sequences": "Email sequences, their enrollments and the public unsubscribe link",
    "tasks": "Tasks of reps and teams",
    "teams": "Teams of reps",
    "templates": "Email templates",
    "territories": "Territories by country, region and postcode",
    "webhook-subscriptions": "Signed webhooks for rep notifications",
}


def camel_case(name: str) -> str:
    head, *rest = [part for part in re.split(r"[_\W]+", name) if part]
    return head[:1].lower() + head[1:] + "".join(p[:1].upper() + p[1:] for p in rest)


def operation_id(route: APIRoute) -> str:
    """The route's `name` (its function's name unless given) in camelCase: `create_lead` -> `createLead`;
    a `patch_x` route is `updateX`, as everywhere else."""
    name = route.name
    return camel_case("update_" + name.removeprefix("patch_") if name.startswith("patch_") else name)


def resource_tag(path: str) -> str:
    for prefix, tag in TAG_OVERRIDES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return tag
    parts = [p for p in path.split("/") if p]
    if len(parts) > 1 and parts[0] == "v1":
        return parts[1]
    return "admin" if parts[:1] == ["admin"] else "operations"


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the app with its full path, also inside included routers (newer FastAPI keeps
    included routers as routes of their own)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included-router contexts: app.routes are the routes themselves
        return [route for route in app.routes if isinstance(route, APIRoute)]
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            route = context.original_route  # its mounted path and methods, else (not mounted) its own
            methods = context.methods or route.methods or set()
            found.append(_RouteView(context.path_format or route.path_format, methods, route))
    return found  # type: ignore[return-value]  # a _RouteView has every attribute of an APIRoute read here


class _RouteView:
    """An API route as mounted: its full path, methods, and the route's own dependencies and schema flag."""

    def __init__(self, path_format: str, methods: set[str], route: APIRoute) -> None:
        self.path_format = path_format
        self.methods = methods
        self.dependant = route.dependant
        self.include_in_schema = route.include_in_schema
        self.responses = route.responses
        self.regex = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path_format)) + "$")

    def matches_request(self, method: str, path: str) -> bool:
        return method.upper() in self.methods and self.regex.match(path) is not None


def _authenticates(route: APIRoute) -> bool:
    from .auth import authenticate

    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is authenticate:
            return True
        pending.extend(dependant.dependencies)
    return False


RATE_LIMIT_HEADERS: dict[str, Any] = {name: {"$ref": HEADER_REF + component} for name, component in (
    ("RateLimit-Limit", "RateLimitLimit"), ("RateLimit-Remaining", "RateLimitRemaining"),
    ("RateLimit-Reset", "RateLimitReset"))}


def _problem_response(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": ERROR_DESCRIPTIONS.get(status, "Error"),
                              "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": SCHEMA_REF + "Problem"}}},
                              "headers": {"X-Correlation-ID": {"$ref": HEADER_REF + "XCorrelationId"}}}
    if status in (429, 503):
        answer["headers"]["Retry-After"] = {"$ref": HEADER_REF + "RetryAfter"}
    if status == 429:
        answer["headers"].update(RATE_LIMIT_HEADERS)
    return answer


def _conditional_read(path: str, responses: dict[str, Any]) -> bool:
    """An API read answered as one JSON document: `middleware.ConditionalGetMiddleware` gives it an ETag and
    honours If-None-Match (streamed CSV exports, event streams and HTML pages are not conditional)."""
    success = responses.get("200") or {}
    return path.startswith("/v1/") and "application/json" in (success.get("content") or {})


def _error_statuses(method: str, operation: dict[str, Any], secured: bool) -> list[int]:
    params = operation.get("parameters") or []
    statuses = {422, 503}
    if secured:  # 404 too: ids named in the path, the query or the body may not exist (or be another org's)
        statuses |= {401, 403, 404}
    if any(p.get("in") == "path" for p in params):
        statuses.add(404)
    if method in WRITE_METHODS:
        statuses.add(409)
    if method in ("put", "patch"):
        statuses |= {412, 428}
    if any(p.get("in") == "header" and str(p.get("name", "")).lower() == "idempotency-key" for p in params):
        statuses.add(410)  # a retry after the first answer was erased (GDPR) gets no personal data back
    if any(p.get("in") == "header" and str(p.get("name", "")).lower() == "if-match" for p in params):
        statuses.add(412)  # a POST that acts on a versioned resource (e.g. disqualify) honours If-Match too
    if "requestBody" in operation:
        statuses |= {413, 415}
    declared = {int(code) for code in operation.get("responses", {}) if code.isdigit() and int(code) >= 400}
    return sorted(statuses | declared)


def _declare_checked_beyond_schema(responses: dict[str, Any], parameters: list[dict[str, Any]]) -> None:
    if "422" not in responses or "content" not in responses["422"]:
        return
    answer = responses["422"]
    fields = list(answer.get(CHECKED_BEYOND_SCHEMA, []))
    if any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters) and "cursor" not in fields:
        fields.append("cursor")
    if fields:
        answer[CHECKED_BEYOND_SCHEMA] = fields
        checked = ("every field (the service validates this body itself)" if "*" in fields
                   else ", ".join(f"`{field}`" for field in fields))
        answer["description"] = f"{ERROR_DESCRIPTIONS[422]}. Beyond this schema, also checked: {checked}"


def _answered_fields(answer: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    schema = (answer.get("content") or {}).get("application/json", {}).get("schema") or {}
    if "$ref" in schema:
        schema = schemas.get(schema["$ref"].removeprefix(SCHEMA_REF), {})
    return set(schema.get("properties") or {})


def _takes_if_match(operation: dict[str, Any]) -> bool:
    return any(p.get("$ref") == PARAMETER_REF + "IfMatch" or str(p.get("name", "")).lower() == "if-match"
               for p in operation.get("parameters", []))


def _link_created_resources(document: dict[str, Any]) -> None:
    """OpenAPI links from each create operation (a POST answering 201 with the new resource's id, as `id` or under
    the path parameter's own name, e.g. `quota_id`) to the operations on that resource and below it (`createLead`
    -> `getLead`, `updateLead`, ...): clients see how the answer is used, and the stateful fuzzer chains real ids
    instead of guessing them."""
    paths = document.get("paths", {})
    schemas = document.get("components", {}).get("schemas", {})
    for path, item in paths.items():
        created = (item.get("post") or {}).get("responses", {}).get("201")
        if created is None:
            continue
        answered = _answered_fields(created, schemas)
        # The create's own path parameters (a stage's pipeline) carry over; the new id fills the next one.
        carried = {name: f"$request.path.{name}" for name in re.findall(r"\{([^}/]+)\}", path)}
        links: dict[str, Any] = {}
        for other_path, other_item in paths.items():
            match = re.fullmatch(re.escape(path) + r"/\{([^}/]+)\}(/[^{}]*)?", other_path)
            if match is None:
                continue
            parameter = match.group(1)
            field = parameter if parameter in answered else "id" if "id" in answered else None
            if field is None:
                continue
            for operation in other_item.values():
                values = {**carried, parameter: f"$response.body#/{field}"}
                if not match.group(2) and "ETag" in created.get("headers", {}) and _takes_if_match(operation):
                    values["header.If-Match"] = "$response.header.ETag"  # a change to what was just created
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"], "parameters": values,
                    "description": f"`{parameter}` is the `{field}` of the created resource"}
        if links:
            created["links"] = dict(sorted(links.items()))


def build_openapi(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT with claims sub (user id), org (organization id) and role (admin, manager, rep)"}}
    components["headers"] = COMPONENT_HEADERS
    components["parameters"] = COMPONENT_PARAMETERS
    routes = {(route.path_format, method.lower()): route
              for route in api_routes(app) for method in route.methods or ()}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            route = routes.get((path, method))
            secured = route is not None and _authenticates(route)
            operation["security"] = [{SECURITY_SCHEME: []}] if secured else []
            operation["tags"] = [resource_tag(path)]
            parameters = operation.setdefault("parameters", [])
            if method in ("put", "patch"):  # one If-Match, however the route reads it
                parameters[:] = [p for p in parameters if p.get("name", "").lower() != "if-match"]
                parameters.append({"$ref": PARAMETER_REF + "IfMatch"})
            responses = operation.setdefault("responses", {})
            if method == "get" and _conditional_read(path, responses):
                parameters.append({"$ref": PARAMETER_REF + "IfNoneMatch"})
                responses["200"].setdefault("headers", {})["ETag"] = {"$ref": HEADER_REF + "ETag"}
                responses["304"] = {"description": "Not modified: If-None-Match holds the current ETag (no body)",
                                    "headers": {"ETag": {"$ref": HEADER_REF + "ETag"}}}
            parameters.append({"$ref": PARAMETER_REF + "XCorrelationId"})
            own = getattr(route, "responses", None) or {}
            for status in _error_statuses(method, operation, secured):
                declared = own.get(status) or own.get(str(status)) or {}
                if "content" in declared or "model" in declared:  # the route answers this status its own way
                    continue
                responses[str(status)] = {**_problem_response(status),
                                          **{key: value for key, value in declared.items() if key.startswith("x-")}}
            _declare_checked_beyond_schema(responses, parameters)
            rate_limited = "429" in responses
            for answer in responses.values():
                answer.setdefault("headers", {}).setdefault("X-Correlation-ID", {"$ref": HEADER_REF + "XCorrelationId"})
                if rate_limited:  # a limit that may refuse acts on every answer: each says where it stands
                    answer["headers"].update(RATE_LIMIT_HEADERS)
            operation["responses"] = dict(sorted(responses.items()))
    _link_created_resources(document)
    used = sorted({op["tags"][0] for item in document.get("paths", {}).values() for op in item.values()})
    document["tags"] = [{"name": name, "description": TAG_DESCRIPTIONS.get(name, name)} for name in used]
    return document


def document_contract(app: FastAPI) -> None:
    """Serve `build_openapi`'s document (built once) as the app's OpenAPI."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to own the document


# --- checking answers against the document (used by the test kit on every test request) -----------------------

def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker

    from .clock import rfc3339_text

    formats = FormatChecker()

    @formats.checks("date-time", raises=ValueError)
    def _instant(value: object) -> bool:  # RFC 3339 with its offset, in both run modes
        return not isinstance(value, str) or rfc3339_text(value) is not None

    # Local $refs ("#/components/schemas/...") resolve against a root that carries the document's components.
    return Draft202012Validator({"allOf": [schema], "components": document.get("components", {})},
                                format_checker=formats)


def _matches(route: Any, method: str, path: str) -> bool:
    if isinstance(route, _RouteView):
        return route.matches_request(method, path)
    from starlette.routing import Match

    return route.matches({"type": "http", "path": path, "method": method.upper()})[0] is Match.FULL


def contract_violations(app: FastAPI, method: str, path: str, status: int, content_type: str,
                        body: bytes) -> list[str]:
    """What in this answer the app's OpenAPI document does not declare (empty when it conforms)."""
    import json

    cache = app.__dict__.setdefault("_contract_check_cache", {"routes": None, "validators": {}})
    if cache["routes"] is None:
        cache["routes"] = api_routes(app)
    candidates = [r for r in cache["routes"] if _matches(r, method, path)]
    # A literal segment wins over a parameter (/v1/leads/export before /v1/leads/{lead_id}), as in routing.
    route = min(candidates, key=lambda r: r.path_format.count("{"), default=None)
    if route is None or not route.include_in_schema:
        return []
    operation = app.openapi()["paths"].get(route.path_format, {}).get(method.lower())
    if operation is None:
        return []
    answer = operation["responses"].get(str(status)) or operation["responses"].get("default")
    if answer is None:
        return [f"status {status} is not declared (declared: {', '.join(operation['responses'])})"]
    media_type = content_type.split(";")[0].strip()
    content = answer.get("content") or {}
    if not body or status == 204:
        return []
    if media_type not in content:
        return [f"content type {media_type!r} is not declared for {status} (declared: {', '.join(content)})"]
    schema = content[media_type].get("schema")
    if not schema or "json" not in media_type:
        return []
    key = (route.path_format, method.lower(), str(status), media_type)
    if key not in cache["validators"]:
        cache["validators"][key] = _validator(app.openapi(), schema)
    errors = sorted(cache["validators"][key].iter_errors(json.loads(body)), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message[:300]}" for e in errors[:5]]
