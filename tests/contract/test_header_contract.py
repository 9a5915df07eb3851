"""The combined document (docs/openapi.json) keeps issue 16's header promises on every operation of the six
services: Idempotency-Key on every POST, a required If-Match (with 412 and 428) on every PATCH and PUT, a strong
ETag (If-None-Match, 304) on every read answered as one JSON document, and RateLimit fields wherever a 429 may
come. A new operation that breaks one of them fails here, naming it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from salesflow_shared.contract import IDEMPOTENCY_EXEMPT

DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "docs/openapi.json").read_text())
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def operations(*methods: str):
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in methods:
                yield method, path, operation


def header_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The operation's header parameters by lower-case name, $refs resolved."""
    found = {}
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = DOCUMENT["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
        if parameter["in"] == "header":
            found[parameter["name"].lower()] = parameter
    return found


def test_every_post_declares_idempotency_key_or_names_why_it_cannot_honour_one() -> None:
    missing, exempt = [], {}
    for _, path, operation in operations("post"):
        if IDEMPOTENCY_EXEMPT in operation:
            exempt[path] = operation[IDEMPOTENCY_EXEMPT]
        elif "idempotency-key" not in header_parameters(operation):
            missing.append(path)
        else:  # a retry whose first answer was erased with personal data is a 410, never someone's data
            assert "410" in operation["responses"], path
    assert missing == []
    # The one exception: a public link has no caller to scope a key to (docs/architecture.md, Writes).
    assert list(exempt) == ["/v1/sequences/unsubscribe/{token}"]
    assert all(len(reason) > 40 for reason in exempt.values()), exempt


def test_every_patch_and_put_requires_if_match_and_declares_412_and_428() -> None:
    broken = []
    count = 0
    for method, path, operation in operations("patch", "put"):
        count += 1
        if_match = header_parameters(operation).get("if-match")
        responses = operation["responses"]
        if not (if_match and if_match.get("required") is True and {"412", "428"} <= set(responses)
                and all(responses[s]["content"]["application/problem+json"]["schema"] == PROBLEM
                        for s in ("412", "428"))):
            broken.append(f"{method.upper()} {path}")
    assert broken == []
    assert count >= 19  # pipelines, stages, reps, teams, territories, rules, quotas, plans, payees, ... all of them


def test_every_read_of_a_resource_report_or_list_declares_a_strong_etag_and_304() -> None:
    without, streamed = [], []
    for _, path, operation in operations("get"):
        if not path.startswith("/v1/"):
            continue  # /healthz, /readyz, /metrics: operations endpoints, not the API
        success = operation["responses"]["200"]
        if "application/json" not in success.get("content", {}):
            streamed.append(path)
            continue
        declared = "ETag" in success.get("headers", {}) and "304" in operation["responses"] \
            and "if-none-match" in header_parameters(operation)
        if not declared:
            without.append(path)
    assert without == []
    # Only answers that are not one JSON document go without: streamed CSV exports, the leaderboard's event
    # stream and the HTML unsubscribe page.
    assert sorted(streamed) == ["/v1/leads/export", "/v1/payouts/periods/{period_start}/export",
                                "/v1/programs/{program_id}/leaderboard/stream", "/v1/sequences/unsubscribe/{token}"]
    etag = DOCUMENT["components"]["headers"]["ETag"]["schema"]
    assert etag["pattern"] == '^"[^"]*"$'  # strong: quoted, never W/
    reads = {path for _, path, _ in operations("get")}
    # the reads issue 16 names, each a single resource or a report
    assert {"/v1/positions/{lead_id}", "/v1/tasks/{task_id}", "/v1/sequences/{sequence_id}",
            "/v1/assignments/{decision_id}", "/v1/reports/funnel", "/v1/statements/{statement_id}"} <= reads


def test_every_answer_of_a_rate_limited_operation_says_where_the_limit_stands() -> None:
    limited = [(path, operation) for _, path, operation in operations("get", "post", "put", "patch", "delete")
               if "429" in operation["responses"]]
    assert [path for path, _ in limited] == ["/v1/forms/{form_id}/submissions"]
    fields = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    for path, operation in limited:
        assert {"Retry-After"} | fields <= set(operation["responses"]["429"]["headers"]), path
        for status, answer in operation["responses"].items():
            assert fields <= set(answer["headers"]), (path, status)
    for name in fields:
        assert DOCUMENT["components"]["headers"][name.replace("-", "")]["schema"] == {"type": "integer",
                                                                                        "minimum": 0}
