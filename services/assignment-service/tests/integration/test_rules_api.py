"""Publishing rule sets: bad rules get 422 naming the problem; versions are kept."""
from __future__ import annotations

import pytest
from assignment_testkit import ADMIN, add_reps, add_team, assignment_app, fallback, publish_rules

from salesflow_shared.testing import auth_headers


@pytest.fixture
async def client(database_url):
    async with assignment_app(database_url) as (_, client):
        await add_reps(client, ["u-1", "u-2"])
        yield client


def problem(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["message"] for e in response.json()["errors"]}


FIRST_PUBLICATION = {**ADMIN, "If-Match": '"0"'}  # nothing published yet: the rule set is at version 0


async def test_bad_rules_get_422_naming_the_problem(client):
    team = await add_team(client, "Inside", ["u-1", "u-2"])
    unknown_field = await client.put("/v1/routing-rules", headers=FIRST_PUBLICATION, json={"rules": [
        {"name": "x", "pipeline_id": "p", "conditions": [{"field": "contry", "op": "eq", "value": "DE"}],
         "owner": {"strategy": "specific_rep", "rep_id": "u-1"}}, fallback(team)]})
    assert "unknown field 'contry'" in problem(unknown_field)["rules[0].conditions[0].field"]
    wrong_op = await client.put("/v1/routing-rules", headers=FIRST_PUBLICATION, json={"rules": [
        {"name": "x", "pipeline_id": "p", "conditions": [{"field": "country", "op": "gte", "value": "DE"}],
         "owner": {"strategy": "specific_rep", "rep_id": "u-1"}}, fallback(team)]})
    assert "operator 'gte' is not allowed for field 'country'" in problem(wrong_op)["rules[0].conditions[0].op"]
    no_fallback = await client.put("/v1/routing-rules", headers=FIRST_PUBLICATION, json={"rules": [
        {"name": "x", "pipeline_id": "p", "owner": {"strategy": "specific_rep", "rep_id": "u-1"}}]})
    assert "no fallback rule" in problem(no_fallback)["rules"]
    ghost_rep = await client.put("/v1/routing-rules", headers=FIRST_PUBLICATION, json={"rules": [
        {"name": "x", "pipeline_id": "p", "owner": {"strategy": "specific_rep", "rep_id": "ghost"}}, fallback(team)]})
    assert "no rep 'ghost'" in problem(ghost_rep)["rules[0].owner.rep_id"]
    ghost_territory = await client.put("/v1/routing-rules", headers=FIRST_PUBLICATION, json={"rules": [
        {"name": "x", "pipeline_id": "p", "conditions": [{"field": "territory", "op": "eq", "value": "t-?"}],
         "owner": {"strategy": "specific_rep", "rep_id": "u-1"}}, fallback(team)]})
    assert "no territory 't-?'" in problem(ghost_territory)["rules[0].conditions[0].value"]
    not_a_list = await client.put("/v1/routing-rules", headers=FIRST_PUBLICATION, json={"rules": "everything to Ann"})
    assert "rules" in problem(not_a_list)
    assert (await client.get("/v1/routing-rules", headers=ADMIN)).status_code == 404  # nothing was published


async def test_versions_are_kept_and_if_match_guards_publishing(client):
    team = await add_team(client, "Inside", ["u-1", "u-2"])
    # Even the first publication is conditional: without If-Match 428, and "*" (an existing rule set) 412
    unconditional = await client.put("/v1/routing-rules", json={"rules": [fallback(team)]}, headers=ADMIN)
    assert unconditional.status_code == 428 and "If-Match" in unconditional.json()["detail"]
    any_current = await client.put("/v1/routing-rules", json={"rules": [fallback(team)]},
                                   headers={**ADMIN, "If-Match": "*"})
    assert any_current.status_code == 412
    first = await publish_rules(client, [fallback(team)])
    assert first["version"] == 1 and first["rules"][0]["id"]
    second = await client.put("/v1/routing-rules", json={"rules": [fallback(team, pipeline_id="p-2")]},
                              headers={**ADMIN, "If-Match": '"1"'})
    assert second.status_code == 200 and second.json()["version"] == 2
    stale = await client.put("/v1/routing-rules", json={"rules": [fallback(team)]},
                             headers={**ADMIN, "If-Match": '"1"'})
    assert stale.status_code == 412
    current = await client.get("/v1/routing-rules", headers=ADMIN)
    assert current.headers["etag"] == '"2"' and current.json()["rules"][0]["pipeline_id"] == "p-2"
    # If-Match compares strongly: the weak form of the current ETag never matches
    weak = await client.put("/v1/routing-rules", json={"rules": [fallback(team)]},
                            headers={**ADMIN, "If-Match": 'W/"2"'})
    assert weak.status_code == 412 and "weak" in weak.json()["detail"]
    old = await client.get("/v1/routing-rules/versions/1", headers=ADMIN)
    assert old.json()["rules"][0]["pipeline_id"] == "p-default"
    versions = await client.get("/v1/routing-rules/versions", headers=ADMIN)
    assert [v["version"] for v in versions.json()["items"]] == [2, 1]
    newest = (await client.get("/v1/routing-rules/versions", params={"limit": 1}, headers=ADMIN)).json()
    older = (await client.get("/v1/routing-rules/versions", params={"limit": 1, "cursor": newest["next_cursor"]},
                              headers=ADMIN)).json()
    assert ([v["version"] for v in newest["items"]], [v["version"] for v in older["items"]]) == ([2], [1])
    assert older["next_cursor"] is None
    as_rep = await client.put("/v1/routing-rules", json={"rules": [fallback(team)]},
                              headers=auth_headers("org-a", "rep", "u-1"))
    assert as_rep.status_code == 403
    # a team the rules use cannot be deleted from under them
    assert (await client.delete(f"/v1/teams/{team}", headers=ADMIN)).status_code == 409
