"""The API conventions of docs/architecture.md that hold for every operation of every service, checked from the
services' own OpenAPI documents (so a new operation is covered without a new test): a cursor the API did not
issue is a 422 naming `cursor`; `limit` outside its documented range is a 422 and a page never holds more than
`limit` items; times are RFC 3339 with an offset and nothing else; booleans are strict; currencies are ISO 4217;
and every time the API answers carries its offset, in the embedded (SQLite) mode too."""
from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from system_harness import EmbeddedSystem

from salesflow_shared.runner import SERVICES
from salesflow_shared.testing import make_token

ORG = "conventions-org"
HEADERS = {"Authorization": f"Bearer {make_token(ORG, 'admin', 'conventions-admin')}"}
SERVICE_NAMES = [entry.name for entry in SERVICES]
# Cursors this API never issues: not base64url JSON at all, a JSON list of the wrong length, not a list.
FOREIGN_CURSORS = ["not a cursor!", base64.urlsafe_b64encode(b"[1]").decode(),
                   base64.urlsafe_b64encode(b'{"a": 1}').decode().rstrip("=")]
# Not RFC 3339 with an offset: a number, a date alone, a time without its offset.
NOT_RFC3339 = ["0.5", "1767225600", "2026-01-01", "2026-01-01T00:00:00"]
TIME_PARAMETERS = {"from", "to", "since", "until", "at"}
RFC3339_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
LOOKS_LIKE_A_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def document(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/openapi.json").json()


def resolve(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].removeprefix("#/components/").split("/", 1)
        node = doc["components"][section][name]
    return node


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    """(method, path, operation, its resolved parameters) of every operation that authenticates."""
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if operation.get("security"):
                yield method, path, operation, [resolve(p, doc) for p in operation.get("parameters", [])]


def lists_without_ids(doc: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """GET operations taking no path id and no required query parameter: (path, parameters)."""
    for method, path, _, parameters in operations(doc):
        if method == "get" and "{" not in path and not any(
                p["in"] == "query" and p.get("required") for p in parameters):
            yield path, parameters


def query_names(parameters: list[dict[str, Any]]) -> set[str]:
    return {p["name"] for p in parameters if p["in"] == "query"}


def refused_naming(response: httpx.Response, field: str) -> bool:
    return (response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
            and field in [error["field"] for error in response.json().get("errors", [])])


def test_a_cursor_the_api_did_not_issue_is_a_422_naming_the_cursor(system):
    checked, wrong = [], []
    for name in SERVICE_NAMES:
        url = system.url(name)
        for path, parameters in lists_without_ids(document(url)):
            if "cursor" not in query_names(parameters):
                continue
            checked.append(f"{name} {path}")
            for cursor in FOREIGN_CURSORS:
                response = httpx.get(url + path, params={"cursor": cursor}, headers=HEADERS)
                if not refused_naming(response, "cursor"):
                    wrong.append(f"{name} GET {path}?cursor={cursor}: {response.status_code} {response.text[:200]}")
    assert "lead-service /v1/leads" in checked and "incentive-service /v1/programs" in checked
    assert not wrong, "\n".join(wrong)


def seed(system) -> None:
    """Three leads and three reps in the org, so those lists have more than one page of one."""
    for number in range(3):
        lead = httpx.post(system.url("lead-service") + "/v1/leads", headers=HEADERS,
                          json={"contact": {"email": f"conventions-{number}@example.com"}})
        rep = httpx.post(system.url("assignment-service") + "/v1/reps", headers=HEADERS,
                         json={"user_id": f"conventions-rep-{number}", "name": f"Rep {number}",
                               "email": f"rep-{number}@conventions.example"})
        assert lead.status_code in (200, 201) and rep.status_code in (200, 201), (lead.text, rep.text)


def test_limit_outside_its_range_is_a_422_and_every_page_holds_at_most_limit_items(system):
    seed(system)
    wrong, paged = [], []
    for name in SERVICE_NAMES:
        url = system.url(name)
        for path, parameters in lists_without_ids(document(url)):
            limit = next((p for p in parameters if p["in"] == "query" and p["name"] == "limit"), None)
            if limit is None:
                continue
            if "minimum" not in limit["schema"] or "maximum" not in limit["schema"]:
                wrong.append(f"{name} GET {path}: limit has no documented range")
                continue
            maximum = limit["schema"]["maximum"]
            for outside in (0, maximum + 1):
                response = httpx.get(url + path, params={"limit": outside}, headers=HEADERS)
                if not refused_naming(response, "limit"):
                    wrong.append(f"{name} GET {path}?limit={outside}: {response.status_code}")
            everything = httpx.get(url + path, params={"limit": maximum}, headers=HEADERS)
            if everything.status_code != 200 or "items" not in everything.json():
                continue  # e.g. a CSV list; its paging is the JSON list's
            first = httpx.get(url + path, params={"limit": 1}, headers=HEADERS).json()
            if len(first["items"]) > 1:
                wrong.append(f"{name} GET {path}?limit=1 answered {len(first['items'])} items")
            if len(everything.json()["items"]) >= 2:
                paged.append(f"{name} {path}")
                if "cursor" not in query_names(parameters):  # a bounded list without pages (dead letters)
                    if len(first["items"]) != 1:
                        wrong.append(f"{name} GET {path}: limit=1 answered {first}")
                    continue
                second = httpx.get(url + path, params={"limit": 1, "cursor": first["next_cursor"]},
                                   headers=HEADERS).json()
                if len(first["items"]) != 1 or len(second["items"]) != 1 or second["items"] == first["items"]:
                    wrong.append(f"{name} GET {path}: limit=1 pages {first} then {second}")
    assert {"lead-service /v1/leads", "assignment-service /v1/reps"} <= set(paged), paged
    assert not wrong, "\n".join(wrong)


def test_times_in_queries_are_rfc3339_with_an_offset_and_nothing_else(system):
    checked, wrong = [], []
    for name in SERVICE_NAMES:
        url = system.url(name)
        for path, parameters in lists_without_ids(document(url)):
            for parameter in parameters:
                schema = parameter.get("schema", {})
                is_time = parameter["name"] in TIME_PARAMETERS or "date-time" in str(schema)
                if parameter["in"] != "query" or not is_time or "date-time" not in str(schema):
                    continue
                checked.append(f"{name} {path} {parameter['name']}")
                for value in NOT_RFC3339:
                    response = httpx.get(url + path, params={parameter["name"]: value}, headers=HEADERS)
                    if not refused_naming(response, parameter["name"]):
                        wrong.append(f"{name} GET {path}?{parameter['name']}={value}: {response.status_code}")
    assert "metrics-service /v1/reports/funnel to" in checked, checked
    assert not wrong, "\n".join(wrong)


def body_properties(operation: dict[str, Any], doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The top-level properties of the operation's JSON body (each resolved, `X | null` unwrapped)."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if not content:
        return {}
    schema = resolve(content.get("schema", {}), doc)
    found = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = resolve(prop, doc)
        options = [resolve(o, doc) for o in prop.get("anyOf", [prop])]
        typed = [o for o in options if o.get("type") != "null"]
        found[name] = typed[0] if len(typed) == 1 else prop
    return found


def test_booleans_are_strict_and_currencies_are_iso_4217_in_every_body(system):
    """Each value is sent alone: the answer is a 422 naming it among the other refusals (the required fields
    missing). An operation on an id is sent an id that does not exist, and may answer 404 first."""
    checked, wrong = [], []
    for name in SERVICE_NAMES:
        url = system.url(name)
        doc = document(url)
        for method, path, operation, _ in operations(doc):
            for prop, schema in body_properties(operation, doc).items():
                if schema.get("type") == "boolean":
                    bad_values = [0, 1, "true", "yes"]
                elif prop == "currency" or prop.endswith("_currency"):
                    bad_values = ["XYZ", "EURO", "€"]
                else:
                    continue
                target = re.sub(r"\{[^}]+\}", "no-such-id", path)
                checked.append(f"{name} {method.upper()} {path} {prop}")
                for value in bad_values:
                    response = httpx.request(method, url + target, json={prop: value},
                                             headers={**HEADERS, "If-Match": '"1"'})
                    if not refused_naming(response, prop) and not (target != path and response.status_code == 404):
                        wrong.append(f"{name} {method.upper()} {path} {prop}={value!r}: {response.status_code} "
                                     f"{response.text[:200]}")
    assert {"assignment-service POST /v1/reps active", "metrics-service POST /v1/quotas currency",
            "metrics-service PUT /v1/reporting-currency currency"} <= set(checked), checked
    assert not wrong, "\n".join(wrong)


def times_without_offset(value: Any, where: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if LOOKS_LIKE_A_TIME.match(value) and not RFC3339_WITH_OFFSET.match(value):
            yield f"{where}={value}"
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from times_without_offset(child, f"{where}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from times_without_offset(child, f"{where}[{index}]")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[EmbeddedSystem]:
    running = EmbeddedSystem(tmp_path_factory.mktemp("conventions-embedded"))
    running.start_all()
    yield running
    running.stop_all()


def test_every_time_answered_in_embedded_mode_has_its_offset(embedded):
    seed(embedded)
    lead = httpx.get(embedded.url("lead-service") + "/v1/leads", headers=HEADERS).json()["items"][0]
    answers = [httpx.get(embedded.url("lead-service") + f"/v1/leads/{lead['id']}", headers=HEADERS),
               httpx.get(embedded.url("lead-service") + f"/v1/leads/{lead['id']}/timeline", headers=HEADERS)]
    for name in SERVICE_NAMES:
        url = embedded.url(name)
        answers += [httpx.get(url + path, headers=HEADERS) for path, _ in lists_without_ids(document(url))]
    json_answers = [a for a in answers if a.status_code == 200 and a.headers["content-type"] == "application/json"]
    times = [value for a in json_answers for value in re.findall(r'"(\d{4}-\d{2}-\d{2}T[^"]*)"', a.text)]
    assert len(times) >= 6, times  # the leads' and reps' own times at least
    wrong = [f"{a.request.url}: {where}" for a in json_answers for where in times_without_offset(a.json())]
    assert not wrong, "\n".join(wrong)
