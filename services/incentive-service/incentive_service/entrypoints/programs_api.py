"""Incentive programs over HTTP (/v1/programs): define or launch from a template, start, change the rules (a new
version once started), finish; the leaderboard as JSON and as a server-sent event stream; a rep's own position;
awards and sandbagging flags.

Managers and admins run programs; a rep sees the programs they take part in (never a hidden one), their own
position and their own awards.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StrictBool
from sqlalchemy.exc import SQLAlchemyError

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import CurrentPrincipal, ManagerPrincipal, Principal
from salesflow_shared.clock import rfc3339
from salesflow_shared.contract import returns
from salesflow_shared.currency import ExactCurrencyCode
from salesflow_shared.errors import Conflict, NotFound
from salesflow_shared.idempotency import IdempotencyDep, once
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, page_from_rows
from salesflow_shared.preconditions import check_if_match

from ..adapters.program_codec import definition_from_json
from ..adapters.repository import programs as repo
from ..collaborators import collaborators
from ..domain.programs.definitions import BEHAVIOURS, ProgramDefinition, ScoringRule, Team
from ..domain.programs.standings import Standings, position, rank_changes
from ..domain.programs.templates import DEFAULT_RULES, milestone_ladder, monthly_race, team_challenge
from ..service_layer.programs import (
    award_json,
    create_program,
    current_standings,
    definition_of,
    finish_program,
    get_program,
    program_json,
    revise_program_rules,
    score_tallies,
    start_program,
)
from . import responses as R

router = APIRouter(prefix="/v1/programs", tags=["incentive-service: programs"])

NO_NUL = r"^[^\x00]*$"
Behaviour = Literal["call", "meeting", "demo", "email", "proposal", "stage_advance", "deal_won"]
Id = Field(min_length=1, max_length=100, pattern=NO_NUL)
Name = Field(min_length=1, max_length=200, pattern=NO_NUL)
Currency = Field(default="USD")
# An open leaderboard stream reads the board when a commit changed the program's tallies (adapters/score_signals.py:
# a NOTIFY from whichever replica scored, or this process's commit in the embedded mode), at most every
# STREAM_MIN_INTERVAL_S (a burst of commits is one read), and by itself every STREAM_SAFETY_POLL_S in case a
# notification was lost.
STREAM_MIN_INTERVAL_S = 0.05
STREAM_SAFETY_POLL_S = 5.0
STREAM_HEARTBEAT_S = 15.0


def _sane_year(moment: datetime) -> datetime:
    # A program runs in this millennium; far dates would overflow when moved to UTC or summed into periods.
    if not 2000 <= moment.year <= 2999:
        raise ValueError("must be between the years 2000 and 2999")
    return moment


When = Annotated[AwareDatetime, AfterValidator(_sane_year)]
RepId = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]
Outcome = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]


def _now(context: Any) -> datetime:
    return context.clock.now()


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# ====================================================================== bodies
class RuleIn(BaseModel):
    behaviour: Behaviour
    points: int = Field(default=0, ge=0, le=1_000_000)
    min_duration_seconds: int | None = Field(default=None, ge=0, le=86_400)
    outcomes: list[Outcome] = Field(default_factory=list, max_length=20)
    points_per_value_unit: int = Field(default=0, ge=0, le=1_000_000)
    value_unit: Decimal = Field(default=Decimal(1000), gt=0, max_digits=18, decimal_places=2)

    def domain(self) -> ScoringRule:
        return ScoringRule(self.behaviour, self.points, self.min_duration_seconds, tuple(self.outcomes),
                           self.points_per_value_unit, self.value_unit)


class RewardIn(BaseModel):
    badge: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    cash: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=2,
                                 description="a SPIFF: lands on the commission statement as a line")
    currency: ExactCurrencyCode | None = None


class MilestoneIn(BaseModel):
    id: str = Id
    name: str = Name
    points: int = Field(ge=1, le=100_000_000)
    reward: RewardIn = Field(default_factory=RewardIn)


class BadgeIn(BaseModel):
    id: str = Id
    name: str = Name
    kind: Literal["streak", "count"]
    behaviour: Behaviour
    count: int = Field(ge=1, le=366)


class TeamIn(BaseModel):
    id: str = Id
    name: str = Name
    members: list[RepId] = Field(min_length=1, max_length=1000)


class RoundIn(BaseModel):
    starts_at: When
    ends_at: When


class GuardsIn(BaseModel):
    rep_logged_only: StrictBool = True
    stage_revert_days: int = Field(default=7, ge=0, le=365)
    sandbag_last_days: int = Field(default=7, ge=0, le=365)


class ProgramIn(BaseModel):
    name: str = Name
    format: Literal["race", "leaderboard", "milestones", "head_to_head", "team"]
    starts_at: When
    ends_at: When
    rules: list[RuleIn] = Field(min_length=1, max_length=len(BEHAVIOURS))
    participants: list[RepId] = Field(default_factory=list, max_length=5000,
                                    description="rep ids; for a team contest leave empty (the teams' members)")
    teams: list[TeamIn] = Field(default_factory=list, max_length=100)
    guards: GuardsIn = Field(default_factory=GuardsIn)
    currency: ExactCurrencyCode = Currency
    target: int | None = Field(default=None, ge=1, le=100_000_000)
    milestones: list[MilestoneIn] = Field(default_factory=list, max_length=50)
    place_rewards: list[RewardIn] = Field(default_factory=list, max_length=100)
    badges: list[BadgeIn] = Field(default_factory=list, max_length=50)
    rounds: list[RoundIn] = Field(default_factory=list, max_length=12)
    team_scoring: Literal["sum", "average"] = "sum"
    hidden: StrictBool = Field(default=False, description="test mode: scored, shown to managers only, no notification, "
                                                    "no cash")

    def domain(self) -> ProgramDefinition:
        # The body is the stored definition's JSON (one decoder for both) but for its rules, which are the first
        # version's from the start, and its participants, the teams' members when it names none; times in UTC.
        body = self.model_dump()
        starts_at = _utc(self.starts_at)
        return definition_from_json({
            **body, "starts_at": starts_at, "ends_at": _utc(self.ends_at),
            "rule_versions": [{"version": 1, "effective_from": starts_at, "rules": body["rules"]}],
            "participants": body["participants"] or [member for t in body["teams"] for member in t["members"]],
            "rounds": [{"starts_at": _utc(r.starts_at), "ends_at": _utc(r.ends_at)} for r in self.rounds]})


class TemplateCommon(BaseModel):
    name: str = Name
    currency: ExactCurrencyCode = Currency
    rules: list[RuleIn] | None = Field(default=None, max_length=len(BEHAVIOURS),
                                       description="default: call (connected, >= 2 min) 3, meeting 10, stage "
                                                   "advance 5, deal won 20 + 1 per 1,000")
    hidden: StrictBool = False
    start: StrictBool = Field(default=False, description="start it at once (one call launches the program)")

    def rule_set(self) -> tuple[ScoringRule, ...]:
        return tuple(r.domain() for r in self.rules) if self.rules else DEFAULT_RULES


class StepIn(BaseModel):
    points: int = Field(ge=1, le=100_000_000)
    cash: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=2)


class MilestoneLadderIn(TemplateCommon):
    starts_at: When
    ends_at: When
    participants: list[RepId] = Field(min_length=1, max_length=5000)
    steps: list[StepIn] = Field(default_factory=lambda: [StepIn(points=50), StepIn(points=100, cash=Decimal(50)),
                                                          StepIn(points=200, cash=Decimal(150))],
                                min_length=1, max_length=20)


class MonthlyRaceIn(TemplateCommon):
    year: int = Field(ge=2000, le=2100)
    month: int = Field(ge=1, le=12)
    participants: list[RepId] = Field(min_length=1, max_length=5000)
    target: int = Field(default=300, ge=1, le=100_000_000)
    prizes: list[Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]] = Field(
        default_factory=lambda: [Decimal(500), Decimal(250), Decimal(100)], max_length=50)


class TeamChallengeIn(TemplateCommon):
    starts_at: When
    ends_at: When
    teams: list[TeamIn] = Field(min_length=2, max_length=100)
    prize_per_member: Decimal = Field(default=Decimal(100), gt=0, max_digits=18, decimal_places=2)
    scoring: Literal["sum", "average"] = "average"


class RulesIn(BaseModel):
    rules: list[RuleIn] = Field(min_length=1, max_length=len(BEHAVIOURS))


# ====================================================================== helpers
def _etag(row: dict[str, Any]) -> str:
    return f'"{row["version"]}"'


def _with_etag(row: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(program_json(row), status_code=status, headers={"ETag": _etag(row)})


def _etag_of(program: dict[str, Any]) -> dict[str, str]:
    """The ETag header of an answered program (its JSON carries its version)."""
    return {"ETag": _etag(program)}


def _may_see(principal: Principal, row: dict[str, Any]) -> bool:
    if principal.sees_whole_org:
        return True
    return not row["hidden"] and principal.user_id in row["definition"].get("participants", [])


async def _visible_program(session: Any, principal: Principal, program_id: str, *, lock: bool = False
                           ) -> dict[str, Any]:
    row = await get_program(session, principal.org_id, program_id, lock=lock)
    if row is None or not _may_see(principal, row):
        raise NotFound(f"no program {program_id}")
    return row


async def _launch(uow: Any, context: Any, principal: Principal, idem: Any, scope: str, payload: Any,
                  definition: ProgramDefinition, template: str | None, start: bool) -> JSONResponse:
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope=scope, payload=payload)
    if replay is not None:
        return replay
    now = _now(context)
    row = await create_program(uow, org_id=principal.org_id, definition=definition, template=template,
                               created_by=principal.user_id, now=now)
    if start:
        row = await start_program(uow, row, now)
    response = await idem.complete(uow.session, status_code=201, body=program_json(row),
                                   headers={"ETag": _etag(row)})
    await uow.commit()
    return response


# ====================================================================== programs
@router.post("", status_code=201, summary="Define a program (a draft until started)",
             operation_id="createProgram", **returns(R.ProgramOut, status=201, etag=True,
                                                     checked_beyond_schema=("starts_at", "ends_at", "participants",
                                                                            "teams", "target", "rules", "milestones",
                                                                            "place_rewards", "rounds")))
async def create(body: ProgramIn, uow: UowDep, context: ContextDep, principal: ManagerPrincipal,
                 idem: IdempotencyDep) -> JSONResponse:
    return await _launch(uow, context, principal, idem, "programs", body.model_dump(mode="json"), body.domain(),
                         None, start=False)


@router.post("/templates/milestone-ladder", status_code=201,
             summary="A milestone ladder: everyone who climbs a step earns it (badge, cash where given)",
             operation_id="createMilestoneLadder", **returns(R.ProgramOut, status=201, etag=True,
                                                             checked_beyond_schema=("starts_at", "ends_at",
                                                                                    "participants", "steps", "rules")))
async def from_milestone_ladder(body: MilestoneLadderIn, uow: UowDep, context: ContextDep,
                                principal: ManagerPrincipal, idem: IdempotencyDep) -> JSONResponse:
    definition = milestone_ladder(body.name, _utc(body.starts_at), _utc(body.ends_at), tuple(body.participants),
                                  steps=tuple((s.points, s.cash) for s in body.steps), currency=body.currency,
                                  rules=body.rule_set(), hidden=body.hidden)
    return await _launch(uow, context, principal, idem, "programs", body.model_dump(mode="json"), definition,
                         "milestone-ladder", body.start)


@router.post("/templates/monthly-race", status_code=201,
             summary="A monthly race: first to the target wins, the next finishers take the smaller prizes",
             operation_id="createMonthlyRace", **returns(R.ProgramOut, status=201, etag=True,
                                                         checked_beyond_schema=("starts_at", "ends_at", "participants",
                                                                                "prizes", "rules")))
async def from_monthly_race(body: MonthlyRaceIn, uow: UowDep, context: ContextDep, principal: ManagerPrincipal,
                            idem: IdempotencyDep) -> JSONResponse:
    definition = monthly_race(body.name, body.year, body.month, tuple(body.participants), target=body.target,
                              prizes=tuple(body.prizes), currency=body.currency, rules=body.rule_set(),
                              hidden=body.hidden)
    return await _launch(uow, context, principal, idem, "programs", body.model_dump(mode="json"), definition,
                         "monthly-race", body.start)


@router.post("/templates/team-challenge", status_code=201,
             summary="A team challenge: teams against teams; each member of the winning team gets the prize",
             operation_id="createTeamChallenge",
             **returns(R.ProgramOut, status=201, etag=True, checked_beyond_schema=(
                 "starts_at", "ends_at", "participants", "teams", "prize_per_member", "rules")))
async def from_team_challenge(body: TeamChallengeIn, uow: UowDep, context: ContextDep,
                              principal: ManagerPrincipal, idem: IdempotencyDep) -> JSONResponse:
    teams = tuple(Team(t.id, t.name, tuple(t.members)) for t in body.teams)
    definition = team_challenge(body.name, _utc(body.starts_at), _utc(body.ends_at), teams,
                                prize_per_member=body.prize_per_member, currency=body.currency,
                                scoring=body.scoring, rules=body.rule_set(), hidden=body.hidden)
    return await _launch(uow, context, principal, idem, "programs", body.model_dump(mode="json"), definition,
                         "team-challenge", body.start)


@router.get("", summary="Programs: all of the org's for managers, the ones a rep takes part in for a rep",
            operation_id="listPrograms", **returns(R.ProgramPage))
async def list_programs(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                        cursor: CursorParam = None,
                        status: Literal["draft", "running", "ended"] | None = None) -> dict[str, Any]:
    after = decode_cursor(cursor, 2)
    rows = await repo.list_programs(
        uow.session, principal.org_id, status=status,
        participant=None if principal.sees_whole_org else principal.user_id,
        after=(datetime.fromisoformat(after[0]), after[1]) if after is not None else None, limit=limit + 1)
    page = page_from_rows([program_json(r) for r in rows], limit, lambda i: [i["created_at"], i["id"]])
    return page.model_dump()


@router.get("/{program_id}", summary="A program, with its rule versions and ETag",
            operation_id="getProgram", **returns(R.ProgramOut, etag=True))
async def get(program_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    return _with_etag(await _visible_program(uow.session, principal, program_id))


@router.post("/{program_id}/start", summary="Start a draft: rules frozen, existing facts scored, reps told",
             operation_id="startProgram", **returns(R.ProgramOut, etag=True))
async def start(program_id: str, uow: UowDep, context: ContextDep, principal: ManagerPrincipal,
                idem: IdempotencyDep) -> JSONResponse:
    async def start_it() -> dict[str, Any]:
        row = await _visible_program(uow.session, principal, program_id, lock=True)
        return program_json(await start_program(uow, row, _now(context)))

    return await once(idem, uow, org_id=principal.org_id, scope=f"program-start:{program_id}", payload=None,
                      act=start_it, headers=_etag_of)


@router.put("/{program_id}/rules",
            summary="Change the scoring rules (If-Match): a draft's are replaced, a running program gets a new "
                    "rule version effective now, announced to the participants",
            operation_id="putProgramRules", **returns(R.ProgramOut, etag=True, checked_beyond_schema=("rules",)))
async def put_rules(program_id: str, body: RulesIn, uow: UowDep, context: ContextDep, principal: ManagerPrincipal,
                    if_match: str | None = Header(default=None, alias="If-Match")) -> JSONResponse:
    row = await _visible_program(uow.session, principal, program_id, lock=True)
    check_if_match(if_match, _etag(row), what="program")  # strong comparison: a weak W/ validator is a 412
    row = await revise_program_rules(uow, row, tuple(r.domain() for r in body.rules), _now(context))
    await uow.commit()
    return _with_etag(row)


@router.post("/{program_id}/finish",
             summary="Finish a running program now (otherwise it finishes at its end): places are awarded",
             operation_id="finishProgram", **returns(R.ProgramOut, etag=True))
async def finish(program_id: str, uow: UowDep, context: ContextDep, principal: ManagerPrincipal,
                 idem: IdempotencyDep) -> JSONResponse:
    async def finish_it() -> dict[str, Any]:
        row = await _visible_program(uow.session, principal, program_id, lock=True)
        if row["status"] != "running":
            raise Conflict(f"the program is {row['status']}; only a running program finishes")
        await finish_program(uow, row, _now(context))
        finished = await get_program(uow.session, principal.org_id, program_id)
        assert finished is not None
        return program_json(finished)

    return await once(idem, uow, org_id=principal.org_id, scope=f"program-finish:{program_id}", payload=None,
                      act=finish_it, headers=_etag_of)


# ====================================================================== seeing it
def board_json(row: dict[str, Any], board: Standings, names: dict[str, str], as_of: datetime) -> dict[str, Any]:
    definition = definition_of(row)
    team_names = {t.id: t.name for t in definition.teams}
    return {
        "program_id": row["program_id"], "name": row["name"], "format": row["format"], "status": row["status"],
        "as_of": as_of.isoformat(), "target": definition.target,
        "milestones": [{"id": m.id, "name": m.name, "points": m.points} for m in definition.milestones],
        "entries": [{"rank": e.rank, "id": e.id, "name": team_names.get(e.id) or names.get(e.id, e.id),
                     "points": e.points, "finished_at": rfc3339(e.finished_at),
                     "milestones": list(e.milestones), "eliminated_in_round": e.eliminated_in_round}
                    for e in board.entries],
        "matches": [{"round": m.round, "a": m.a, "b": m.b, "a_points": m.a_points, "b_points": m.b_points,
                     "winner": m.winner} for m in board.matches],
    }


async def _names(session: Any, org_id: str) -> dict[str, str]:
    try:
        return await repo.payee_names(session, org_id)
    except SQLAlchemyError:  # the rep directory copy is optional for a board
        return {}


@router.get("/{program_id}/leaderboard", summary="The live board: ranks, points, milestones (JSON)",
            operation_id="getLeaderboard", **returns(R.Leaderboard))
async def leaderboard(program_id: str, uow: UowDep, context: ContextDep, principal: CurrentPrincipal
                      ) -> dict[str, Any]:
    row = await _visible_program(uow.session, principal, program_id)
    now = _now(context)
    board = await current_standings(uow.session, row, now=now)
    return board_json(row, board, await _names(uow.session, principal.org_id), now)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


# The schema of each event of the stream (what an EventSource hands over), not of the whole text.
LEADERBOARD_EVENT: dict[str, Any] = {
    "type": "object", "required": ["event", "data"],
    "description": "One server-sent event: `leaderboard` (the whole board) first, then `ranks` (who moved)",
    "properties": {"event": {"type": "string", "enum": ["leaderboard", "ranks"]},
                   "data": {"type": "string", "description": "the board, or the rank changes, as JSON"}}}


@router.get("/{program_id}/leaderboard/stream", response_class=StreamingResponse,
            summary="Server-sent events for a TV dashboard: `leaderboard` (the whole board) first, then `ranks` "
                    "(who moved, within a second of the event that moved them)",
            operation_id="streamLeaderboard",
            **returns(LEADERBOARD_EVENT, media_type="text/event-stream"))
async def leaderboard_stream(program_id: str, request: Request, context: ContextDep,
                             principal: CurrentPrincipal) -> StreamingResponse:
    async with context.uow() as uow:
        row = await _visible_program(uow.session, principal, program_id)
        names = await _names(uow.session, principal.org_id)

    signals = collaborators(context).score_signals
    loop = asyncio.get_running_loop()

    async def events() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        before: Standings | None = None
        quiet_since = loop.time()
        with signals.watch(program_id) as woken:
            # Ends when the client goes, or when the service stops (the client reconnects to another replica).
            while not context.stopping.is_set() and not await request.is_disconnected():
                looked_at = loop.time()
                woken.clear()  # commits from now on wake the next wait
                async with context.uow() as uow:
                    board = await current_standings(uow.session, row, now=_now(context))
                if before is None:
                    yield _sse("leaderboard", board_json(row, board, names, _now(context)))
                else:
                    moves = rank_changes(before, board)
                    if moves:
                        yield _sse("ranks", {"program_id": program_id, "as_of": _now(context).isoformat(),
                                             "changes": [{"id": m.id, "name": names.get(m.id, m.id),
                                                          "old_rank": m.old_rank, "rank": m.new_rank,
                                                          "points": m.points} for m in moves]})
                        quiet_since = loop.time()
                before = board
                if loop.time() - quiet_since > STREAM_HEARTBEAT_S:
                    yield ": still here\n\n"  # keeps proxies from closing an idle stream
                    quiet_since = loop.time()
                await context.sleep(max(0.0, looked_at + STREAM_MIN_INTERVAL_S - loop.time()))
                await context.wait_for_commit(woken, min(STREAM_SAFETY_POLL_S,
                                                         quiet_since + STREAM_HEARTBEAT_S - loop.time() + 0.01))

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{program_id}/positions/{rep_id}",
            summary="A rep's position: rank, points, the points to pass the next place and to the next milestone "
                    "(`me` for your own; a rep sees only their own)",
            operation_id="getProgramPosition", **returns(R.ProgramPosition))
async def rep_position(program_id: str, rep_id: str, uow: UowDep, context: ContextDep,
                       principal: CurrentPrincipal) -> dict[str, Any]:
    rep_id = principal.user_id if rep_id == "me" else rep_id
    if not principal.sees_whole_org and rep_id != principal.user_id:
        raise NotFound(f"no position of {rep_id}")
    row = await _visible_program(uow.session, principal, program_id)
    definition = definition_of(row)
    if not definition.is_participant(rep_id):
        raise NotFound(f"{rep_id} does not take part in this program")
    board = await current_standings(uow.session, row, now=_now(context))
    team = definition.team_of(rep_id)
    mine = position(definition, board, team or rep_id)
    assert mine is not None
    own = (await score_tallies(uow.session, program_id)).get(rep_id)
    return {"program_id": program_id, "rep_id": rep_id, "team_id": team, "rank": mine.rank, "of": mine.of,
            "points": mine.points, "own_points": own.points if own else 0,
            "points_to_pass_next": mine.points_to_pass_next, "next_milestone": mine.next_milestone,
            "points_to_next_milestone": mine.points_to_next_milestone}


@router.get("/{program_id}/awards", summary="Milestones, places and badges earned (a rep: their own)",
            operation_id="listAwards", **returns(R.AwardPage))
async def list_awards(program_id: str, uow: UowDep, principal: CurrentPrincipal) -> dict[str, Any]:
    await _visible_program(uow.session, principal, program_id)
    awards = await repo.list_awards(uow.session, principal.org_id, program_id,
                                    None if principal.sees_whole_org else principal.user_id)
    return {"items": [award_json(a) for a in awards], "next_cursor": None}


@router.get("/{program_id}/flags", summary="Sandbagging flags: close dates pushed past the end in its last days",
            operation_id="listFlags", **returns(R.SandbagFlagPage))
async def list_flags(program_id: str, uow: UowDep, principal: ManagerPrincipal) -> dict[str, Any]:
    await _visible_program(uow.session, principal, program_id)
    flags = await repo.list_flags(uow.session, principal.org_id, program_id)
    return {"items": [{"lead_id": f.lead_id, "rep_id": f.rep_id, "kind": f.kind, "reason": f.reason,
                       "changed_at": rfc3339(f.changed_at)} for f in flags], "next_cursor": None}
