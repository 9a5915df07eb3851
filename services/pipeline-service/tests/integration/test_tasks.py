"""Stage tasks: owner-tasks follow the owner, a rep's list (overdue first), completion meeting a
required-tasks goal, reassignment, and the overdue sweep emitting one TaskOverdue per task with two replicas."""
import asyncio
from datetime import timedelta

from pipeline_testkit import assigned, build_app, new_lead, routed

from pipeline_service.service_layer.workers import sweep_overdue
from salesflow_shared.testing import running_app

TASKS_PIPELINE = {
    "name": "Tasks", "stages": [
        {"name": "Work", "goal": {"tasks": "required_done"}, "task_templates": [
            {"title": "Call", "type": "call", "required": True, "due": {"amount": 1, "unit": "business_days"}},
            {"title": "Note", "type": "todo", "due": {"amount": 0, "unit": "hours"}},
            {"title": "Legal review", "type": "todo", "required": True, "due": {"amount": 2, "unit": "days"},
             "assignee": {"kind": "rep", "id": "rep-9"}},
            {"title": "Team check", "type": "todo", "due": {"amount": 3, "unit": "days"},
             "assignee": {"kind": "team", "id": "team-x"}}]},
        {"name": "Next", "task_templates": [{"title": "Follow up", "type": "email"}]},
    ]}


async def tasks_of(pipe, sub, role="rep", **params):
    resp = await pipe.client.get("/v1/tasks", params=params, headers=pipe.headers(role, sub))
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_a_routing_that_names_the_owner_creates_the_tasks_for_them_and_its_assignment_reassigns_nothing(pipe):
    pipeline = await pipe.create_pipeline(TASKS_PIPELINE)
    lead = new_lead()
    # assignment-service routes and assigns in one decision: LeadRouted (version 1) names the owner, LeadAssigned
    # (version 2) follows
    with_owner = routed(lead, pipeline["id"]).model_copy(update={"owner_id": "rep-1", "owner_timezone": "Europe/Paris"})
    await pipe.dispatch(pipe.envelope(with_owner, lead, version=1))
    created = {e["data"]["title"]: e["data"]["assignee_id"] for e in await pipe.outbox("TaskCreated")}
    assert created == {"Call": "rep-1", "Note": "rep-1", "Legal review": "rep-9", "Team check": None}
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead, version=2))
    assert await pipe.outbox("TaskReassigned") == []
    assert [t["title"] for t in await tasks_of(pipe, "rep-1")] == ["Note", "Call"]

    # delivered the other way round, a newer assignment wins over the owner the routing named
    other = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(other, "rep-2"), other, version=3))
    late = routed(other, pipeline["id"]).model_copy(update={"owner_id": "rep-1"})
    await pipe.dispatch(pipe.envelope(late, other, version=1))
    assert sorted(t["title"] for t in await tasks_of(pipe, "rep-2")) == ["Call", "Note"]
    assert await pipe.outbox("TaskReassigned") == []


async def test_tasks_follow_the_owner_list_overdue_first_and_completing_required_ones_advances(pipe):
    pipeline = await pipe.create_pipeline(TASKS_PIPELINE)
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    assert [t["title"] for t in await tasks_of(pipe, "rep-1")] == ["Note", "Call"]
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-2"), lead))  # new owner
    assert await tasks_of(pipe, "rep-1") == []
    followed = [e["data"] for e in await pipe.outbox("TaskReassigned")]
    assert sorted((e["title"], e["previous_assignee_id"], e["assignee_id"], e["reason"]) for e in followed) == [
        ("Call", "rep-1", "rep-2", "owner_changed"), ("Note", "rep-1", "rep-2", "owner_changed")]
    assert [t["title"] for t in await tasks_of(pipe, "rep-9")] == ["Legal review"]  # a named rep stays
    assert [t["title"] for t in await tasks_of(pipe, "mgr", "manager", team_id="team-x")] == ["Team check"]

    pipe.clock.advance(timedelta(hours=2))
    mine = await tasks_of(pipe, "rep-2")
    assert [(t["title"], t["overdue"]) for t in mine] == [("Note", True), ("Call", False)]
    call = mine[1]
    # Another rep cannot see or complete it; another org cannot either. The previous owner (rep-1) reads it
    # and cannot complete it.
    assert (await pipe.client.get(f"/v1/tasks/{call['id']}", headers=pipe.headers("rep", "rep-7"))).status_code == 404
    assert (await pipe.client.get(f"/v1/tasks/{call['id']}", headers=pipe.headers("rep", "rep-1"))).status_code == 200
    assert (await pipe.client.post(f"/v1/tasks/{call['id']}/complete",
                                   headers=pipe.headers("rep", "rep-1"))).status_code == 403
    assert (await pipe.client.post(f"/v1/tasks/{call['id']}/complete",
                                   headers=pipe.headers(org="org-b"))).status_code == 404

    resp = await pipe.client.post(f"/v1/tasks/{call['id']}/complete",
                                  headers=pipe.headers("rep", "rep-2", **{"Idempotency-Key": "k1"}))
    assert resp.status_code == 200 and resp.json()["status"] == "done"
    again = await pipe.client.post(f"/v1/tasks/{call['id']}/complete",
                                   headers=pipe.headers("rep", "rep-2", **{"Idempotency-Key": "k1"}))
    assert again.json() == resp.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert (await pipe.client.post(f"/v1/tasks/{call['id']}/complete",
                                   headers=pipe.headers("rep", "rep-2"))).status_code == 409
    assert (await pipe.position(lead))["stage"]["name"] == "Work"  # the legal review is still open

    legal = (await tasks_of(pipe, "rep-9"))[0]
    resp = await pipe.client.post(f"/v1/tasks/{legal['id']}/complete", headers=pipe.headers("manager", "mgr"))
    assert resp.status_code == 200
    completed = await pipe.outbox("TaskCompleted")
    assert [c["data"]["task_id"] for c in completed] == [call["id"], legal["id"]]
    pos = await pipe.position(lead)
    assert pos["stage"]["name"] == "Next"
    assert pos["history"][-1]["triggering_event_id"] == completed[1]["id"]
    skipped = await pipe.outbox("TaskSkipped")
    assert sorted(s["data"]["reason"] for s in skipped) == ["goal_met", "goal_met"]  # Note and Team check

    # Reassigned by hand, a task no longer follows the owner.
    follow_up = pos["open_tasks"][0]
    for _ in range(2):  # the same request again (Idempotency-Key): no second effect, no second event
        resp = await pipe.client.post(f"/v1/tasks/{follow_up['id']}/reassign", json={"assignee_id": "rep-5"},
                                      headers=pipe.headers("manager", "mgr", **{"Idempotency-Key": "r1"}))
        assert resp.status_code == 200 and resp.json()["assignee_kind"] == "rep"
    [by_hand] = [e for e in await pipe.outbox("TaskReassigned") if e["data"]["reason"] == "manual"]
    assert by_hand["subject_id"] == follow_up["id"] and by_hand["subject_version"] == 2
    assert (by_hand["data"]["previous_assignee_id"], by_hand["data"]["assignee_id"]) == ("rep-2", "rep-5")
    assert by_hand["data"]["reassigned_by"] == "mgr" and by_hand["data"]["title"] == "Follow up"
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-3"), lead))
    assert [t["id"] for t in await tasks_of(pipe, "rep-5")] == [follow_up["id"]]
    assert await tasks_of(pipe, "rep-3") == []
    bad = await pipe.client.post(f"/v1/tasks/{follow_up['id']}/reassign", json={},
                                 headers=pipe.headers("manager", "mgr"))
    assert bad.status_code == 422


async def test_two_replicas_sweeping_at_once_emit_one_task_overdue_per_task(pipe, database_url, amqp_url,
                                                                           bus_namespace):
    pipeline = await pipe.create_pipeline({"name": "Sweep", "stages": [{"name": "Only", "task_templates": [
        {"title": f"Task {i}", "due": {"amount": i, "unit": "hours"}} for i in range(1, 4)]}]})
    for _ in range(12):
        lead = new_lead()
        await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead))
        await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    replica = build_app(database_url, amqp_url, bus_namespace, pipe.clock)
    async with running_app(replica):
        other = replica.state.context
        pipe.clock.advance(timedelta(hours=2, minutes=30))  # tasks due in 1 and 2 hours are overdue
        counts = await asyncio.gather(*(sweep_overdue(c, batch=3) for c in (pipe.context, other, pipe.context, other)))
        assert sum(counts) == 24
        overdue = await pipe.outbox("TaskOverdue")
        assert len(overdue) == 24 and len({o["subject_id"] for o in overdue}) == 24
        assert await asyncio.gather(sweep_overdue(pipe.context), sweep_overdue(other)) == [0, 0]
        pipe.clock.advance(timedelta(hours=1))
        counts = await asyncio.gather(sweep_overdue(pipe.context, batch=2), sweep_overdue(other, batch=2))
        assert sum(counts) == 12
    overdue = await pipe.outbox("TaskOverdue")
    assert len(overdue) == 36 and len({o["subject_id"] for o in overdue}) == 36
    pages, cursor = [], None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await pipe.client.get("/v1/tasks", params=params, headers=pipe.headers("rep", "rep-1"))).json()
        pages.extend(page["items"])
        if not (cursor := page["next_cursor"]):
            break
    assert len({t["id"] for t in pages}) == 36 and all(t["overdue"] for t in pages)
    assert [t["due_at"] for t in pages] == sorted(t["due_at"] for t in pages)
    bad = await pipe.client.get("/v1/tasks", params={"cursor": "garbage"}, headers=pipe.headers("rep", "rep-1"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


async def test_the_workers_sweep_by_themselves(database_url, amqp_url, bus_namespace):
    from pipeline_testkit import MONDAY_9AM, Pipe

    from salesflow_shared.clock import ManualClock
    from salesflow_shared.testing import eventually

    clock = ManualClock(MONDAY_9AM)
    app = build_app(database_url, amqp_url, bus_namespace, clock, run_workers=True,
                    overdue_sweep_interval_s=0.05, reopen_interval_s=0.05)
    async with running_app(app) as client:
        pipe = Pipe(client=client, context=app.state.context, clock=clock, feeder=None)
        pipeline = await pipe.create_pipeline({"name": "W", "stages": [{"name": "Only", "task_templates": [
            {"title": "Soon", "due": {"amount": 1, "unit": "hours"}}]}]})
        lead = new_lead()
        await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
        resp = await client.post(f"/v1/positions/{lead}/lost", json={"reason": "x"}, headers=pipe.headers())
        assert resp.status_code == 200  # the pipeline defines no lost reasons: any reason goes
        other = new_lead()  # its task will be overdue; the lost lead's was skipped
        await pipe.dispatch(pipe.envelope(routed(other, pipeline["id"]), other))
        clock.advance(timedelta(days=91))  # past the task's due time and the default 90 nurture days

        async def swept():
            types = [e["type"] for e in await pipe.outbox()]
            assert types.count("TaskOverdue") == 1 and types.count("LeadReopened") == 1
        await eventually(swept, timeout=30)
        assert (await pipe.position(lead))["status"] == "active"
