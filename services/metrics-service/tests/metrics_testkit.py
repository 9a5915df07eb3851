"""A small, hand-written event history of one org (and a bit of another), for the exactness tests.

Org "org-x", two pipelines, three reps in two teams (all times UTC, 2026):
  P1 "p1": s1 (position 1, p=0.1), s2 (2, p=0.3), s3 (3, ask, p=0.6)
  P2 "p2": t1 (1, p=0.2), t2 (2, ask, p=0.5)
  alice, bob → team T1; carol → team T2.

  L1 alice P1 saas/web   value 1000 → created Jan 1; s1 Jan 1, s2 Jan 3 (goal), s3 Jan 6 (goal), won Jan 11 at 1200
  L2 alice P1 saas/web   value 2000 → created Jan 2 (assigned to bob v1, then alice v2); s1 Jan 2, s2 Jan 4 (manual),
                                      lost Jan 9
  L3 bob   P1 services   value 3000 → created Jan 3; s1 Jan 3, s2 Jan 5 (goal), s3 Jan 8 (goal), lost Jan 10,
                                      reopened Jan 20 (s3 again), won Jan 25 (no value in LeadWon → 3000)
  L4 bob   P1 saas→hardware (v2)    → created Jan 4; s1 Jan 4, disqualified Jan 7
  L5 carol P2 services   value 4000 → created Jan 5; t1 Jan 5, t2 Jan 7 (goal), won Jan 12 at 4400
  L6 carol P2 saas       value 1500 → created Mar 1; t1 Mar 1; open; expected close May 10
  L7 alice P1 saas       value 2500 → created Mar 10; s1 Mar 10, s2 Mar 20 (goal); open; expected close Jun 1
  L8 bob   P1 saas       value  800 → created Apr 1; s1 Apr 1, won Apr 5
Activities, tasks and the expected figures are in the tests (test_exact_reports.py), computed by hand.
"""
from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metrics_service.adapters.orm import READ_MODELS
from metrics_service.config import Settings
from metrics_service.service_layer.projector import project_all
from salesflow_shared.events import Envelope, EventData, make_event
from salesflow_shared.events import catalogue as ev
from salesflow_shared.testing import auth_headers, service_test_settings

ORG = "org-x"
OTHER_ORG = "org-y"
NOW = datetime(2026, 4, 15, tzinfo=UTC)
STAGES = {
    "s1": ("p1", "Qualify", 1, False, Decimal("0.1")), "s2": ("p1", "Discover", 2, False, Decimal("0.3")),
    "s3": ("p1", "Propose", 3, True, Decimal("0.6")),
    "t1": ("p2", "Intro", 1, False, Decimal("0.2")), "t2": ("p2", "Offer", 2, True, Decimal("0.5")),
}
REPS = {"alice": ("Alice Archer", "T1"), "bob": ("Bob Baker", "T1"), "carol": ("Carol Cruz", "T2"),
        "dave": ("Dave Diaz", "AM")}  # dave: account management (customers are handed over to him when won)


def T(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


class History:
    def __init__(self, org: str = ORG) -> None:
        self.org = org
        self.events: list[Envelope] = []
        self._versions: dict[tuple[str, str], int] = {}

    def _emit(self, data: EventData, subject: str, at: datetime, version: int | None = None) -> Envelope:
        key = (data.producer, subject)
        if version is None:
            version = self._versions.get(key, 0) + 1
        self._versions[key] = max(version, self._versions.get(key, 0))
        envelope = make_event(data, org_id=self.org, subject_id=subject, subject_version=version, occurred_at=at)
        self.events.append(envelope)
        return envelope

    def created(self, lead: str, at: datetime, *, product_line: str, source: str, value: str | None,
                territory: str, expected_close: date | None = None, owner_in_snapshot: str | None = None,
                currency: str = "USD") -> None:
        snap = ev.LeadSnapshot(lead_id=lead, product_line=product_line, source=source,
                               value=Decimal(value) if value is not None else None, currency=currency,
                               expected_close_date=expected_close, created_at=at,
                               owner_id=owner_in_snapshot, contact=ev.ContactData(email=f"{lead}@example.com"))
        self._emit(ev.LeadCreatedV1(lead=snap), lead, at, version=1)

    def updated(self, lead: str, at: datetime, version: int, cause: str, created_at: datetime, **fields: Any) -> None:
        snap = ev.LeadSnapshot(lead_id=lead, currency="USD", created_at=created_at, **fields)
        self._emit(ev.LeadUpdatedV1(lead=snap, changed=list(fields), cause=cause), lead, at, version=version)

    def routed(self, lead: str, at: datetime, pipeline: str, territory: str) -> None:
        self._emit(ev.LeadRoutedV1(lead_id=lead, pipeline_id=pipeline, territory_id=territory, reason="rule"),
                   lead, at)

    def assigned(self, lead: str, at: datetime, rep: str, territory: str, version: int | None = None,
                 trigger: str = "lead_created") -> None:
        name, team = REPS[rep]
        self._emit(ev.LeadAssignedV1(lead_id=lead, owner_id=rep, owner_name=name, team_id=team,
                                     territory_id=territory, reason="round robin", trigger=trigger), lead, at, version)

    def stage(self, lead: str, at: datetime, stage: str, reason: str, owner: str | None = None) -> None:
        pipeline, name, position, ask, p = STAGES[stage]
        self._emit(ev.StageAdvancedV1(lead_id=lead, pipeline_id=pipeline, to_stage_id=stage, to_stage_name=name,
                                      to_stage_position=position, is_ask_stage=ask, win_probability=p,
                                      reason=reason, entered_at=at, owner_id=owner), lead, at)

    def won(self, lead: str, at: datetime, pipeline: str, value: str | None, currency: str = "USD") -> None:
        self._emit(ev.LeadWonV1(lead_id=lead, pipeline_id=pipeline, value=Decimal(value) if value else None,
                                currency=currency if value else None, won_at=at), lead, at)

    def lost(self, lead: str, at: datetime, pipeline: str) -> None:
        self._emit(ev.LeadLostV1(lead_id=lead, pipeline_id=pipeline, reason="budget", lost_at=at), lead, at)

    def reopened(self, lead: str, at: datetime, pipeline: str) -> None:
        self._emit(ev.LeadReopenedV1(lead_id=lead, pipeline_id=pipeline, reopened_at=at), lead, at)

    def disqualified(self, lead: str, at: datetime) -> None:
        self._emit(ev.LeadDisqualifiedV1(lead_id=lead, reason="spam"), lead, at, version=9)

    def activity(self, activity_id: str, lead: str, rep: str, kind: str, at: datetime, duration: int | None = None,
                 source: str = "rep") -> Envelope:
        return self._emit(ev.ActivityLoggedV1(activity_id=activity_id, lead_id=lead, kind=kind, rep_id=rep,
                                              occurred_at=at, duration_seconds=duration, source=source),
                          activity_id, at)

    def task(self, kind: str, task_id: str, lead: str, stage: str, at: datetime, due: datetime | None = None) -> None:
        if kind == "created":
            data: EventData = ev.TaskCreatedV1(task_id=task_id, lead_id=lead, stage_id=stage, title="Do it",
                                               required=True, due_at=due)
        elif kind == "completed":
            data = ev.TaskCompletedV1(task_id=task_id, lead_id=lead, stage_id=stage, required=True, completed_at=at)
        elif kind == "skipped":
            data = ev.TaskSkippedV1(task_id=task_id, lead_id=lead, stage_id=stage, reason="left stage")
        else:
            data = ev.TaskOverdueV1(task_id=task_id, lead_id=lead, stage_id=stage, required=True, due_at=due or at)
        self._emit(data, task_id, at)


def lead(h: History, lead_id: str, rep: str, pipeline: str, territory: str, created: datetime, *,
         product_line: str, source: str, value: str | None, expected_close: date | None = None,
         owner_in_snapshot: str | None = None, currency: str = "USD") -> None:
    h.created(lead_id, created, product_line=product_line, source=source, value=value, territory=territory,
              expected_close=expected_close, owner_in_snapshot=owner_in_snapshot, currency=currency)
    h.routed(lead_id, created, pipeline, territory)
    h.assigned(lead_id, created, rep, territory)


def build_history() -> History:
    h = History()
    # L1
    lead(h, "L1", "alice", "p1", "north", T(1, 1), product_line="saas", source="web", value="1000",
         expected_close=date(2026, 1, 31), owner_in_snapshot="alice")
    h.updated("L1", T(1, 2), 2, "edit", T(1, 1), product_line="saas", source="web", value=Decimal("1000"),
              expected_close_date=date(2026, 1, 31), owner_id="alice")
    h.stage("L1", T(1, 1), "s1", "entry")
    h.activity("a1", "L1", "alice", "call", T(1, 1, 2), duration=600)
    h.stage("L1", T(1, 3), "s2", "goal_met")
    h.activity("a9", "L1", "alice", "demo", T(1, 5))
    h.stage("L1", T(1, 6), "s3", "goal_met")
    h.task("created", "k1", "L1", "s3", T(1, 6))
    h.task("completed", "k1", "L1", "s3", T(1, 7))
    h.activity("a10", "L1", "alice", "proposal", T(1, 7))
    h.won("L1", T(1, 11), "p1", "1200")
    # L2: assigned to bob first, then to alice (assignment versions 1 and 2)
    h.created("L2", T(1, 2), product_line="saas", source="web", value="2000", territory="north",
              expected_close=date(2026, 1, 31))
    h.routed("L2", T(1, 2), "p1", "north")
    h.assigned("L2", T(1, 2), "bob", "north")
    h.assigned("L2", T(1, 2, 0, 30), "alice", "north")
    h.updated("L2", T(1, 2, 0, 30), 2, "assignment", T(1, 2), product_line="saas", source="web",
              value=Decimal("2000"), expected_close_date=date(2026, 1, 31), owner_id="alice")
    h.stage("L2", T(1, 2), "s1", "entry")
    h.activity("a3", "L2", "bob", "call", T(1, 2, 1), duration=300)
    h.activity("a2", "L2", "alice", "email", T(1, 2, 4))
    h.task("created", "k2", "L2", "s1", T(1, 2))
    h.task("completed", "k2", "L2", "s1", T(1, 3))
    h.stage("L2", T(1, 4), "s2", "manual")
    h.task("created", "k3", "L2", "s2", T(1, 4))
    h.lost("L2", T(1, 9), "p1")
    h.task("skipped", "k3", "L2", "s2", T(1, 9))
    # L3: lost, reopened, won without a value in the event
    lead(h, "L3", "bob", "p1", "south", T(1, 3), product_line="services", source="referral", value="3000",
         expected_close=date(2026, 2, 15))
    h.stage("L3", T(1, 3), "s1", "entry")
    h.activity("a4", "L3", "bob", "meeting", T(1, 3, 10))
    h.stage("L3", T(1, 5), "s2", "goal_met")
    h.stage("L3", T(1, 8), "s3", "goal_met")
    h.lost("L3", T(1, 10), "p1")
    h.reopened("L3", T(1, 20), "p1")
    h.stage("L3", T(1, 20), "s3", "reopened")
    h.won("L3", T(1, 25), "p1", None)
    # L4: product line changed by an edit (v2), disqualified in s1; a note by bob, a call by carol
    lead(h, "L4", "bob", "p1", "south", T(1, 4), product_line="saas", source="web", value="500")
    h.updated("L4", T(1, 4, 12), 2, "edit", T(1, 4), product_line="hardware", source="web", value=Decimal("500"))
    h.stage("L4", T(1, 4), "s1", "entry")
    h.activity("a5", "L4", "bob", "note", T(1, 4, 5))
    h.activity("a6", "L4", "carol", "call", T(1, 4, 6), duration=120)
    h.disqualified("L4", T(1, 7))
    # L5
    lead(h, "L5", "carol", "p2", "north", T(1, 5), product_line="services", source="referral", value="4000",
         expected_close=date(2026, 1, 20))
    h.stage("L5", T(1, 5), "t1", "entry")
    h.activity("a7", "L5", "carol", "call", T(1, 6), duration=1200)
    h.stage("L5", T(1, 7), "t2", "goal_met")
    h.won("L5", T(1, 12), "p2", "4400")
    # L6, L7: open in Q2's pipeline
    lead(h, "L6", "carol", "p2", "north", T(3, 1), product_line="saas", source="web", value="1500",
         expected_close=date(2026, 5, 10))
    h.stage("L6", T(3, 1), "t1", "entry")
    h.activity("a8", "L6", "carol", "email", T(3, 1, 1), source="sequence")
    h.task("created", "k5", "L6", "t1", T(3, 1), due=T(5, 1))
    lead(h, "L7", "alice", "p1", "north", T(3, 10), product_line="saas", source="web", value="2500",
         expected_close=date(2026, 6, 1))
    h.stage("L7", T(3, 10), "s1", "entry")
    h.stage("L7", T(3, 20), "s2", "goal_met")
    h.task("created", "k4", "L7", "s2", T(3, 20), due=T(4, 1))
    h.task("overdue", "k4", "L7", "s2", T(4, 1), due=T(4, 1))
    # L8: won in Q2
    lead(h, "L8", "bob", "p1", "south", T(4, 1), product_line="saas", source="web", value="800")
    h.stage("L8", T(4, 1), "s1", "entry")
    h.won("L8", T(4, 5), "p1", "800")
    return h


def other_org_history() -> History:
    """Another org's lead: never visible to org-x."""
    h = History(OTHER_ORG)
    lead(h, "Z1", "alice", "p1", "north", T(1, 2), product_line="saas", source="web", value="99999")
    h.stage("Z1", T(1, 2), "s1", "entry")
    h.won("Z1", T(1, 3), "p1", "99999")
    return h


def delivery_order(events: list[Envelope], seed: int) -> list[Envelope]:
    """A shuffled delivery with every third event delivered twice (the same envelope again, later)."""
    rng = random.Random(seed)
    order = list(events)
    rng.shuffle(order)
    out: list[Envelope] = []
    for i, envelope in enumerate(order):
        out.append(envelope)
        if i % 3 == 0:
            out.insert(rng.randrange(len(out) + 1), envelope)
    return out


def redelivered_activity(envelope: Envelope) -> Envelope:
    """The same activity under a new event id (a producer retry): counted once."""
    return envelope.model_copy(update={"id": uuid.uuid4()})


def metrics_settings(database_url: str, amqp_url: str = "", namespace: str = "") -> Settings:
    """Test settings; the forecast worker is off (tests freeze snapshots explicitly)."""
    return service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url, namespace=namespace,
                                 forecast_snapshot_interval_s=0, db_pool_size=3)


# Reports of the history, read through the HTTP API as a manager: Q1 = [2026-01-01, 2026-04-01).
Q1 = {"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}
ADMIN = auth_headers(ORG, "manager", "boss")


async def feed(app, envelopes) -> None:
    """Deliver through the consumer (inbox + log), then wait until the projector applied everything."""
    for envelope in envelopes:
        await app.state.context.dispatcher.dispatch(envelope)
    await project_all(app.state.context.database)


async def get(client, path: str, headers=ADMIN, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/reports/{path}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


REPORTS = [("funnel", Q1), ("win-rate", {**Q1, "group_by": "rep"}), ("deal-size", Q1),
           ("sales-cycle", Q1), ("response-time", Q1), ("response-time", {**Q1, "group_by": "team"}),
           ("conversion", Q1), ("conversion", {**Q1, "group_by": "product_line"}), ("activities", Q1),
           ("production", Q1), ("forecast", {"period": "quarter"}),
           ("forecast", {"period": "quarter", "group_by": "team"}),
           ("forecast-accuracy", {"scope": "team"}), ("quota-attainment", {"period": "quarter"}),
           ("adoption", Q1), ("coaching", Q1), ("stalled-deals", Q1),
           ("leaderboard", {"period": "quarter", "date": "2026-02-01", "metric": "revenue"}),
           ("leaderboard", {"period": "quarter", "date": "2026-02-01", "metric": "activities"}),
           ("leaderboard", {"period": "quarter", "metric": "quota_attainment"})]


async def all_reports(client, reports: list[tuple[str, dict[str, str]]] = REPORTS) -> dict[str, Any]:
    out = {}
    for path, params in reports:
        body = await get(client, path, **params)
        body.pop("generated_at")
        out[f"{path}?{sorted(params.items())}"] = body
    return out


def pick(rows: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(r[k] for k in keys) for r in rows]


async def dump_read_models(app) -> dict[str, list[tuple[Any, ...]]]:
    async with app.state.context.database.session() as session:
        out = {}
        for table in READ_MODELS:
            rows = (await session.execute(sa.select(table))).all()
            out[table.name] = sorted(tuple(str(v) for v in r) for r in rows)
        return out
