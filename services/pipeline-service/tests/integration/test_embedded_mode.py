"""The embedded mode (SQLite + in-process bus) runs the same migrations and flow."""
from datetime import timedelta

from pipeline_testkit import MONDAY_9AM, Pipe, activity, assigned, build_app, new_lead, routed

from pipeline_service.service_layer.workers import reopen_due_leads, sweep_overdue
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import running_app


async def test_sqlite_and_in_process_bus_run_the_whole_flow(tmp_path):
    clock = ManualClock(MONDAY_9AM)
    app = build_app(f"sqlite+aiosqlite:///{tmp_path / 'pipeline.db'}", "", "", clock)
    async with running_app(app) as client:
        pipe = Pipe(client=client, context=app.state.context, clock=clock, feeder=None)
        pipeline = await pipe.instantiate("inbound-web-form")
        lead = new_lead()
        await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1", tz="America/New_York"), lead))
        await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
        clock.advance(timedelta(hours=5))
        assert await sweep_overdue(pipe.context) == 1  # the 4-hour email invitation
        await pipe.dispatch(pipe.envelope(activity(lead, "meeting", clock.now()), lead))
        pos = await pipe.position(lead)
        assert pos["stage"]["name"] == "Negotiation"
        resp = await client.post(f"/v1/positions/{lead}/lost", json={"reason": "bad timing"}, headers=pipe.headers())
        assert resp.status_code == 200 and resp.json()["status"] == "nurturing"
        clock.advance(timedelta(days=31))  # the template nurtures for 30 days
        assert await reopen_due_leads(pipe.context) == 1
        assert (await pipe.position(lead))["stage"]["name"] == "Qualification meeting"
        types = [e["type"] for e in await pipe.outbox()]
        assert types.count("TaskOverdue") == 1 and types.count("LeadReopened") == 1
