"""pipeline-service consumes in batches (one transaction per batch, the bus's path): a batch moves a lead exactly as
the same deliveries one by one would (a lead's several events, a goal met on the way, tasks created then
reassigned), a batch that fails leaves nothing behind for the one-by-one retry; and the statements a lead's
routing and assignment cost, counted."""
from __future__ import annotations

import asyncio
import copy
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline_testkit import Pipe, activity, assigned, lead_created, lead_updated, new_lead, routed

from pipeline_service.adapters.orm import lead_past_owners, positions, tasks
from pipeline_service.bootstrap import build_definition
from salesflow_shared.bus import PermanentFailure
from salesflow_shared.events import Envelope, LeadRoutedV1
from salesflow_shared.infra_tables import inbox_table, outbox_table
from salesflow_shared.testing import as_deliveries, statements_sent

# Work is left as soon as a meeting took place; its two tasks follow the owner.
SALES = {
    "name": "Sales", "stages": [
        {"name": "Work", "goal": {"activity": "meeting", "min_count": 1}, "task_templates": [
            {"title": "Call", "type": "call", "required": True, "due": {"amount": 1, "unit": "business_days"}},
            {"title": "Note", "type": "todo", "due": {"amount": 2, "unit": "days"}}]},
        {"name": "Next", "task_templates": [{"title": "Follow up", "type": "email"}]},
    ]}


def routed_to(lead: str, pipeline_id: str, owner: str, tz: str = "Europe/Paris") -> LeadRoutedV1:
    """A routing that names the owner its decision chose (its LeadAssigned follows at the next version)."""
    return routed(lead, pipeline_id).model_copy(update={"owner_id": owner, "owner_timezone": tz})


@dataclass
class Sent:
    """The statements and commits the test's own task sent (the relay and the consumer send theirs beside)."""
    statements: list[str]
    commits: int

    def kinds(self) -> list[str]:
        """Each statement as its verb and table, e.g. 'INSERT inbox', 'SELECT positions'."""
        return [_kind(statement) for statement in self.statements]


def _kind(statement: str) -> str:
    if statement.startswith("WITH"):  # inserts into several tables, e.g. 'INSERT stage_history+tasks'
        return "INSERT " + "+".join(re.findall(r"INSERT INTO (\w+)", statement))
    words = statement.replace("(", " ").split()
    verb = words[0]
    # (a SELECT's first column names its table: its FROM may come after a subquery's)
    table = {"INSERT": words[2], "UPDATE": words[1], "SELECT": words[1].split(".")[0]}[verb]
    return f"{verb} {table}"


async def sent_by(pipe: Pipe, act: Callable[[], Awaitable[None]]) -> Sent:
    """The statements (`statements_sent`) and the commits this task sent while `act` ran."""
    engine = pipe.context.database.engine.sync_engine
    task = asyncio.current_task()
    commits = [0]

    def commit(conn: Any) -> None:
        if asyncio.current_task() is task:
            commits[0] += 1

    sa.event.listen(engine, "commit", commit)
    try:
        _, statements = await statements_sent(pipe.context.database, act)
    finally:
        sa.event.remove(engine, "commit", commit)
    return Sent(statements, commits[0])


async def batch(pipe: Pipe, envelopes: list[Envelope]) -> None:
    await pipe.context.dispatcher.handle_batch(as_deliveries(envelopes))


async def count(pipe: Pipe, table: sa.Table, *where: Any) -> int:
    return len(await pipe.rows(table, *where))


async def open_tasks(pipe: Pipe, lead: str) -> dict[str, str | None]:
    return {row["title"]: row["assignee_id"] for row in await pipe.rows(
        tasks, tasks.c.lead_id == lead, tasks.c.status == "open")}


async def snapshot_of(pipe: Pipe, lead: str) -> dict[str, Any]:
    [row] = await pipe.rows(positions, positions.c.lead_id == lead)
    return dict(row["lead"])


def test_the_service_consumes_in_batches_one_batch_at_a_time():
    definition = build_definition()
    assert definition.consume_in_batches is True
    assert definition.max_batches_in_flight == 1


async def test_an_assignment_that_confirms_the_owner_its_routing_named_is_two_statements(pipe):
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    await batch(pipe, [pipe.envelope(lead_created(lead), lead)])
    await batch(pipe, [pipe.envelope(routed_to(lead, pipeline["id"], "rep-1"), lead, version=1)])
    assert await open_tasks(pipe, lead) == {"Call": "rep-1", "Note": "rep-1"}

    sent = await sent_by(pipe, lambda: batch(pipe, [pipe.envelope(assigned(lead, "rep-1"), lead, version=2)]))

    # its inbox row and the position's lock: its owner, team and time zone are the position's already, and so are
    # the owner's tasks (no task read, no position write)
    assert sent.kinds() == ["INSERT inbox", "SELECT positions"], sent.statements
    assert sent.commits == 1
    assert await pipe.outbox("TaskReassigned") == []
    assert await open_tasks(pipe, lead) == {"Call": "rep-1", "Note": "rep-1"}
    # the routing recorded the decision's owner as assigned: an older decision's assignment, late, is stale
    await batch(pipe, [pipe.envelope(assigned(lead, "rep-7"), lead, version=1)])
    assert await open_tasks(pipe, lead) == {"Call": "rep-1", "Note": "rep-1"}
    # a newer one moves the tasks
    await batch(pipe, [pipe.envelope(assigned(lead, "rep-2"), lead, version=3)])
    assert await open_tasks(pipe, lead) == {"Call": "rep-2", "Note": "rep-2"}


async def test_a_routing_and_its_assignment_in_one_batch_write_the_position_once(pipe):
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    await batch(pipe, [pipe.envelope(lead_created(lead), lead)])

    sent = await sent_by(pipe, lambda: batch(pipe, [
        pipe.envelope(routed_to(lead, pipeline["id"], "rep-1"), lead, version=1),
        pipe.envelope(assigned(lead, "rep-1"), lead, version=2)]))

    # both inbox rows; the position locked with the pipeline it enters; the first stage's visit with its two tasks;
    # the position written; StageAdvanced and the two TaskCreated
    assert sent.kinds() == ["INSERT inbox", "SELECT positions", "INSERT stage_history+tasks",
                            "UPDATE positions", "INSERT outbox"], sent.statements
    assert sent.commits == 1
    assert sorted(e["type"] for e in await pipe.outbox() if e["type"] != "PipelineDefined") == [
        "StageAdvanced", "TaskCreated", "TaskCreated"]
    assert await open_tasks(pipe, lead) == {"Call": "rep-1", "Note": "rep-1"}
    [row] = await pipe.rows(positions, positions.c.lead_id == lead)
    assert (row["owner_id"], row["owner_timezone"], row["status"]) == ("rep-1", "Europe/Paris", "active")


async def test_a_lead_rerouted_within_its_pipeline_takes_its_tasks_to_the_new_owner_at_the_routing(pipe):
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    await batch(pipe, [pipe.envelope(lead_created(lead), lead)])
    await batch(pipe, [pipe.envelope(routed_to(lead, pipeline["id"], "rep-1"), lead, version=1),
                       pipe.envelope(assigned(lead, "rep-1"), lead, version=2)])

    reroute = pipe.envelope(routed_to(lead, pipeline["id"], "rep-2"), lead, version=3)
    await batch(pipe, [reroute])

    # the lead stays in its stage, its owner's tasks follow the routing's owner now; the one before keeps read access
    assert await open_tasks(pipe, lead) == {"Call": "rep-2", "Note": "rep-2"}
    followed = await pipe.outbox("TaskReassigned")
    assert sorted((e["data"]["title"], e["data"]["previous_assignee_id"], e["data"]["assignee_id"],
                   e["data"]["reason"]) for e in followed) == [
        ("Call", "rep-1", "rep-2", "owner_changed"), ("Note", "rep-1", "rep-2", "owner_changed")]
    assert {e["causation_id"] for e in followed} == {str(reroute.id)}
    assert [r["rep_id"] for r in await pipe.rows(lead_past_owners, lead_past_owners.c.lead_id == lead)] == ["rep-1"]
    assert [e["data"]["reason"] for e in await pipe.outbox("StageAdvanced")] == ["entry"]  # no second entry

    # the same decision's assignment: nothing more to do
    sent = await sent_by(pipe, lambda: batch(pipe, [pipe.envelope(assigned(lead, "rep-2"), lead, version=4)]))
    assert sent.kinds() == ["INSERT inbox", "SELECT positions"], sent.statements
    assert len(await pipe.outbox("TaskReassigned")) == 2


async def test_a_leads_events_in_one_batch_meet_a_goal_and_advance_as_one_by_one(pipe):
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    await batch(pipe, [pipe.envelope(lead_created(lead, country="FR"), lead)])
    await batch(pipe, [pipe.envelope(routed_to(lead, pipeline["id"], "rep-1"), lead, version=1)])
    pipe.clock.advance(timedelta(hours=1))

    meeting = pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead)
    sent = await sent_by(pipe, lambda: batch(pipe, [
        meeting, pipe.envelope(lead_updated(lead, ["country"], country="DE"), lead),
        pipe.envelope(assigned(lead, "rep-1"), lead, version=2)]))

    # the meeting meets Work's goal: the lead moves to Next (Work's tasks skipped, Next's created for the owner);
    # the update, after it, finds the position the meeting left and keeps it in Next
    position = await pipe.position(lead)
    assert position["stage"]["name"] == "Next"
    assert (await snapshot_of(pipe, lead))["country"] == "DE"
    assert [(h["stage_name"], h["entry_reason"], h["exit_reason"]) for h in position["history"]] == [
        ("Work", "entry", "goal_met"), ("Next", "goal_met", None)]
    assert await open_tasks(pipe, lead) == {"Follow up": "rep-1"}
    advanced = await pipe.outbox("StageAdvanced")
    assert [(e["data"]["reason"], e["data"]["triggering_event_id"]) for e in advanced] == [
        ("entry", advanced[0]["data"]["triggering_event_id"]), ("goal_met", str(meeting.id))]
    assert sorted((row["title"], row["skip_reason"]) for row in await pipe.rows(
        tasks, tasks.c.lead_id == lead, tasks.c.status == "skipped")) == [("Call", "goal_met"), ("Note", "goal_met")]
    assert len(await pipe.outbox("TaskSkipped")) == 2
    # one inbox statement, one position lock and one position write for the three, one commit
    assert sent.kinds().count("INSERT inbox") == 1 and sent.kinds().count("SELECT positions") == 1
    assert sent.commits == 1


async def test_tasks_created_for_nobody_then_assigned_in_one_batch_are_reassigned_as_one_by_one(pipe):
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    created, route, owner = (pipe.envelope(lead_created(lead), lead),
                             pipe.envelope(routed(lead, pipeline["id"]), lead, version=1),  # no owner named
                             pipe.envelope(assigned(lead, "rep-3"), lead, version=2))

    await batch(pipe, [created, route, owner])

    assert await open_tasks(pipe, lead) == {"Call": "rep-3", "Note": "rep-3"}
    created_for = {e["data"]["title"]: e["data"]["assignee_id"] for e in await pipe.outbox("TaskCreated")}
    assert created_for == {"Call": None, "Note": None}
    followed = await pipe.outbox("TaskReassigned")
    assert sorted((e["data"]["title"], e["data"]["previous_assignee_id"], e["data"]["assignee_id"])
                  for e in followed) == [("Call", None, "rep-3"), ("Note", None, "rep-3")]
    assert {e["causation_id"] for e in followed} == {str(owner.id)}


async def test_a_failing_delivery_fails_its_batch_whole_and_the_others_go_through_alone_once(pipe):
    pipeline = await pipe.create_pipeline(SALES)
    good, poisoned = new_lead(), new_lead()
    deliveries = [pipe.envelope(lead_created(good), good),
                  pipe.envelope(routed(good, pipeline["id"]), good, version=1),
                  pipe.envelope(lead_created(poisoned), poisoned),
                  pipe.envelope(routed(poisoned, "no-such-pipeline"), poisoned, version=1)]

    with pytest.raises(PermanentFailure):
        await batch(pipe, deliveries)

    # nothing of the batch was kept: no position, no task, no inbox row, no event
    assert await count(pipe, positions, positions.c.lead_id.in_([good, poisoned])) == 0
    assert await count(pipe, tasks) == 0
    assert await count(pipe, inbox_table) == 0
    assert await count(pipe, outbox_table, outbox_table.c.event_type != "PipelineDefined") == 0

    # the bus then hands each message to the one-by-one path: the good ones go through, the poisoned one fails again
    failures = 0
    for body, headers in as_deliveries(deliveries):
        try:
            await pipe.context.dispatcher.handle_message(body, headers)
        except PermanentFailure:
            failures += 1
    assert failures == 1
    assert (await pipe.position(good))["stage"]["name"] == "Work"
    assert (await pipe.position(poisoned))["status"] == "unrouted"
    assert len(await pipe.outbox("StageAdvanced")) == 1 and len(await pipe.outbox("TaskCreated")) == 2

    # and a redelivery of the good ones, in a batch, changes nothing
    await batch(pipe, deliveries[:3])
    assert len(await pipe.outbox("StageAdvanced")) == 1 and len(await pipe.outbox("TaskCreated")) == 2
    assert await count(pipe, inbox_table) == 3


async def test_a_leads_deliveries_deep_copy_nothing(pipe, monkeypatch):
    """The position's columns are kept as read (to write it back only when changed) without copying the snapshot
    (it is replaced whole, never changed in place), and a stage's tasks are inserted from their fields as they
    are."""
    pipeline = await pipe.create_pipeline(SALES)
    lead = new_lead()
    callers: list[str] = []
    deepcopy: Callable[..., Any] = copy.deepcopy

    def recording(value: Any, *args: Any) -> Any:
        callers.append(sys._getframe(1).f_globals.get("__name__", "?"))
        return deepcopy(value, *args)

    monkeypatch.setattr(copy, "deepcopy", recording)
    deliveries: list[Callable[[], Awaitable[None]]] = [
        lambda: batch(pipe, [pipe.envelope(lead_created(lead, country="FR"), lead)]),
        lambda: batch(pipe, [pipe.envelope(routed_to(lead, pipeline["id"], "rep-1"), lead, version=1)]),
        lambda: batch(pipe, [pipe.envelope(lead_updated(lead, ["country"], country="DE"), lead)]),
        lambda: batch(pipe, [pipe.envelope(activity(lead, "call", pipe.clock.now()), lead)])]
    for deliver in deliveries:
        await deliver()
    monkeypatch.undo()

    assert callers == []  # (they were the position's columns kept as read, and a stage's tasks as rows)
    assert (await snapshot_of(pipe, lead))["country"] == "DE"
    assert (await pipe.position(lead))["stage"]["name"] == "Work"
