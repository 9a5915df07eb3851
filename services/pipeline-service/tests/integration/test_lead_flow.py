"""A routed lead gets its stage tasks; a meeting meets the goal; the lead advances once, whatever the
delivery order or duplication (real PostgreSQL and RabbitMQ)."""
from datetime import timedelta

from pipeline_testkit import (
    ORG,
    activity,
    assigned,
    lead_created,
    lead_updated,
    new_lead,
    routed,
)

from salesflow_shared.bus import Subscription
from salesflow_shared.events import Envelope
from salesflow_shared.testing import eventually


def handled(pipe, event_type: str, outcome: str) -> float:
    return pipe.context.metrics.messages_handled.labels(event_type, outcome)._value.get()


async def test_routed_lead_gets_tasks_and_a_meeting_advances_it_once_even_when_delivered_twice(pipe):
    seen: list[Envelope] = []

    async def collect(body, headers):
        seen.append(Envelope.from_json(body))
    await pipe.feeder.subscribe(Subscription(queue="test.events", event_types=["StageAdvanced", "TaskSkipped"],
                                             callback=collect, retry_delays_ms=[100]))
    pipeline = await pipe.instantiate("inbound-web-form")
    first, second = pipeline["stages"][0], pipeline["stages"][1]
    lead = new_lead()
    await pipe.send(pipe.envelope(lead_created(lead, timezone="Europe/Paris"), lead))
    await pipe.send(pipe.envelope(assigned(lead, "rep-1"), lead))
    routing = await pipe.send(pipe.envelope(routed(lead, pipeline["id"]), lead))

    async def in_first_stage_with_owner_tasks():
        pos = await pipe.position(lead)
        assert pos["stage"] and pos["stage"]["stage_id"] == first["id"] and pos["status"] == "active"
        assert sorted(t["title"] for t in pos["open_tasks"]) == [
            "Email an invitation to a qualification meeting", "Hold the qualification meeting"]
        assert {t["assignee_id"] for t in pos["open_tasks"]} == {"rep-1"}
        return pos
    pos = await eventually(in_first_stage_with_owner_tasks, timeout=30)
    assert pos["stage"]["guidance"].startswith("The lead came through the web form")
    due = {t["title"]: t["due_at"] for t in pos["open_tasks"]}
    assert due["Email an invitation to a qualification meeting"] == "2026-11-23T13:00:00+00:00"  # +4 hours
    assert due["Hold the qualification meeting"] == "2026-11-26T09:00:00+00:00"  # +3 business days, Paris
    entry = (await pipe.outbox("StageAdvanced"))[0]
    assert entry["data"]["reason"] == "entry" and entry["data"]["triggering_event_id"] == str(routing.id)
    assert entry["subject_id"] == lead and entry["data"]["to_stage_position"] == 1
    assert len(await pipe.outbox("TaskCreated")) == 2

    pipe.clock.advance(timedelta(hours=2))
    meeting = pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead)
    await pipe.send(meeting)
    await pipe.send(meeting)  # the broker delivers it twice

    async def advanced():
        pos = await pipe.position(lead)
        assert pos["stage"] and pos["stage"]["stage_id"] == second["id"]
        assert handled(pipe, "ActivityLogged", "duplicate") == 1
        return pos
    pos = await eventually(advanced, timeout=30)
    assert [h["stage_name"] for h in pos["history"]] == ["Qualification meeting", "Negotiation"]
    assert pos["history"][0]["exit_reason"] == "goal_met" and pos["history"][0]["seconds_in_stage"] == 7200
    assert pos["history"][1]["entry_reason"] == "goal_met"
    assert pos["history"][1]["triggering_event_id"] == str(meeting.id)
    assert len(pos["open_tasks"]) == 2 and pos["stage"]["is_ask_stage"] is True

    advances = await pipe.outbox("StageAdvanced")
    assert [a["data"]["reason"] for a in advances] == ["entry", "goal_met"]
    goal_met = advances[1]["data"]
    assert goal_met["triggering_event_id"] == str(meeting.id)
    assert goal_met["from_stage_id"] == first["id"] and goal_met["to_stage_id"] == second["id"]
    assert goal_met["win_probability"] == "0.4" and goal_met["owner_id"] == "rep-1"
    assert advances[1]["subject_version"] > advances[0]["subject_version"]
    skipped = await pipe.outbox("TaskSkipped")
    assert len(skipped) == 2 and {s["data"]["reason"] for s in skipped} == {"goal_met"}
    assert len(await pipe.outbox("TaskCreated")) == 4

    # What reached RabbitMQ: each event once.
    async def all_delivered():
        assert sorted(e.type for e in seen) == ["StageAdvanced", "StageAdvanced", "TaskSkipped", "TaskSkipped"]
    await eventually(all_delivered, timeout=30)
    assert len({e.id for e in seen}) == 4


async def test_out_of_order_and_stale_events_end_in_the_same_place(pipe):
    pipeline = await pipe.instantiate("inbound-web-form")
    stages = pipeline["stages"]
    lead = new_lead()
    meeting_at = pipe.clock.now() - timedelta(days=1)
    # The meeting and a newer snapshot arrive before the routing and before the (older) LeadCreated.
    await pipe.dispatch(pipe.envelope(activity(lead, "meeting", meeting_at), lead))
    await pipe.dispatch(pipe.envelope(lead_updated(lead, ["value"], value="9000", currency="EUR"), lead, version=2))
    routing = await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    await pipe.dispatch(pipe.envelope(lead_created(lead), lead, version=1))  # stale: ignored
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-2"), lead, version=2))
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1"), lead, version=1))  # stale: ignored

    pos = await pipe.position(lead)
    # Entered stage 1 and, the meeting being known, left it at once for stage 2.
    assert pos["stage"]["stage_id"] == stages[1]["id"]
    assert [(h["entry_reason"], h["triggering_event_id"]) for h in pos["history"]] == [
        ("entry", str(routing.id)), ("goal_met", str(routing.id))]
    assert pos["owner_id"] == "rep-2"
    assert {t["assignee_id"] for t in pos["open_tasks"]} == {"rep-2"}  # owner-tasks followed the owner

    # Stage 2 needs a proposal since entry and a value: the value came with v2 and survived the stale v1.
    pipe.clock.advance(timedelta(hours=1))
    proposal = await pipe.dispatch(pipe.envelope(activity(lead, "proposal", pipe.clock.now()), lead))
    await pipe.dispatch(proposal)  # redelivered: the inbox absorbs it
    await pipe.dispatch(routing)
    pos = await pipe.position(lead)
    assert pos["stage"]["stage_id"] == stages[2]["id"]
    reasons = [(a["data"]["reason"], a["data"]["to_stage_id"]) for a in await pipe.outbox("StageAdvanced")]
    assert reasons == [("entry", stages[0]["id"]), ("goal_met", stages[1]["id"]), ("goal_met", stages[2]["id"])]

    # A newer routing to another pipeline moves the lead there; an older one arriving late changes nothing.
    outbound = await pipe.instantiate("outbound-cold-calling")
    await pipe.dispatch(pipe.envelope(routed(lead, outbound["id"]), lead, version=3))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead, version=2))
    pos = await pipe.position(lead)
    assert pos["pipeline"]["pipeline_id"] == outbound["id"] and pos["stage"]["stage_id"] == outbound["stages"][0]["id"]
    assert pos["history"][-2]["exit_reason"] == "rerouted" and pos["history"][-1]["entry_reason"] == "entry"
    assert [t["title"] for t in pos["open_tasks"]][:1] == ["Research the company and the decision maker"]
    assert [s["data"]["reason"] for s in await pipe.outbox("TaskSkipped")].count("rerouted") == 1


async def test_a_routing_to_an_unknown_or_foreign_pipeline_is_parked_not_applied(pipe):
    foreign = await pipe.instantiate("inbound-web-form", org="org-b")
    lead = new_lead()
    envelope = await pipe.send(pipe.envelope(routed(lead, foreign["id"]), lead, org=ORG))

    async def parked():
        items = await pipe.context.bus.list_parked(pipe.context.queue)
        assert [p.event_id for p in items] == [str(envelope.id)]
    await eventually(parked, timeout=30)
    resp = await pipe.client.get(f"/v1/positions/{lead}", headers=pipe.headers())
    assert resp.status_code == 404  # the failed routing left nothing behind (its transaction rolled back)
    assert await pipe.outbox("StageAdvanced") == []


async def test_two_events_meeting_the_goal_at_the_same_time_advance_the_lead_once(pipe):
    import asyncio

    pipeline = await pipe.instantiate("inbound-web-form")
    leads = [new_lead() for _ in range(5)]
    for lead in leads:
        await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    pipe.clock.advance(timedelta(minutes=5))
    # Two meetings per lead handled concurrently (as with a prefetch > 1 or two replicas).
    await asyncio.gather(*(pipe.dispatch(pipe.envelope(activity(lead, "meeting", pipe.clock.now()), lead))
                           for lead in leads for _ in range(2)))
    advances = [a for a in await pipe.outbox("StageAdvanced") if a["data"]["reason"] == "goal_met"]
    assert sorted(a["subject_id"] for a in advances) == sorted(leads)
    for lead in leads:
        pos = await pipe.position(lead)
        assert [h["stage_name"] for h in pos["history"]] == ["Qualification meeting", "Negotiation"]


async def test_a_meeting_added_while_the_lead_was_held_elsewhere_counts_towards_the_goal(pipe):
    """Two replicas log a lead's two meetings at once. The second waits for the lead's position, which the first
    holds while it adds its meeting; once the first commits, the second must judge the goal (two meetings) on
    both, not on the activities it could see when its statement began (one: its own)."""
    import asyncio

    import sqlalchemy as sa

    from pipeline_service.adapters import repository

    pipeline = await pipe.create_pipeline({"name": "Sales", "stages": [
        {"name": "Work", "goal": {"activity": "meeting", "min_count": 2}}, {"name": "Next"}]})
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(lead_created(lead), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    pipe.clock.advance(timedelta(minutes=5))
    now = pipe.clock.now()
    database = pipe.context.database

    async def waiting_for_a_lock() -> None:
        async with database.session() as session:
            waiting = (await session.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))).scalar_one()
        assert waiting == 1

    async with database.session() as first:  # the first replica's transaction, holding the position
        assert await repository.lock_position(first, ORG, lead, now, create=False) is not None
        assert await repository.add_activity(first, ORG, "meeting-1", lead, "meeting", now, now)
        second = asyncio.create_task(pipe.dispatch(pipe.envelope(
            activity(lead, "meeting", now, activity_id="meeting-2"), lead)))
        await eventually(waiting_for_a_lock)
        await first.commit()
    await second

    position = await pipe.position(lead)
    assert [(h["stage_name"], h["exit_reason"]) for h in position["history"]] == [("Work", "goal_met"), ("Next", None)]
