"""pipeline-service's use cases end to end in one process, in seconds: the embedded mode's SQLite database and
in-process bus (no PostgreSQL, no RabbitMQ), events handed straight to the handlers, and what a user sees
asserted through the HTTP API and the events the service publishes."""
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pipeline_testkit import MONDAY_9AM, Pipe, activity, assigned, build_app, lead_created, new_lead, routed

from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import running_app

# Qualify is left as soon as a meeting took place; Propose once every required task is done; Decide by hand.
SALES = {
    "name": "Sales", "stages": [
        {"name": "Qualify", "goal": {"activity": "meeting", "min_count": 1},
         "task_templates": [
             {"title": "Call the lead", "type": "call", "required": True, "due": {"amount": 4, "unit": "hours"}},
             {"title": "Send the deck", "type": "email", "due": {"amount": 1, "unit": "days"}}]},
        {"name": "Propose", "goal": {"tasks": "required_done"},
         "task_templates": [
             {"title": "Send the proposal", "type": "email", "required": True,
              "due": {"amount": 3, "unit": "business_days", "at": "17:00"}},
             {"title": "Research the account", "type": "todo",
              "due": {"amount": 0, "unit": "business_days", "at": "18:00"}}]},
        {"name": "Decide", "is_ask_stage": True,
         "task_templates": [{"title": "Call for the decision", "type": "call",
                             "due": {"amount": 2, "unit": "business_days"}}]},
    ]}


@pytest.fixture
async def embedded(tmp_path) -> AsyncIterator[Pipe]:
    clock = ManualClock(MONDAY_9AM)  # Monday 23 November 2026, 09:00 UTC
    app = build_app(f"sqlite+aiosqlite:///{tmp_path / 'pipeline.db'}", "", "", clock)
    async with running_app(app) as client:
        yield Pipe(client=client, context=app.state.context, clock=clock, feeder=None)


async def _lead_in_sales(pipe: Pipe, tz: str = "Europe/Paris") -> tuple[str, dict]:
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(lead_created(lead, timezone=tz), lead))
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1", tz=tz), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    return lead, {s["name"]: s["id"] for s in pipeline["stages"]}


def _open_tasks(position: dict) -> dict[str, dict]:
    return {t["title"]: t for t in position["open_tasks"]}


async def _tasks(pipe: Pipe, lead: str, status: str) -> dict[str, dict]:
    resp = await pipe.client.get("/v1/tasks", params={"lead_id": lead, "status": status}, headers=pipe.headers())
    assert resp.status_code == 200, resp.text
    return {t["title"]: t for t in resp.json()["items"]}


async def test_a_met_goal_advances_the_lead_and_skips_the_tasks_left_open_in_the_stage_it_leaves(embedded):
    pipe = embedded
    lead, stage = await _lead_in_sales(pipe)
    position = await pipe.position(lead)
    assert position["stage"]["name"] == "Qualify"
    assert set(_open_tasks(position)) == {"Call the lead", "Send the deck"}
    assert {t["assignee_id"] for t in position["open_tasks"]} == {"rep-1"}

    pipe.clock.advance(timedelta(hours=1))
    meeting = activity(lead, "meeting", pipe.clock.now())
    await pipe.dispatch(pipe.envelope(meeting, lead))

    position = await pipe.position(lead)
    assert position["stage"]["name"] == "Propose"
    assert set(_open_tasks(position)) == {"Send the proposal", "Research the account"}
    assert [(h["stage_name"], h["entry_reason"], h["exit_reason"]) for h in position["history"]] == [
        ("Qualify", "entry", "goal_met"), ("Propose", "goal_met", None)]
    skipped = await _tasks(pipe, lead, "skipped")
    assert set(skipped) == {"Call the lead", "Send the deck"}
    assert {t["skip_reason"] for t in skipped.values()} == {"goal_met"}
    assert [e["data"]["reason"] for e in await pipe.outbox("StageAdvanced")] == ["entry", "goal_met"]
    assert sorted(e["data"]["reason"] for e in await pipe.outbox("TaskSkipped")) == ["goal_met", "goal_met"]

    # The same meeting told again (another event, the same activity) counts once and moves nothing.
    await pipe.dispatch(pipe.envelope(meeting, lead))
    assert (await pipe.position(lead))["stage"]["name"] == "Propose"
    assert len(await pipe.outbox("StageAdvanced")) == 2


async def test_completing_the_last_required_task_meets_the_goal_and_the_optional_one_is_skipped(embedded):
    pipe = embedded
    lead, stage = await _lead_in_sales(pipe)
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
    proposal = _open_tasks(await pipe.position(lead))["Send the proposal"]

    done = await pipe.client.post(f"/v1/tasks/{proposal['id']}/complete", headers=pipe.headers("rep", "rep-1"))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["completed_by"] == "rep-1"

    position = await pipe.position(lead)
    assert position["stage"]["name"] == "Decide"
    assert set(_open_tasks(position)) == {"Call for the decision"}
    assert (await _tasks(pipe, lead, "skipped"))["Research the account"]["skip_reason"] == "goal_met"
    # Decide has no goal: the lead leaves it only when closed as won or lost.
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
    assert (await pipe.position(lead))["stage"]["name"] == "Decide"


async def test_a_lead_moved_back_into_a_stage_whose_goal_holds_stays_there(embedded):
    pipe = embedded
    lead, stage = await _lead_in_sales(pipe)
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))

    moved = await pipe.client.post(f"/v1/positions/{lead}/move", json={"to_stage_id": stage["Qualify"],
                                                                       "reason": "qualify again"},
                                   headers=pipe.headers("rep", "rep-1"))
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage"]["name"] == "Qualify"
    await pipe.dispatch(pipe.envelope(activity(lead, "call", pipe.clock.now()), lead))
    position = await pipe.position(lead)
    assert position["stage"]["name"] == "Qualify"
    assert position["history"][-1]["entry_reason"] == "manual" and position["history"][-1]["note"] == "qualify again"
    assert set(_open_tasks(position)) == {"Call the lead", "Send the deck"}


async def test_due_dates_are_relative_to_stage_entry_in_the_owners_time_zone(embedded):
    pipe = embedded
    # Entered Monday 23 November 2026 at 09:00 UTC = 04:00 in New York.
    lead, stage = await _lead_in_sales(pipe, tz="America/New_York")
    due = {title: t["due_at"] for title, t in _open_tasks(await pipe.position(lead)).items()}
    assert due == {"Call the lead": "2026-11-23T13:00:00+00:00",  # 4 hours later
                   "Send the deck": "2026-11-24T09:00:00+00:00"}  # 1 day later, same local time

    # Entering Propose on Friday 27 November, 15:00 in New York: "3 business days at 17:00" skips the weekend
    # (Wednesday 2 December, 17:00 New York = 22:00 UTC); "0 business days at 18:00" is that same Friday.
    pipe.clock.set(datetime(2026, 11, 27, 20, 0, tzinfo=UTC))
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
    due = {title: t["due_at"] for title, t in _open_tasks(await pipe.position(lead)).items()}
    assert due == {"Send the proposal": "2026-12-02T22:00:00+00:00",
                   "Research the account": "2026-11-27T23:00:00+00:00"}


async def test_business_days_skip_the_orgs_public_holidays_and_days_off(embedded):
    pipe = embedded
    calendar = await pipe.client.put("/v1/business-calendar", json={"country": "US", "days_off": ["2026-12-01"]},
                                     headers=pipe.headers(**{"If-Match": '"0"'}))
    assert calendar.status_code == 200, calendar.text
    lead, stage = await _lead_in_sales(pipe, tz="America/New_York")
    # Entering Propose on Wednesday 25 November, 10:00 New York: Thanksgiving (Thursday 26), the weekend and the
    # org's day off (Tuesday 1 December) are not working days, so the 3 business days are Friday 27, Monday 30
    # and Wednesday 2 December (without the calendar: Monday 30 November).
    pipe.clock.set(datetime(2026, 11, 25, 15, 0, tzinfo=UTC))
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
    proposal = _open_tasks(await pipe.position(lead))["Send the proposal"]
    assert proposal["due_at"] == "2026-12-02T22:00:00+00:00"


async def test_an_overdue_task_is_flagged_once_for_its_assignee(embedded):
    pipe = embedded
    from pipeline_service.service_layer.workers import sweep_overdue

    lead, _ = await _lead_in_sales(pipe)
    pipe.clock.advance(timedelta(hours=5))  # "Call the lead" was due after 4 hours
    assert await sweep_overdue(pipe.context) == 1
    assert await sweep_overdue(pipe.context) == 0
    mine = await pipe.client.get("/v1/tasks", headers=pipe.headers("rep", "rep-1"))
    overdue = {t["title"]: t["overdue"] for t in mine.json()["items"]}
    assert overdue == {"Call the lead": True, "Send the deck": False}
    [event] = [e["data"] for e in await pipe.outbox("TaskOverdue")]
    assert (event["title"], event["assignee_id"]) == ("Call the lead", "rep-1")
