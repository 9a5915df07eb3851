"""A Python client generated from docs/openapi.json (openapi-python-client) walks README's quick-start flow
against the embedded system (the five apps on SQLite sharing one in-process bus, as `make run` runs them).

The generator must cover every operation (any warning fails the test), and each answer the flow gets must
parse into the generated models (and match the published contract: the test kit's checking transport).
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from salesflow_shared.bus import InMemoryBus
from salesflow_shared.runner import SERVICES
from salesflow_shared.testing import ContractCheckingTransport, eventually, make_token

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    target = tmp_path_factory.mktemp("python-client")
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(ROOT / "docs/openapi.json"), "--meta", "none",
         "--config", str(ROOT / "clients/python/openapi-python-client.yaml"),
         "--output-path", str(target / "salesflow_api_client")],
        capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "will not be generated" not in output, output
    sys.path.insert(0, str(target))
    try:
        yield importlib.import_module("salesflow_api_client")
    finally:
        sys.path.remove(str(target))
        for name in [n for n in sys.modules if n.startswith("salesflow_api_client")]:
            del sys.modules[name]


def operation(name: str) -> Any:
    """A generated operation module, e.g. `operation("leads.create_lead").asyncio(...)`."""
    return importlib.import_module(f"salesflow_api_client.api.{name}")


@pytest.fixture
async def embedded_clients(tmp_path: Path, generated_client: Any) -> Any:
    """One generated `AuthenticatedClient` per service, each talking to its app in embedded mode."""
    bus = InMemoryBus()
    await bus.start()
    token = make_token("quickstart-org", "admin", "admin1")
    async with AsyncExitStack() as stack:
        clients = {}
        for entry in SERVICES:
            settings = entry.load_module("config").Settings(data_dir=tmp_path, database_url="", amqp_url="")
            app = entry.load_module("entrypoints.http").create_app(settings=settings, bus=bus)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = ContractCheckingTransport(httpx.ASGITransport(app=app), app)
            clients[entry.name] = generated_client.AuthenticatedClient(
                base_url=f"http://{entry.name}", token=token, httpx_args={"transport": transport})
        yield clients
    await bus.close()


async def test_readme_quick_start_with_the_generated_python_client(generated_client: Any,
                                                                   embedded_clients: dict[str, Any]) -> None:
    models = importlib.import_module("salesflow_api_client.models")
    lead_api, pipeline_api = embedded_clients["lead-service"], embedded_clients["pipeline-service"]
    assignment_api, metrics_api = embedded_clients["assignment-service"], embedded_clients["metrics-service"]

    instantiate = operation("pipeline_templates.instantiate_pipeline_template")
    pipeline = await instantiate.asyncio("inbound-web-form", client=pipeline_api, body=models.InstantiateIn())
    assert isinstance(pipeline, models.PipelineOut), pipeline
    first_stage = pipeline.stages[0]

    create_rep = operation("reps.create_rep")
    rep = await create_rep.asyncio(client=assignment_api, body=models.RepCreate.from_dict(
        {"name": "Ann", "email": "ann@example.com", "user_id": "ann"}))
    assert isinstance(rep, models.RepOut) and rep.user_id == "ann", rep
    create_team = operation("teams.create_team")
    team = await create_team.asyncio(client=assignment_api, body=models.TeamCreate.from_dict(
        {"name": "Inside", "member_ids": ["ann"]}))
    assert isinstance(team, models.TeamOut), team
    publish = operation("routing.publish_routing_rules")
    rules = await publish.asyncio(client=assignment_api, if_match='"0"', body=models.RuleSetIn.from_dict({"rules": [
        {"id": "all", "name": "All", "fallback": True, "triggers": ["lead_created"], "pipeline_id": pipeline.id,
         "owner": {"strategy": "round_robin", "team_id": team.id}}]}))  # no rule set yet: its ETag is "0"
    assert isinstance(rules, models.RuleSetOut) and rules.version == 1, rules

    create_lead = operation("leads.create_lead")
    lead = await create_lead.asyncio(client=lead_api, body=models.LeadIn.from_dict({
        "contact": {"first_name": "Bo", "email": "bo@acme-corp.com"}, "company": {"name": "Acme"},
        "country": "DE", "value": "5000", "currency": "EUR", "source": "api"}), x_correlation_id="quickstart-1")
    assert isinstance(lead, models.LeadOut), lead
    assert (lead.contact.email, lead.value, lead.currency, lead.status) == ("bo@acme-corp.com", "5000.00", "EUR",
                                                                            "open")

    list_assignments = operation("assignments.list_assignments")

    async def assigned() -> Any:
        page = await list_assignments.asyncio(client=assignment_api, lead_id=lead.id)
        assert isinstance(page, models.DecisionOutPage) and page.items, page
        return page.items[0]

    decision = await eventually(assigned, timeout=20)
    assert (decision.owner_id, decision.rule_id, decision.pipeline_id) == ("ann", "all", pipeline.id)

    get_position = operation("positions.get_position")

    async def placed() -> Any:
        position = await get_position.asyncio(lead.id, client=pipeline_api)
        # routing (the stage) and assignment (the owner) arrive as two events: wait for both
        assert isinstance(position, models.PositionOut) and position.stage and position.owner_id, position
        return position

    position = await eventually(placed, timeout=20)
    assert (position.owner_id, position.stage.stage_id, position.stage.name) == (
        "ann", first_stage.id, first_stage.name)

    # README's way to wait for the effects of a request: its correlation id on the lead's timeline.
    get_timeline = operation("leads.get_lead_timeline")

    async def told() -> Any:
        timeline = await get_timeline.asyncio(lead.id, client=lead_api, correlation_id="quickstart-1")
        assert isinstance(timeline, models.LeadTimeline), timeline
        kinds = {entry.kind.value for entry in timeline.items}
        assert {"created", "routed", "assigned", "stage_entered"} <= kinds, kinds
        return timeline

    timeline = await eventually(told, timeout=20)
    assert (timeline.owner_id, timeline.pipeline_id, timeline.stage_id) == ("ann", pipeline.id, first_stage.id)

    funnel_report = operation("reports.get_funnel_report")
    funnel = await funnel_report.asyncio(client=metrics_api)
    assert isinstance(funnel, models.FunnelReport) and funnel.report == "funnel", funnel
