"""Incentive programs over HTTP and events on the real PostgreSQL and RabbitMQ: launched from templates, scored
from the other services' events with the guards holding, awards once each, the board, a rep's position and the
live stream."""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import uvicorn
from incentive_testkit import NOW, ORG, Incentives, new_lead, recalculate, win_deal

from incentive_service.adapters.orm import recalculation_queue
from incentive_service.adapters.programs_orm import program_awards, program_flags, program_scores
from incentive_service.service_layer.programs import program_cash_rewards
from salesflow_shared.events import (
    ActivityLoggedV1,
    ExchangeRateSetV1,
    LeadReopenedV1,
    LeadSnapshot,
    LeadUpdatedV1,
    LeadWonV1,
    StageAdvancedV1,
)
from salesflow_shared.testing import eventually

START = datetime(2027, 2, 1, tzinfo=UTC)
END = datetime(2027, 3, 1, tzinfo=UTC)


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2027, 2, day, hour, tzinfo=UTC)


def call(rep: str, lead: str, when: datetime, *, seconds: int = 180, activity_id: str | None = None,
         source: str = "rep") -> ActivityLoggedV1:
    return ActivityLoggedV1(activity_id=activity_id or f"act-{lead}-{when:%d%H%M}-{rep}", lead_id=lead,
                            kind="call", rep_id=rep, occurred_at=when, duration_seconds=seconds,
                            outcome="connected", source=source)


def meeting(rep: str, lead: str, when: datetime) -> ActivityLoggedV1:
    return ActivityLoggedV1(activity_id=f"meet-{lead}-{when:%d%H}-{rep}", lead_id=lead, kind="meeting",
                            rep_id=rep, occurred_at=when)


def stage(rep: str, lead: str, when: datetime, to: int, frm: int | None) -> StageAdvancedV1:
    return StageAdvancedV1(lead_id=lead, pipeline_id="p1", from_stage_id=f"s{frm}" if frm else None,
                           from_stage_position=frm, to_stage_id=f"s{to}", to_stage_name=f"Stage {to}",
                           to_stage_position=to, reason="manual", owner_id=rep, entered_at=when)


async def launch(incentives: Incentives, template: str, body: dict, **headers: str) -> dict:
    response = await incentives.client.post(f"/v1/programs/templates/{template}", json=body,
                                            headers=incentives.headers("manager", "mia", **headers))
    assert response.status_code == 201, response.text
    return response.json()


LADDER = {"name": "February ladder", "starts_at": START.isoformat(), "ends_at": END.isoformat(),
          "participants": ["ann", "bob"], "steps": [{"points": 10}, {"points": 20, "cash": "50.00"}],
          "currency": "EUR", "start": True}


async def board(incentives: Incentives, program_id: str, role: str = "manager", sub: str = "mia") -> dict:
    response = await incentives.client.get(f"/v1/programs/{program_id}/leaderboard",
                                           headers=incentives.headers(role, sub))
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_milestone_ladder_scores_the_normal_flow_and_awards_each_step_once(incentives: Incentives):
    program = await launch(incentives, "milestone-ladder", LADDER)
    assert (program["status"], program["format"], program["template"]) == ("running", "milestones", "milestone-ladder")
    lead = new_lead()
    # ann: a meeting (10) then a connected 3-minute call (3) -> 13, bronze at 10
    # bob: a call of 60 s (too short: 0), a call logged by a sequence (0)
    for event in (meeting("ann", lead, at(3)), call("ann", lead, at(4)), call("bob", lead, at(4, 11), seconds=60),
                  call("bob", lead, at(4, 12), source="sequence")):
        await incentives.dispatch(incentives.envelope(event, lead))
    first = await board(incentives, program["id"])
    assert [(e["rank"], e["id"], e["points"], e["milestones"]) for e in first["entries"]] == [
        (1, "ann", 13, ["bronze"]), (2, "bob", 0, [])]
    # the same call sent again (redelivery: a new delivery of the same event) and the meeting re-logged
    # under the same activity id change nothing
    again = incentives.envelope(call("ann", lead, at(4)), lead)
    await incentives.dispatch(again)
    await incentives.dispatch(again)
    assert (await board(incentives, program["id"]))["entries"] == first["entries"]

    # ann wins a 7,400 EUR deal: 20 + 7 = 27 -> 40: silver (cash 50 EUR)
    won = incentives.envelope(LeadWonV1(lead_id=lead, pipeline_id="p1", value=Decimal("7400"), currency="EUR",
                                        owner_id="ann", won_at=at(5)), lead)
    await incentives.dispatch(won)
    position = (await incentives.client.get(f"/v1/programs/{program['id']}/positions/me",
                                            headers=incentives.headers("rep", "bob"))).json()
    assert position == {"program_id": program["id"], "rep_id": "bob", "team_id": None, "rank": 2, "of": 2,
                        "points": 0, "own_points": 0, "points_to_pass_next": 41, "next_milestone": "bronze",
                        "points_to_next_milestone": 10}
    awards = await incentives.rows(program_awards, program_awards.c.program_id == program["id"])
    assert sorted((a["award_key"], a["badge"], a["cash"], a["earned_by"]) for a in awards) == [
        ("milestone:bronze:ann", "bronze", None, f"activity:meet-{lead}-0310-ann"),
        ("milestone:silver:ann", "silver", Decimal("50.00"), f"won:{won.id}")]
    reached = await incentives.outbox("ProgramMilestoneReached")
    assert sorted((e["data"]["milestone_id"], e["data"]["rep_id"], e["data"]["points"]) for e in reached) == [
        ("bronze", "ann", 10), ("silver", "ann", 40)]
    assert [e["data"]["program_name"] for e in await incentives.outbox("ProgramStarted")] == ["February ladder"]
    # the silver step's 50 EUR is a SPIFF for ann's February statement, which is queued for recomputation
    async with incentives.context.database.session() as session:
        spiffs = await program_cash_rewards(session, ORG, "ann", date(2027, 2, 1), date(2027, 3, 1))
    assert [(r.name, r.amount, r.currency, r.earned_on) for r in spiffs] == [
        ("Silver", Decimal("50.00"), "EUR", date(2027, 2, 5))]
    queued = await incentives.rows(recalculation_queue, recalculation_queue.c.reason == "program_reward")
    assert [(q["subject_kind"], q["subject_id"], q["on_date"]) for q in queued] == [
        ("participant", "ann", date(2027, 2, 5))]

    # reopened: the win's 27 points go, the silver step stays earned (awards are once and for good)
    await incentives.dispatch(incentives.envelope(LeadReopenedV1(lead_id=lead, pipeline_id="p1",
                                                                 reopened_at=at(6)), lead))
    assert [(e["id"], e["points"]) for e in (await board(incentives, program["id"]))["entries"]] == [
        ("ann", 13), ("bob", 0)]
    assert len(await incentives.outbox("ProgramMilestoneReached")) == 2


async def test_a_team_challenge_finishes_with_every_member_of_the_winning_team_rewarded(incentives: Incentives):
    teams = [{"id": "red", "name": "Red", "members": ["ann", "cy"]}, {"id": "blue", "name": "Blue",
                                                                     "members": ["bob"]}]
    program = await launch(incentives, "team-challenge", {
        "name": "Red v Blue", "starts_at": START.isoformat(), "ends_at": END.isoformat(), "teams": teams,
        "prize_per_member": "75.00", "scoring": "sum", "start": True})
    lead = new_lead()
    for event in (meeting("ann", lead, at(2)), meeting("cy", lead, at(3)), meeting("bob", lead, at(4)),
                  call("bob", lead, at(5))):
        await incentives.dispatch(incentives.envelope(event, lead))
    # red 10 + 10 = 20, blue 10 + 3 = 13
    shown = await board(incentives, program["id"])
    assert [(e["id"], e["name"], e["points"]) for e in shown["entries"]] == [("red", "Red", 20), ("blue", "Blue", 13)]
    mine = (await incentives.client.get(f"/v1/programs/{program['id']}/positions/me",
                                        headers=incentives.headers("rep", "bob"))).json()
    assert (mine["team_id"], mine["rank"], mine["points"], mine["own_points"], mine["points_to_pass_next"]) == (
        "blue", 2, 13, 13, 8)

    finished = await incentives.client.post(f"/v1/programs/{program['id']}/finish",
                                            headers=incentives.headers("manager", "mia"))
    assert finished.status_code == 200 and finished.json()["status"] == "ended"
    won = await incentives.outbox("ProgramWon")
    assert sorted((e["data"]["rep_id"], e["data"]["place"], e["data"]["team_id"], e["data"]["cash"])
                  for e in won) == [("ann", 1, "red", "75.00"), ("cy", 1, "red", "75.00")]
    # finished programs score nothing more, and finishing twice is refused
    await incentives.dispatch(incentives.envelope(meeting("bob", lead, at(6)), lead))
    assert (await board(incentives, program["id"]))["entries"][1]["points"] == 13
    again = await incentives.client.post(f"/v1/programs/{program['id']}/finish",
                                         headers=incentives.headers("manager", "mia"))
    assert again.status_code == 409


async def test_guards_reverted_advances_and_sandbagged_close_dates(incentives: Incentives):
    program = await launch(incentives, "monthly-race", {"name": "Feb race", "year": 2027, "month": 2,
                                                         "participants": ["ann"], "target": 100, "start": True})
    lead = new_lead()
    for event in (stage("ann", lead, at(2), 2, 1),   # advance: 5
                  stage("ann", lead, at(3), 3, 2),   # advance, reverted two days later: 0
                  stage("ann", lead, at(5), 2, 3)):  # the move back
        await incentives.dispatch(incentives.envelope(event, lead))
    assert (await board(incentives, program["id"]))["entries"][0]["points"] == 5

    def snapshot(close: date) -> LeadUpdatedV1:
        return LeadUpdatedV1(lead=LeadSnapshot(lead_id=lead, owner_id="ann", expected_close_date=close),
                             changed=["expected_close_date"])
    await incentives.dispatch(incentives.envelope(snapshot(date(2027, 2, 27)), lead))
    pushed = incentives.envelope(snapshot(date(2027, 3, 4)), lead)
    pushed = pushed.model_copy(update={"occurred_at": at(25)})  # in the race's last 7 days
    await incentives.dispatch(pushed)
    flags = (await incentives.client.get(f"/v1/programs/{program['id']}/flags",
                                         headers=incentives.headers("manager", "mia"))).json()["items"]
    assert [(f["lead_id"], f["rep_id"], f["reason"]) for f in flags] == [
        (lead, "ann", "expected close moved from 2027-02-27 to 2027-03-04, past the program's end, "
                      "in its last 7 days")]
    assert (await incentives.rows(program_flags, program_flags.c.lead_id == lead))[0]["kind"] == "sandbagging"


async def test_rules_are_frozen_once_started_and_a_change_is_a_new_announced_version(incentives: Incentives):
    program = await launch(incentives, "milestone-ladder", LADDER)
    url = f"/v1/programs/{program['id']}/rules"
    rules = {"rules": [{"behaviour": "call", "points": 5}]}
    manager = incentives.headers("manager", "mia")
    assert (await incentives.client.put(url, json=rules, headers=manager)).status_code == 428
    stale = await incentives.client.put(url, json=rules, headers={**manager, "If-Match": '"1"'})
    assert stale.status_code == 412
    lead = new_lead()
    await incentives.dispatch(incentives.envelope(call("ann", lead, at(10)), lead))  # before the change: 3
    changed = await incentives.client.put(url, json=rules, headers={**manager, "If-Match": f'"{program["version"]}"'})
    assert changed.status_code == 200, changed.text
    versions = changed.json()["rule_versions"]
    assert [(v["version"], v["effective_from"]) for v in versions] == [(1, START.isoformat()), (2, NOW.isoformat())]
    await incentives.dispatch(incentives.envelope(call("ann", lead, NOW + timedelta(hours=1)), lead))  # after: 5
    assert (await board(incentives, program["id"]))["entries"][0]["points"] == 8
    [announced] = await incentives.outbox("ProgramRulesChanged")
    assert (announced["data"]["rule_version"], announced["data"]["rules_summary"]) == (2, "call 5 pts")


async def test_test_mode_scores_without_showing_reps_anything(incentives: Incentives):
    program = await launch(incentives, "milestone-ladder", {**LADDER, "hidden": True})
    lead = new_lead()
    await incentives.dispatch(incentives.envelope(meeting("ann", lead, at(3)), lead))
    assert (await board(incentives, program["id"]))["entries"][0]["points"] == 10  # the manager sees it
    for path in ("", "/leaderboard", "/positions/me"):
        hidden = await incentives.client.get(f"/v1/programs/{program['id']}{path}",
                                             headers=incentives.headers("rep", "ann"))
        assert hidden.status_code == 404, path
    listed = await incentives.client.get("/v1/programs", headers=incentives.headers("rep", "ann"))
    assert listed.json()["items"] == []
    assert await incentives.outbox("ProgramStarted") == []
    assert await incentives.outbox("ProgramMilestoneReached") == []
    # a test program pays nothing: 30 points would be silver (50 EUR) in a real one
    for day in (4, 5):
        await incentives.dispatch(incentives.envelope(meeting("ann", lead, at(day)), lead))
    assert (await board(incentives, program["id"]))["entries"][0]["milestones"] == ["bronze", "silver"]
    async with incentives.context.database.session() as session:
        assert await program_cash_rewards(session, ORG, "ann", date(2027, 2, 1), date(2027, 3, 1)) == []


async def test_bad_programs_are_refused_naming_the_field_and_reps_cannot_launch(incentives: Incentives):
    manager = incentives.headers("manager", "mia")
    race = {"name": "x", "format": "race", "starts_at": START.isoformat(), "ends_at": END.isoformat(),
            "participants": ["ann"], "rules": [{"behaviour": "meeting", "points": 10}]}
    refused = await incentives.client.post("/v1/programs", json=race, headers=manager)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "target", "message": "a race needs a positive target"}]
    backwards = await incentives.client.post("/v1/programs", json={**race, "target": 5,
                                                                   "ends_at": START.isoformat()}, headers=manager)
    assert [e["field"] for e in backwards.json()["errors"]] == ["ends_at"]
    far = await incentives.client.post("/v1/programs", json={**race, "target": 5,
                                                              "ends_at": "9999-12-31T23:00:00-14:00"}, headers=manager)
    assert far.status_code == 422 and far.json()["errors"][0]["field"].endswith("ends_at")
    long_id = await incentives.client.post("/v1/programs", json={**race, "target": 5, "participants": ["x" * 101]},
                                           headers=manager)
    assert long_id.status_code == 422 and "participants" in long_id.json()["errors"][0]["field"]
    rep = await incentives.client.post("/v1/programs", json={**race, "target": 5},
                                       headers=incentives.headers("rep", "ann"))
    assert rep.status_code == 403
    other_org = await launch(incentives, "milestone-ladder", LADDER)
    elsewhere = await incentives.client.get(f"/v1/programs/{other_org['id']}",
                                            headers=incentives.headers("manager", "mo", org="org-b"))
    assert elsewhere.status_code == 404


@asynccontextmanager
async def served(incentives: Incentives) -> AsyncIterator[str]:
    """The running app (its lifespan already started by the fixture) on a real local port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(incentives.client._transport.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())

    async def serving() -> None:
        assert server.started

    await eventually(serving, interval=0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_stream_pushes_a_rank_change_within_a_second(incentives: Incentives):
    program = await launch(incentives, "milestone-ladder", LADDER)
    lead = new_lead()
    received: list[tuple[str, dict]] = []

    async def listen() -> None:
        async with served(incentives) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as client, \
                client.stream("GET", f"/v1/programs/{program['id']}/leaderboard/stream",
                              headers=incentives.headers("rep", "bob")) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    received.append((event, json.loads(line[6:])))

    listener = asyncio.create_task(listen())  # over a real socket: an ASGI test transport buffers whole bodies
    try:
        async def got_board():
            assert [e for e, _ in received] == ["leaderboard"]
        await eventually(got_board)
        assert [(e["id"], e["rank"]) for e in received[0][1]["entries"]] == [("ann", 1), ("bob", 2)]
        clock = asyncio.get_running_loop().time
        await incentives.send(incentives.envelope(meeting("bob", lead, at(3)), lead))

        async def scored():  # when the consumer's transaction made bob's 10 points visible
            rows = await incentives.rows(program_scores, program_scores.c.participant == "bob")
            assert rows and rows[0]["points"] == 10
            return clock()
        committed = await eventually(scored, timeout=10, interval=0.01)

        async def got_move():
            assert len(received) == 2
            return clock()
        pushed = await eventually(got_move, timeout=5, interval=0.01)
        event, data = received[1]
        assert event == "ranks"
        assert [(c["id"], c["old_rank"], c["rank"], c["points"]) for c in data["changes"]] == [
            ("bob", 2, 1, 10), ("ann", 1, 2, 0)]
        # The stream's own part of the 1 s (from the committed score to the push; bench/program_leaderboard.py
        # measures the whole path at load); a stream that did not push would first stir at its 15 s heartbeat.
        assert pushed - committed < 1.0, pushed - committed
        # a stopping service ends its streams (clients reconnect elsewhere) rather than holding up the stop
        incentives.context.stopping.set()
        await asyncio.wait_for(listener, timeout=5)
    finally:
        listener.cancel()


async def test_a_five_day_call_streak_earns_its_badge_once_with_the_call_that_completed_it(incentives: Incentives):
    program = await launch(incentives, "milestone-ladder", LADDER)
    lead = new_lead()
    calls = {day: incentives.envelope(call("bob", lead, at(day)), lead) for day in (1, 2, 3, 5, 6, 7, 8, 9)}
    # out of order: the 9th first, then the rest; the 4th is missing, so the streak is 5-9, completed by the 9th
    for day in (9, 1, 2, 3, 5, 6, 7, 8):
        await incentives.dispatch(calls[day])
    await incentives.dispatch(calls[9])  # redelivered
    [earned] = await incentives.outbox("BadgeEarned")
    assert (earned["data"]["rep_id"], earned["data"]["badge_id"], earned["data"]["earned_by"],
            earned["data"]["earned_at"]) == ("bob", "call-streak-5", f"activity:act-{lead}-{at(9):%d%H%M}-bob",
                                             at(9).isoformat().replace("+00:00", "Z"))
    mine = (await incentives.client.get(f"/v1/programs/{program['id']}/awards",
                                        headers=incentives.headers("rep", "bob"))).json()["items"]
    assert [(a["kind"], a["name"]) for a in mine] == [("badge", "Five days in a row on the phone"),
                                                      ("milestone", "Bronze"), ("milestone", "Silver")]
    others = (await incentives.client.get(f"/v1/programs/{program['id']}/awards",
                                          headers=incentives.headers("rep", "ann"))).json()["items"]
    assert others == []  # a rep sees their own awards only


async def test_a_head_to_head_bracket_defined_in_full(incentives: Incentives):
    mid = datetime(2027, 2, 15, 12, tzinfo=UTC)
    body = {"name": "Bracket", "format": "head_to_head", "starts_at": START.isoformat(), "ends_at": END.isoformat(),
            "participants": ["ann", "bob", "cy", "dee"], "rules": [{"behaviour": "meeting", "points": 10}],
            "rounds": [{"starts_at": START.isoformat(), "ends_at": mid.isoformat()},
                       {"starts_at": mid.isoformat(), "ends_at": END.isoformat()}],
            "place_rewards": [{"badge": "champion", "cash": "200.00", "currency": "EUR"}]}
    manager = incentives.headers("manager", "mia")
    created = await incentives.client.post("/v1/programs", json=body, headers=manager)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    lead = new_lead()
    # before the start, facts are kept; starting scores them: round 1 ann 10 v dee 20, bob 10 v cy 0
    for rep_id, day in (("ann", 2), ("dee", 3), ("dee", 4), ("bob", 5)):
        await incentives.dispatch(incentives.envelope(meeting(rep_id, lead, at(day)), lead))
    started = await incentives.client.post(f"/v1/programs/{created.json()['id']}/start", headers=manager)
    assert started.status_code == 200 and started.json()["status"] == "running"
    shown = await board(incentives, created.json()["id"])
    # round 1 ends on the 15th at 12:00 (the clock is at 09:00), so no winner is decided yet
    assert [(m["round"], m["a"], m["b"], m["a_points"], m["b_points"], m["winner"]) for m in shown["matches"]] == [
        (1, "ann", "dee", 10, 20, None), (1, "bob", "cy", 10, 0, None)]
    incentives.clock.advance(hours=4)
    await incentives.dispatch(incentives.envelope(meeting("bob", lead, at(20)), lead))  # round 2: bob 10
    shown = await board(incentives, created.json()["id"])
    assert [(m["round"], m["a"], m["b"], m["winner"]) for m in shown["matches"]] == [
        (1, "ann", "dee", "dee"), (1, "bob", "cy", "bob"), (2, "dee", "bob", None)]


async def test_a_cash_milestone_lands_on_the_commission_statement_as_an_explained_line(incentives: Incentives):
    plan = {"name": "AE", "currency": "USD", "period": "quarter", "effective_from": "2027-01-01",
            "coverage": {"participants": ["ann"]}, "base_rate": "0.10"}
    assert (await incentives.client.post("/v1/plans", json=plan, headers=incentives.headers())).status_code == 201
    await incentives.dispatch(incentives.envelope(ExchangeRateSetV1(
        base_currency="EUR", quote_currency="USD", rate=Decimal("1.10"), valid_from=date(2027, 1, 1)), "EUR-USD"))
    await win_deal(incentives, new_lead(), "ann", "10000", at(8), currency="USD")  # 10 % = 1,000.00 USD
    program = await launch(incentives, "milestone-ladder", LADDER)
    lead = new_lead()
    # the USD win (no EUR rate in programs' scoring: its fixed 20 points) already crossed silver (20): 50 EUR
    await incentives.dispatch(incentives.envelope(meeting("ann", lead, at(9)), lead))
    await recalculate(incentives)
    listed = (await incentives.client.get("/v1/statements", params={"participant_id": "ann"},
                                          headers=incentives.headers())).json()["items"]
    statement = (await incentives.client.get(f"/v1/statements/{listed[0]['statement_id']}",
                                             headers=incentives.headers())).json()
    # 50 EUR at 1.10 = 55.00 USD beside the 1,000.00 commission
    assert [(line["kind"], line["amount"]) for line in statement["lines"]] == [
        ("commission", "1000.00"), ("program_spiff", "55.00")]
    assert statement["total"] == "1055.00"
    spiff = statement["lines"][1]
    assert spiff["description"] == "SPIFF Silver — February ladder"
    assert spiff["key"] == f"program:{program['id']}:milestone:silver:ann"
