"""From points to places: tallies, the ranking of each format, a participant's position and gaps, what the
standings award, and what changed between two boards (for the live stream)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .definitions import ProgramDefinition, Reward
from .scoring import Contribution


@dataclass(frozen=True)
class Tally:
    """A participant's (or a team's) points, when the total was reached (the latest counted contribution: ties
    go to whoever got there first), and when each threshold (race target, milestone) was first crossed."""

    points: int = 0
    reached_at: datetime | None = None
    crossings: Mapping[int, datetime] = field(default_factory=dict)


def tally(contributions: Iterable[Contribution], thresholds: Iterable[int] = ()) -> Tally:
    """One participant's tally from their contributions, in time order whatever order they came in. Points only
    ever add, so a threshold once crossed stays crossed; reached_at is the last counted moment."""
    result = extend_tally(Tally(), contributions, thresholds)
    assert result is not None  # an empty tally has no reached_at: nothing comes before it
    return result


def extend_tally(before: Tally, added: Iterable[Contribution], thresholds: Iterable[int] = ()) -> Tally | None:
    """`before` plus contributions that all come at or after its `reached_at` (events arriving in order): the same
    as re-tallying everything, without reading it again. None when one comes earlier (re-tally in full)."""
    ordered = sorted(added, key=lambda c: (c.at, c.fact_key))
    if before.reached_at is not None and ordered and ordered[0].at < before.reached_at:
        return None
    total, crossings = before.points, dict(before.crossings)
    wanted = sorted(set(thresholds))
    for c in ordered:
        total += c.points
        for threshold in wanted:
            if threshold not in crossings and total >= threshold:
                crossings[threshold] = c.at
    return Tally(total, ordered[-1].at if ordered else before.reached_at, crossings)


def tallies(program: ProgramDefinition, contributions: Iterable[Contribution],
            window: tuple[datetime, datetime] | None = None) -> dict[str, Tally]:
    """Every participant's tally (zero for those without points), optionally only from `window`."""
    by_participant: dict[str, list[Contribution]] = defaultdict(list)
    for c in contributions:
        if window is None or window[0] <= c.at < window[1]:
            by_participant[c.participant].append(c)
    thresholds = program.thresholds()
    return {p: tally(by_participant.get(p, ()), thresholds) for p in program.participants}


@dataclass(frozen=True)
class Entry:
    rank: int
    id: str  # a rep id, or a team id in a team contest
    points: int
    reached_at: datetime | None
    finished_at: datetime | None = None  # race: when the target was crossed
    milestones: tuple[str, ...] = ()  # ids of the milestones reached
    eliminated_in_round: int | None = None  # head-to-head: lost in this round (1-based)


@dataclass(frozen=True)
class Match:
    round: int
    a: str
    b: str
    a_points: int
    b_points: int
    winner: str | None  # None while the round is still being played


@dataclass(frozen=True)
class Standings:
    format: str
    entries: tuple[Entry, ...]
    matches: tuple[Match, ...] = ()

    def entry(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries if e.id == entry_id), None)


def _order_key(entry_id: str, t: Tally) -> tuple[int, datetime, str]:
    return (-t.points, t.reached_at or datetime.max, entry_id)


def _milestones_reached(program: ProgramDefinition, t: Tally) -> tuple[str, ...]:
    return tuple(m.id for m in sorted(program.milestones, key=lambda m: m.points) if m.points in t.crossings)


def standings(program: ProgramDefinition, by_participant: Mapping[str, Tally],
              round_tallies: list[Mapping[str, Tally]] | None = None, *, now: datetime | None = None) -> Standings:
    """The ranked board of the program's format. Ranks are strict: equal points go to whoever reached them
    first, then by id. `round_tallies[i]` are the tallies of bracket round i (head-to-head only)."""
    if program.format == "team":
        return _team_standings(program, by_participant)
    if program.format == "head_to_head":
        return _bracket_standings(program, round_tallies or [], now or program.starts_at)
    rows = [(pid, by_participant.get(pid, Tally())) for pid in program.participants]
    if program.format == "race":
        target = program.target or 0

        def race_key(row: tuple[str, Tally]) -> tuple[object, ...]:
            finished = row[1].crossings.get(target)
            return (0, finished, row[0]) if finished else (1, *_order_key(*row))
        rows.sort(key=race_key)
    else:
        rows.sort(key=lambda row: _order_key(*row))
    entries = tuple(
        Entry(rank=i + 1, id=pid, points=t.points, reached_at=t.reached_at,
              finished_at=t.crossings.get(program.target) if program.target is not None else None,
              milestones=_milestones_reached(program, t))
        for i, (pid, t) in enumerate(rows))
    return Standings(program.format, entries)


def team_tallies(program: ProgramDefinition, by_participant: Mapping[str, Tally]) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for team in program.teams:
        member_tallies = [by_participant.get(m, Tally()) for m in team.members]
        total = sum(t.points for t in member_tallies)
        points = total if program.team_scoring == "sum" else total // len(team.members)
        moments = [t.reached_at for t in member_tallies if t.reached_at is not None]
        out[team.id] = Tally(points, max(moments) if moments else None)
    return out


def _team_standings(program: ProgramDefinition, by_participant: Mapping[str, Tally]) -> Standings:
    rows = sorted(team_tallies(program, by_participant).items(), key=lambda row: _order_key(*row))
    return Standings("team", tuple(Entry(rank=i + 1, id=tid, points=t.points, reached_at=t.reached_at)
                                   for i, (tid, t) in enumerate(rows)))


def _bracket_standings(program: ProgramDefinition, round_tallies: list[Mapping[str, Tally]],
                       now: datetime) -> Standings:
    """Seeds pair first with last (1 v n, 2 v n-1, ...); a round's winner has more points in that round (ties:
    who got there first, then the better seed) and is decided once the round has ended."""
    seeds = {pid: i for i, pid in enumerate(program.participants)}
    n = len(program.participants)
    # In match order: (seed 1, seed n), (seed 2, seed n-1), ...; winners meet in that order next round.
    # Strict: the participants are 2, 4, 8, ... (definitions._bracket_errors), so the halves pair up exactly.
    halves = zip(program.participants[: n // 2], reversed(program.participants[n // 2:]), strict=True)
    alive: list[str] = [x for pair in halves for x in pair]
    matches: list[Match] = []
    eliminated: dict[str, int] = {}
    round_points: dict[str, tuple[int, int]] = {}  # participant -> (last round played, points in it)
    for r, rnd in enumerate(program.rounds):
        current = round_tallies[r] if r < len(round_tallies) else {}
        decided = now >= rnd.ends_at
        winners: list[str] = []
        for a, b in zip(alive[0::2], alive[1::2], strict=True):  # a power of two alive: an even count
            ta, tb = current.get(a, Tally()), current.get(b, Tally())
            round_points[a], round_points[b] = (r + 1, ta.points), (r + 1, tb.points)
            winner = None
            if decided:
                winner = min((a, b), key=lambda p: (*_order_key(p, current.get(p, Tally()))[:2], seeds[p]))
                eliminated[b if winner == a else a] = r + 1
                winners.append(winner)
            matches.append(Match(r + 1, a, b, ta.points, tb.points, winner))
        if not decided:
            break
        alive = winners
    # Best first: still in (or champion), then lost later, then more points in the last round played, then seed.
    order = sorted(program.participants, key=lambda p: (-(eliminated.get(p) or len(program.rounds) + 1),
                                                        -round_points.get(p, (0, 0))[1], seeds[p]))
    entries = tuple(Entry(rank=i + 1, id=p, points=round_points.get(p, (0, 0))[1], reached_at=None,
                          eliminated_in_round=eliminated.get(p)) for i, p in enumerate(order))
    return Standings("head_to_head", entries, tuple(matches))


# ---------------------------------------------------------------- a participant's own view


@dataclass(frozen=True)
class Position:
    rank: int
    points: int
    of: int
    points_to_pass_next: int | None  # None when first
    next_milestone: str | None
    points_to_next_milestone: int | None


def position(program: ProgramDefinition, board: Standings, entry_id: str) -> Position | None:
    """Where `entry_id` stands, what it takes to pass the one above (ties go to who got there first, so one
    point more than them), and how far the next milestone (or the race target) is."""
    entry = board.entry(entry_id)
    if entry is None:
        return None
    above = board.entries[entry.rank - 2] if entry.rank > 1 else None
    goals = sorted([(m.points, m.id) for m in program.milestones]
                   + ([(program.target, "target")] if program.target is not None else []))
    nxt = next(((pts, gid) for pts, gid in goals if pts > entry.points), None)
    return Position(
        rank=entry.rank, points=entry.points, of=len(board.entries),
        points_to_pass_next=None if above is None else above.points - entry.points + 1,
        next_milestone=nxt[1] if nxt else None,
        points_to_next_milestone=nxt[0] - entry.points if nxt else None,
    )


# ---------------------------------------------------------------- rewards


@dataclass(frozen=True)
class Award:
    """A reward a rep earned. `key` makes it once-only: the same award is never given twice."""

    key: str
    participant: str
    kind: str  # milestone, place
    reward: Reward
    at: datetime | None
    detail: str


def milestone_awards(program: ProgramDefinition, by_participant: Mapping[str, Tally]) -> list[Award]:
    """Everyone who crosses a milestone earns it, when they cross it (not winner-takes-all)."""
    out = []
    for pid, t in by_participant.items():
        for m in program.milestones:
            if m.points in t.crossings:
                out.append(Award(f"milestone:{m.id}:{pid}", pid, "milestone", m.reward, t.crossings[m.points],
                                 f"reached {m.name} ({m.points} points)"))
    return out


def place_awards(program: ProgramDefinition, board: Standings, ended_at: datetime) -> list[Award]:
    """At the end: the places with a reward go to the entries holding them (a race's places only to those who
    finished; nothing to anyone with no points). In a team contest each member of the team gets the reward."""
    out = []
    # Not strict: rewards for the first few places, the board as long as the entries are many.
    for entry, reward in zip(board.entries, program.place_rewards, strict=False):
        if entry.points <= 0 and program.format != "head_to_head":
            continue
        if program.format == "race" and entry.finished_at is None:
            continue
        members = next((t.members for t in program.teams if t.id == entry.id), (entry.id,))
        for member in members:
            out.append(Award(f"place:{entry.rank}:{member}", member, "place", reward, ended_at,
                             f"place {entry.rank}" + (f" with team {entry.id}" if entry.id != member else "")))
    return out


# ---------------------------------------------------------------- the live stream


@dataclass(frozen=True)
class RankChange:
    id: str
    old_rank: int | None
    new_rank: int
    points: int


def rank_changes(before: Standings | None, after: Standings) -> list[RankChange]:
    """Entries whose rank or points moved (everything, for a first board)."""
    old = {e.id: e for e in before.entries} if before else {}
    return [RankChange(e.id, old[e.id].rank if e.id in old else None, e.rank, e.points)
            for e in after.entries
            if e.id not in old or old[e.id].rank != e.rank or old[e.id].points != e.points]
