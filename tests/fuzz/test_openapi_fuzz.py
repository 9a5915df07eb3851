"""Schemathesis against each service's OpenAPI, with every check on, positive and negative data, and stateful
sequences following the documented links (bounded examples, a fixed seed so `make test` is repeatable).

Each service runs as a real process on PostgreSQL + RabbitMQ. Checks (all of schemathesis' built-in ones):
no 5xx; status codes, content types, headers and bodies match the documented responses (problem+json
included); schema-valid requests are accepted (positive_data_acceptance); schema-violating requests are
refused with a documented 4xx (negative_data_rejection); auth is enforced; in stateful runs, a created resource
can be read and a deleted one is gone (ensure_resource_availability, use_after_free).

positive_data_acceptance is kept meaningful: a schema-valid request may be answered 422 only by an operation
whose 422 answer lists the fields it checks beyond its schema (`x-checked-beyond-schema`, e.g. a cursor this API
issued, an end after a start, an id that must exist), and then only naming those fields
(`refusals_name_checked_fields`). Every other schema-valid request must succeed or get 401/403/404/409.
"""
from __future__ import annotations

import copy
import uuid
from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import (
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
    POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from salesflow_shared.contract import CHECKED_BEYOND_SCHEMA
from salesflow_shared.runner import SERVICES
from salesflow_shared.testing import make_token

MAX_EXAMPLES = 4  # per operation and generation mode
STATEFUL_SCENARIOS = 15
STATEFUL_STEPS = 6
TOKEN = make_token("fuzz-org", "admin", "fuzz-user")
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
ANONYMOUS = {"Authorization": ""}


def checked_beyond_schema(operation) -> list[str]:
    return (operation.definition.raw.get("responses", {}).get("422") or {}).get(CHECKED_BEYOND_SCHEMA, [])


def names_a_checked_field(field: str, checked: list[str]) -> bool:
    """`steps.0.template_id` and `rows[3].rate` are covered by `steps` and `rows`; `*` (a body only the domain
    code validates, e.g. a commission plan) covers every field."""
    return any(name == "*" or field == name or field.startswith((name + ".", name + "[")) for name in checked)


def refusals_name_checked_fields(ctx, response, case) -> None:
    """A schema-valid request refused with 422 names only fields its operation declares checked beyond the
    schema: anything else is a constraint the schema fails to state."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 422:
        return None
    checked = checked_beyond_schema(case.operation)
    fields = [error.get("field", "") for error in (response.json().get("errors") or [])]
    undeclared = [field for field in fields if not names_a_checked_field(field, checked)]
    assert fields and not undeclared, (
        f"schema-valid request refused on {undeclared or 'no named field'}; the operation declares as checked "
        f"beyond its schema: {checked}")
    return None


# A schema-violating request is refused with any documented 4xx; 413 too: a body over the size cap (a long
# enough list) is refused before it is read.
REFUSALS = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]


def takes_if_match(operation: dict) -> bool:
    return any(p.get("$ref", "").endswith("/IfMatch") or p.get("name", "").lower() == "if-match"
               for p in operation.get("parameters", []))


def fuzz_config(document: dict) -> SchemathesisConfig:
    """Every check on. Narrow settings, each for a stated rule of the API:
    - an operation whose 422 lists fields checked beyond its schema may answer 422 to schema-valid data
      (refusals_name_checked_fields then checks the fields named);
    - an operation taking If-Match may answer 412 (a well-formed ETag that is stale or weak) and 428 (none sent
      for a resource that exists): the precondition is about the resource's state, not the request's shape;
      it is checked before the body, so a schema-violating body with a stale ETag is refused with 412;
    - strings hold no NUL character: every service refuses one anywhere (guards.py; PostgreSQL text cannot
      store it), which is a rule of the whole API rather than of each string's schema;
    - the bearer token is ours, not generated (requests without one are sent explicitly, and the ignored_auth
      check sends each successful request again without and with a wrong token)."""
    operations = [operation for item in document["paths"].values() for operation in item.values()]

    def accepting(extra: list[str], if_match: bool) -> dict:
        checks: dict = {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, *extra]}}
        if if_match:  # the precondition is checked first: a bad body with a stale ETag is refused with 412
            checks["negative_data_rejection"] = {"expected-statuses": [*REFUSALS, "412"]}
        return {"checks": checks}

    settings = []
    for operation in operations:
        if_match = takes_if_match(operation)
        extra = (["422"] if (operation.get("responses", {}).get("422") or {}).get(CHECKED_BEYOND_SCHEMA) else []) \
            + (["412", "428"] if if_match else [])
        if extra:
            settings.append({"include-operation-id": operation["operationId"], **accepting(extra, if_match)})
    return SchemathesisConfig.from_dict({
        "generation": {"allow-x00": False, "codec": "utf-8", "with-security-parameters": False},
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        "operations": settings})


def load_schema(url: str):
    document = httpx.get(f"{url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document, config=fuzz_config(document))
    schema.config.update(base_url=url)
    return schema


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
def test_fuzz_service_api(system, entry):
    schema = load_schema(system.url(entry.name))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the service documents no operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, headers=AUTHORIZED)

            @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None, derandomize=True, phases=[Phase.generate])
            @given(case=strategy)
            def fuzz(case):
                case.call_and_validate(headers=AUTHORIZED, additional_checks=[refusals_name_checked_fields])
                case.call_and_validate(headers=ANONYMOUS, additional_checks=[refusals_name_checked_fields])

            fuzz()


def valid_create_bodies(document: dict) -> dict[str, Callable[[], dict]]:
    """Bodies a create operation accepts, by operation label: random bodies rarely pass a create's business
    rules (a lead needs a contact, a rep a real time zone), so half of the positive creates send one of these
    instead, and the links then lead to resources that exist. Each is new (its own names) on every call; the
    documented request example is used where the document gives one."""
    def unique() -> str:
        return uuid.uuid4().hex[:12]

    bodies: dict[str, Callable[[], dict]] = {
        "POST /v1/leads": lambda: {"contact": {"email": f"st-{unique()}@example.com"}},
        "POST /v1/reps": lambda: {"user_id": f"rep-{unique()}", "name": "Stateful Rep",
                                  "email": f"rep-{unique()}@example.com"},
        "POST /v1/teams": lambda: {"name": f"Team {unique()}"},
        "POST /v1/territories": lambda: {"name": f"Territory {unique()}", "countries": ["DE"]},
        "POST /v1/templates": lambda: {"name": f"Template {unique()}", "subject": "Hello",
                                       "html_body": "<p>Hello</p>", "text_body": "Hello"},
        "POST /v1/quotas": lambda: {"scope": "rep", "scope_id": f"rep-{unique()}", "period": "month",
                                    "period_start": "2027-01-01", "amount": "1000.00", "currency": "EUR"},
    }
    for path, item in document["paths"].items():
        example = (item.get("post", {}).get("requestBody", {}).get("content", {})
                   .get("application/json", {}).get("example"))
        if example is not None and "201" in item["post"]["responses"]:
            bodies.setdefault(f"POST {path}", lambda example=example: copy.deepcopy(example))
    return bodies


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
def test_stateful_links_service_api(system, entry):
    """Sequences that create resources and use them through the documented links (create, read, change,
    delete), with every check, including the stateful ones."""
    schema = load_schema(system.url(entry.name))
    valid_bodies = valid_create_bodies(schema.raw_schema)
    base = schema.as_state_machine()

    class Machine(base):  # type: ignore[valid-type, misc]
        def before_call(self, case):
            make = valid_bodies.get(case.operation.label)
            if make is not None and case.meta is not None and case.meta.generation.mode.is_positive:
                if len(repr(case.body)) % 2:  # decided by the drawn case, so a replay decides the same
                    case.body = make()

        def get_call_kwargs(self, case):
            return {"headers": AUTHORIZED}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            try:
                super().validate_response(response, case, additional_checks=[refusals_name_checked_fields],
                                          **kwargs)
            except FailureGroup as failure:
                failures.append(failure)
                raise

    failures: list[FailureGroup] = []
    try:
        run_state_machine_as_test(Machine, settings=settings(
            max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, deadline=None, database=None,
            derandomize=True, phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    except Flaky:
        # The server keeps its state between scenarios, so replaying one (Hypothesis does, to confirm what it
        # found) may take another path: the failure found first is the one to report. Without one, the replay
        # only saw the server's state differ (schemathesis' own runner treats it the same way).
        if failures:
            raise failures[0] from None
