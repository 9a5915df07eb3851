"""Admin work on pipelines: validation pointing at the wrong part, ETag/If-Match, safe reorder and delete
with leads in flight, manual moves with history, roles and tenant isolation."""
import json
from datetime import timedelta

from pipeline_testkit import ORG, assigned, new_lead, routed

THREE = {"name": "Three", "lost_reasons": ["no budget"], "stages": [
    {"name": "A", "guidance": "Do **A**", "win_probability": "0.1",
     "task_templates": [{"title": "Call A", "type": "call", "required": True}]},
    {"name": "B", "win_probability": 0.5, "is_ask_stage": True},
    {"name": "C", "win_probability": "0.9"}]}


async def test_bad_definitions_get_422_pointing_at_the_wrong_part(pipe):
    body = {"name": "Bad", "stages": [
        {"name": "One"},
        {"name": "Two", "goal": {"all": [{"field": "shoe_size", "op": "gt", "value": 40}]},
         "task_templates": [{"title": "x", "due": {"amount": 2, "unit": "fortnights"}}]}]}
    resp = await pipe.client.post("/v1/pipelines", json=body, headers=pipe.headers())
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in resp.json()["errors"]] == ["stages[1].goal.all[0].field",
                                                           "stages[1].task_templates[0].due.unit"]
    resp = await pipe.client.post("/v1/pipelines", json=["not", "an", "object"], headers=pipe.headers())
    assert resp.status_code == 422
    resp = await pipe.client.post("/v1/pipelines", json=THREE, headers=pipe.headers("rep", "rep-1"))
    assert resp.status_code == 403

    # Text PostgreSQL cannot store (NUL, lone surrogates, as JSON escapes allow) is refused, never a 500.
    raw = json.dumps({"name": "A\x00B\ud800", "stages": [{"name": "\x00One"}]})
    resp = await pipe.client.post("/v1/pipelines", content=raw,
                                  headers=pipe.headers(**{"Content-Type": "application/json"}))
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["errors"]} == {"name", "stages.0.name"}
    assert (await pipe.client.get("/v1/positions/a%00b", headers=pipe.headers())).status_code == 404
    assert (await pipe.client.get("/v1/tasks", params={"lead_id": "a\x00"}, headers=pipe.headers())).status_code == 422


async def test_edit_reorder_and_delete_stages_keep_leads_in_flight_safe(pipe):
    pipeline = await pipe.create_pipeline(THREE)
    pid = pipeline["id"]
    a, b, c = (s["id"] for s in pipeline["stages"])
    assert [s["win_probability"] for s in pipeline["stages"]] == ["0.1", "0.5", "0.9"]
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pid), lead))

    got = await pipe.client.get(f"/v1/pipelines/{pid}", headers=pipe.headers("rep", "rep-1"))
    etag = got.headers["etag"]
    resp = await pipe.client.patch(f"/v1/pipelines/{pid}/stages/{a}", json={"goal": {"all": [{"op": "set"}]}},
                                   headers=pipe.headers(**{"If-Match": etag}))
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "goal.all[0]"
    resp = await pipe.client.patch(f"/v1/pipelines/{pid}/stages/{a}", json={"guidance": "New advice"},
                                   headers=pipe.headers(**{"If-Match": etag}))
    assert resp.status_code == 200 and resp.headers["etag"] != etag
    current = resp.headers["etag"]
    stale = await pipe.client.patch(f"/v1/pipelines/{pid}", json={"name": "X"},
                                    headers=pipe.headers(**{"If-Match": etag}))
    assert stale.status_code == 412
    unconditional = await pipe.client.patch(f"/v1/pipelines/{pid}", json={"name": "X"}, headers=pipe.headers())
    assert unconditional.status_code == 428 and "If-Match" in unconditional.json()["detail"]
    assert (await pipe.position(lead))["stage"]["guidance"] == "New advice"

    # Reorder: C, A, B. The lead stays in stage A, now at position 2.
    bad = await pipe.client.put(f"/v1/pipelines/{pid}/stage-order", json={"stage_ids": [c, a]},
                                headers=pipe.headers(**{"If-Match": current}))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "stage_ids"
    resp = await pipe.client.put(f"/v1/pipelines/{pid}/stage-order", json={"stage_ids": [c, a, b]},
                                 headers=pipe.headers(**{"If-Match": current}))
    assert [s["name"] for s in resp.json()["stages"]] == ["C", "A", "B"]
    pos = await pipe.position(lead)
    assert pos["stage"]["stage_id"] == a and pos["stage"]["position"] == 2 and len(pos["open_tasks"]) == 1

    # A stage holding leads cannot be deleted without saying where its leads go.
    resp = await pipe.client.delete(f"/v1/pipelines/{pid}/stages/{a}", headers=pipe.headers())
    assert resp.status_code == 409
    resp = await pipe.client.delete(f"/v1/pipelines/{pid}/stages/{a}", params={"move_leads_to": "nope"},
                                    headers=pipe.headers())
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "move_leads_to"
    resp = await pipe.client.delete(f"/v1/pipelines/{pid}/stages/{a}", params={"move_leads_to": b},
                                    headers=pipe.headers("admin", "admin-1"))
    assert resp.status_code == 200 and resp.json()["leads_moved"] == 1
    assert [(s["name"], s["position"]) for s in resp.json()["pipeline"]["stages"]] == [("C", 1), ("B", 2)]
    pos = await pipe.position(lead)
    assert pos["stage"]["stage_id"] == b and pos["open_tasks"] == []
    assert [(h["stage_name"], h["exit_reason"]) for h in pos["history"]] == [("A", "stage_deleted"), ("B", None)]
    assert pos["history"][1]["moved_by"] == "admin-1" and "deleted" in pos["history"][1]["note"]
    assert [s["data"]["reason"] for s in await pipe.outbox("TaskSkipped")] == ["stage_deleted"]

    # The pipeline holds a lead: it cannot be archived.
    assert (await pipe.client.delete(f"/v1/pipelines/{pid}", headers=pipe.headers())).status_code == 409
    resp = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "Zero", "position": 1},
                                  headers=pipe.headers())
    assert [s["name"] for s in resp.json()["stages"]] == ["Zero", "C", "B"]
    resp = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "zero"}, headers=pipe.headers())
    assert resp.status_code == 409 and resp.json()["errors"][0]["field"] == "name"  # clashes with "Zero"
    for _ in range(2):  # the same Idempotency-Key: one stage
        resp = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "Last", "position": 99},
                                      headers=pipe.headers(**{"Idempotency-Key": "add-last"}))
        assert [s["name"] for s in resp.json()["stages"]] == ["Zero", "C", "B", "Last"]
    resp = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "Other"},
                                  headers=pipe.headers(**{"Idempotency-Key": "add-last"}))
    assert resp.status_code == 409


async def test_manual_moves_forward_back_and_skipping_keep_history(pipe):
    pipeline = await pipe.create_pipeline(THREE)
    other = await pipe.instantiate("inbound-web-form")
    a, b, c = (s["id"] for s in pipeline["stages"])
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    rep = pipe.headers("rep", "rep-1")
    url = f"/v1/positions/{lead}/move"
    assert (await pipe.client.post(url, json={"to_stage_id": c, "reason": ""}, headers=rep)).status_code == 422
    resp = await pipe.client.post(url, json={"to_stage_id": other["stages"][1]["id"], "reason": "x"}, headers=rep)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "to_stage_id"
    resp = await pipe.client.post(url, json={"to_stage_id": c, "reason": "verbal yes"}, headers=rep)
    assert resp.status_code == 200 and resp.json()["stage"]["stage_id"] == c
    resp = await pipe.client.post(url, json={"to_stage_id": b, "reason": "needs a proposal first"}, headers=rep)
    assert [(h["stage_name"], h["entry_reason"], h["note"]) for h in resp.json()["history"]] == [
        ("A", "entry", None), ("C", "manual", "verbal yes"), ("B", "manual", "needs a proposal first")]
    moves = [e["data"] for e in await pipe.outbox("StageAdvanced")]
    assert [(m["reason"], m["from_stage_id"], m["to_stage_id"], m["moved_by"]) for m in moves] == [
        ("entry", None, a, None), ("manual", a, c, "rep-1"), ("manual", c, b, "rep-1")]
    # the positions moved between: a move back (C at 3 to B at 2) reads as one without the pipeline
    assert [(m["from_stage_position"], m["to_stage_position"]) for m in moves] == [(None, 1), (1, 3), (3, 2)]
    assert moves[2]["is_ask_stage"] is True
    assert (await pipe.client.post(url, json={"to_stage_id": b, "reason": "again"}, headers=rep)).status_code == 409
    assert (await pipe.client.post(url, json={"to_stage_id": a, "reason": "x"},
                                   headers=pipe.headers("rep", "rep-2"))).status_code == 404

    # A goal an admin gives the lead's stage, already met, advances it at once.
    etag = (await pipe.client.get(f"/v1/pipelines/{pipeline['id']}", headers=pipe.headers())).headers["etag"]
    resp = await pipe.client.patch(f"/v1/pipelines/{pipeline['id']}/stages/{b}",
                                   json={"goal": {"field": "owner_id", "op": "eq", "value": "rep-1"}},
                                   headers=pipe.headers(**{"If-Match": etag}))
    assert resp.status_code == 200
    pos = await pipe.position(lead)
    assert pos["stage"]["stage_id"] == c and pos["history"][-1]["entry_reason"] == "goal_met"


async def test_tenant_isolation(pipe):
    pipeline = await pipe.instantiate("inbound-web-form", org=ORG)
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    task = (await pipe.position(lead))["open_tasks"][0]
    b = pipe.headers(org="org-b")
    assert (await pipe.client.get(f"/v1/pipelines/{pipeline['id']}", headers=b)).status_code == 404
    assert (await pipe.client.get("/v1/pipelines", headers=b)).json()["items"] == []
    renamed = await pipe.client.patch(f"/v1/pipelines/{pipeline['id']}", json={"name": "mine"}, headers=b)
    assert renamed.status_code == 404
    assert (await pipe.client.get(f"/v1/positions/{lead}", headers=b)).status_code == 404
    assert (await pipe.client.post(f"/v1/positions/{lead}/won", json={"value": "1", "currency": "EUR"},
                                   headers=b)).status_code == 404
    assert (await pipe.client.get(f"/v1/tasks/{task['id']}", headers=b)).status_code == 404
    assert (await pipe.client.get("/v1/tasks", headers=pipe.headers("manager", "m", org="org-b"))).json()["items"] == []
    # The same lead id in another org is another lead.
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-b"), lead, org="org-b", version=7))
    assert (await pipe.position(lead))["owner_id"] == "rep-1"
    listed = (await pipe.client.get("/v1/pipelines", headers=pipe.headers("rep", "rep-1"))).json()
    assert [p["id"] for p in listed["items"]] == [pipeline["id"]]


async def test_boards_and_lists_page_through_with_filters(pipe):
    pipelines = []
    for _ in range(3):
        pipelines.append(await pipe.instantiate("inbound-web-form"))
        pipe.clock.advance(timedelta(seconds=1))
    page1 = (await pipe.client.get("/v1/pipelines", params={"limit": 2}, headers=pipe.headers())).json()
    page2 = (await pipe.client.get("/v1/pipelines", params={"limit": 2, "cursor": page1["next_cursor"]},
                                   headers=pipe.headers())).json()
    assert [p["id"] for p in page1["items"] + page2["items"]] == [p["id"] for p in pipelines]
    assert page2["next_cursor"] is None
    first = pipelines[0]
    leads = sorted(new_lead() for _ in range(5))
    for i, lead in enumerate(leads):
        await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1" if i < 3 else "rep-2"), lead))
        await pipe.dispatch(pipe.envelope(routed(lead, first["id"]), lead))
    board, cursor = [], None
    while True:
        params = {"limit": 2, "pipeline_id": first["id"], "stage_id": first["stages"][0]["id"],
                  **({"cursor": cursor} if cursor else {})}
        page = (await pipe.client.get("/v1/positions", params=params, headers=pipe.headers("manager", "m"))).json()
        board += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    assert [p["lead_id"] for p in board] == leads
    templates = (await pipe.client.get("/v1/pipelines/templates", params={"limit": 1},
                                       headers=pipe.headers("manager", "m"))).json()
    rest = (await pipe.client.get("/v1/pipelines/templates", params={"limit": 1, "cursor": templates["next_cursor"]},
                                  headers=pipe.headers("manager", "m"))).json()
    assert [t["key"] for t in templates["items"] + rest["items"]] == ["inbound-web-form", "outbound-cold-calling"]
    # a cursor the API did not issue is refused (it used to be read as a lead id: an empty page)
    garbage = await pipe.client.get("/v1/positions", params={"cursor": "garbage"}, headers=pipe.headers("manager", "m"))
    assert garbage.status_code == 422 and garbage.json()["errors"][0]["field"] == "cursor"
    mine = (await pipe.client.get("/v1/positions", headers=pipe.headers("rep", "rep-2"))).json()["items"]
    assert [p["lead_id"] for p in mine] == leads[3:]
    other = (await pipe.client.get("/v1/positions", headers=pipe.headers("manager", "m", org="org-b"))).json()
    assert other["items"] == []


async def test_a_lead_moved_back_by_hand_is_not_bounced_forward_by_a_goal_that_already_held(pipe):
    from pipeline_testkit import activity, lead_updated

    pipeline = await pipe.instantiate("inbound-web-form")
    first, second = pipeline["stages"][0]["id"], pipeline["stages"][1]["id"]
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
    assert (await pipe.position(lead))["stage"]["stage_id"] == second
    resp = await pipe.client.post(f"/v1/positions/{lead}/move", json={"to_stage_id": first, "reason": "redo"},
                                  headers=pipe.headers("rep", "rep-1"))
    assert resp.status_code == 200 and resp.json()["stage"]["stage_id"] == first
    await pipe.dispatch(pipe.envelope(lead_updated(lead, ["score"], score=50), lead))
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
    assert (await pipe.position(lead))["stage"]["stage_id"] == first  # the goal held already: no automatic exit
    goal_met = [a for a in await pipe.outbox("StageAdvanced") if a["data"]["reason"] == "goal_met"]
    assert len(goal_met) == 1


async def test_a_retry_carrying_the_same_if_match_gets_the_stored_response_not_412(pipe):
    created = await pipe.client.post("/v1/pipelines", json=THREE, headers=pipe.headers())
    pid, etag = created.json()["id"], created.headers["etag"]
    headers = pipe.headers(**{"If-Match": etag, "Idempotency-Key": "add-d"})
    first = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "D"}, headers=headers)
    assert first.status_code == 201, first.text
    retry = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "D"}, headers=headers)
    assert retry.status_code == 201 and retry.json() == first.json(), retry.text
    assert retry.headers["idempotent-replayed"] == "true" and retry.headers["etag"] == first.headers["etag"]
    # without the key the same stale If-Match is refused
    stale = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "E"},
                                   headers=pipe.headers(**{"If-Match": etag}))
    assert stale.status_code == 412


async def test_every_change_of_a_pipelines_stages_or_name_is_published_with_its_version(pipe):
    """PipelineDefined carries the definition as it now is (what other services check references against); a
    change of what it does not carry (guidance, lost reasons) publishes nothing."""
    pipeline = await pipe.create_pipeline(THREE)
    pid = pipeline["id"]
    a, b, c = (s["id"] for s in pipeline["stages"])
    admin = pipe.headers()

    async def current() -> dict[str, str]:  # the pipeline's ETag, which every PATCH and PUT must name
        response = await pipe.client.get(f"/v1/pipelines/{pid}", headers=admin)
        return {**admin, "If-Match": response.headers["etag"]}
    assert (await pipe.client.patch(f"/v1/pipelines/{pid}/stages/{a}", json={"guidance": "New"},
                                    headers=await current())).status_code == 200  # version 2, nothing published
    assert (await pipe.client.patch(f"/v1/pipelines/{pid}", json={"lost_reasons": ["no need"]},
                                    headers=await current())).status_code == 200  # version 3, nothing published
    assert (await pipe.client.patch(f"/v1/pipelines/{pid}/stages/{b}", json={"name": "Bee"},
                                    headers=await current())).status_code == 200  # 4
    assert (await pipe.client.put(f"/v1/pipelines/{pid}/stage-order", json={"stage_ids": [c, a, b]},
                                  headers=await current())).status_code == 200  # 5
    added = await pipe.client.post(f"/v1/pipelines/{pid}/stages", json={"name": "D"}, headers=admin)  # 6
    d = next(s["id"] for s in added.json()["stages"] if s["name"] == "D")
    assert (await pipe.client.delete(f"/v1/pipelines/{pid}/stages/{a}", headers=admin)).status_code == 200  # 7
    assert (await pipe.client.patch(f"/v1/pipelines/{pid}", json={"name": "Renamed"},
                                    headers=await current())).status_code == 200  # 8
    assert (await pipe.client.delete(f"/v1/pipelines/{pid}", headers=admin)).status_code == 204  # 9

    published = [(e["subject_id"], e["subject_version"], e["data"]["name"], e["data"]["archived"],
                  [(s["stage_id"], s["name"]) for s in e["data"]["stages"]])
                 for e in await pipe.outbox("PipelineDefined")]
    assert published == [
        (pid, 1, "Three", False, [(a, "A"), (b, "B"), (c, "C")]),
        (pid, 4, "Three", False, [(a, "A"), (b, "Bee"), (c, "C")]),
        (pid, 5, "Three", False, [(c, "C"), (a, "A"), (b, "Bee")]),
        (pid, 6, "Three", False, [(c, "C"), (a, "A"), (b, "Bee"), (d, "D")]),
        (pid, 7, "Three", False, [(c, "C"), (b, "Bee"), (d, "D")]),
        (pid, 8, "Renamed", False, [(c, "C"), (b, "Bee"), (d, "D")]),
        (pid, 9, "Renamed", True, [(c, "C"), (b, "Bee"), (d, "D")]),
    ]
