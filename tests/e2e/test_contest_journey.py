"""A sales contest over the normal flow, end to end against the running services: a manager launches a monthly
race from its template; reps work their leads through lead-service and pipeline-service (a meeting that meets
the stage goal, a call, a duplicate and a too-short call, a win); incentive-service scores it from the events with
the guards holding, the board shows the ranks, the manager finishes the race and the right rep wins — told once
by email — with the prize as an award."""
from __future__ import annotations

from datetime import UTC, datetime

from e2e_testkit import (
    ASSIGNMENT,
    INCENTIVE,
    LEAD,
    NOTIFICATION,
    PIPELINE,
    World,
    admin,
    fallback_rule,
    inbound_pipeline,
    manager,
    new_org,
    ok,
    poll,
    put_rules,
    rep,
    rep_email,
    setup_team,
    smtp_to,
)


async def test_a_contest_runs_over_the_normal_flow_and_the_right_rep_wins(world: World):
    org = new_org("contest")
    async with world.client(PIPELINE, admin(org)) as pipeline_api:
        pipeline = await inbound_pipeline(pipeline_api)
    async with world.client(ASSIGNMENT, admin(org)) as assignment_api:
        team = await setup_team(assignment_api, org, ["ann", "bob"], "Inside sales")
        await put_rules(assignment_api, [fallback_rule(pipeline["id"], team)])
    lead_api = world.client(LEAD, admin(org))
    leads = []
    for name in ("Acme", "Globex"):
        created = await ok(lead_api.post("/v1/leads", json={
            "contact": {"first_name": "Bo", "email": f"bo@{name.lower()}.example"}, "company": {"name": name},
            "country": "DE", "value": "5000", "currency": "EUR", "source": "api"}))
        leads.append(created["id"])

    async def both_assigned():
        async with world.client(ASSIGNMENT, admin(org)) as api:
            owners = [(await ok(api.get("/v1/assignments", params={"lead_id": lead})))["items"] for lead in leads]
        assert all(len(items) == 1 for items in owners), owners
        return [items[0]["owner_id"] for items in owners]
    owners = await poll(both_assigned, timeout=30)
    assert sorted(owners) == ["ann", "bob"]
    winner, runner = owners  # the owner of the first lead will win it
    winner_lead, runner_lead = leads

    # ------------------------------------------------------------------ the manager launches a race
    now = datetime.now(UTC)
    incentive_api = world.client(INCENTIVE, manager(org))
    race = await ok(incentive_api.post("/v1/programs/templates/monthly-race", json={
        "name": "Sprint to 30", "year": now.year, "month": now.month, "participants": ["ann", "bob"],
        "target": 30, "prizes": ["500.00", "250.00"], "currency": "EUR", "start": True}), 201)
    assert race["status"] == "running" and race["format"] == "race"

    # ------------------------------------------------------------------ the reps work their leads
    async def log(rep_id: str, lead: str, kind: str, seconds: int, outcome: str | None = None) -> None:
        async with world.client(LEAD, rep(org, rep_id)) as api:
            await ok(api.post("/v1/activities", json={
                "lead_id": lead, "kind": kind, "occurred_at": datetime.now(UTC).isoformat(),
                "duration_seconds": seconds, "outcome": outcome}), 201)
    moment = datetime.now(UTC).replace(microsecond=0)
    async with world.client(LEAD, rep(org, runner)) as api:
        for _ in range(2):  # the same call logged twice in the same minute: counted once
            await ok(api.post("/v1/activities", json={
                "lead_id": runner_lead, "kind": "call", "occurred_at": moment.isoformat(),
                "duration_seconds": 180, "outcome": "connected"}), 201)
    await log(runner, runner_lead, "call", 30, "connected")  # too short to count
    await log(winner, winner_lead, "meeting", 1800)  # 10, and it meets the stage goal: an advance, 5

    async def board() -> dict[str, int]:
        shown = await ok(incentive_api.get(f"/v1/programs/{race['id']}/leaderboard"))
        return {e["id"]: e["points"] for e in shown["entries"]}

    async def scored_so_far():
        assert await board() == {winner: 15, runner: 3}
    await poll(scored_so_far, timeout=30)

    async with world.client(PIPELINE, rep(org, winner)) as api:
        await ok(api.post(f"/v1/positions/{winner_lead}/won", json={"value": "5000.00", "currency": "EUR"}))

    async def crossed_the_line():  # the win: 20 + 5 per 1,000 = 25 -> 40, past the target of 30
        shown = await ok(incentive_api.get(f"/v1/programs/{race['id']}/leaderboard"))
        assert [(e["id"], e["points"], e["rank"], e["finished_at"] is not None) for e in shown["entries"]] == [
            (winner, 40, 1, True), (runner, 3, 2, False)]
    await poll(crossed_the_line, timeout=30)
    async with world.client(INCENTIVE, rep(org, runner)) as api:
        mine = await ok(api.get(f"/v1/programs/{race['id']}/positions/me"))
    assert (mine["rank"], mine["points_to_pass_next"], mine["next_milestone"], mine["points_to_next_milestone"]) == (
        2, 38, "target", 27)

    # ------------------------------------------------------------------ the race ends: the right rep wins
    finished = await ok(incentive_api.post(f"/v1/programs/{race['id']}/finish"))
    assert finished["status"] == "ended"
    async with world.client(INCENTIVE, rep(org, winner)) as api:
        awards = (await ok(api.get(f"/v1/programs/{race['id']}/awards")))["items"]
    assert [(a["kind"], a["name"], a["cash"], a["currency"]) for a in awards] == [
        ("place", "place 1", "500.00", "EUR")]

    async def winner_told_once():
        subjects = [m["Subject"] for m in smtp_to(world.smtp, rep_email(org, winner))]
        assert subjects.count("Place 1 in Sprint to 30") == 1, subjects
        assert subjects.count("Sprint to 30 has started") == 1, subjects
    await poll(winner_told_once, timeout=30)
    runner_subjects = [m["Subject"] for m in smtp_to(world.smtp, rep_email(org, runner))]
    assert not any(s.startswith("Place") for s in runner_subjects)

    async def recorded_as_sent():
        async with world.client(NOTIFICATION, admin(org)) as api:
            deliveries = (await ok(api.get("/v1/deliveries", params={"limit": 200})))["items"]
        won_mails = [d for d in deliveries if d["reason"] == "program_won"]
        assert [(d["rep_id"], d["kind"], d["status"]) for d in won_mails] == [(winner, "email", "sent")]
    await poll(recorded_as_sent, timeout=20)
