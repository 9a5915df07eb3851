"""Quotas CRUD, report filters and roles, the RabbitMQ consumer path, the embedded (SQLite) mode, the forecast
snapshot worker and the rebuild command."""
from __future__ import annotations

import asyncio

import sqlalchemy as sa
from metrics_testkit import NOW, ORG, build_history, delivery_order, feed, metrics_settings

from metrics_service.adapters.orm import event_log, forecast_snapshots, m_leads
from metrics_service.entrypoints import cli
from metrics_service.entrypoints.http import create_app
from metrics_service.service_layer.forecasting import snapshot_worker_tick
from metrics_service.service_layer.projector import project_all
from salesflow_shared.testing import auth_headers, eventually, running_app

ADMIN = auth_headers(ORG, "admin", "root")
Q1 = {"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}
QUOTA = {"scope": "rep", "scope_id": "alice", "period": "quarter", "period_start": "2026-04-01", "amount": "1000",
         "currency": "USD"}


async def test_quotas_crud_with_idempotency_etags_roles_and_org_scoping(metrics_app):
    _, client = metrics_app
    created = await client.post("/v1/quotas", json=QUOTA, headers={**ADMIN, "Idempotency-Key": "q-1"})
    assert created.status_code == 201, created.text
    quota = created.json()
    assert quota["amount"] == "1000.00" and quota["version"] == 1
    replay = await client.post("/v1/quotas", json=QUOTA, headers={**ADMIN, "Idempotency-Key": "q-1"})
    assert replay.status_code == 201 and replay.json()["quota_id"] == quota["quota_id"]
    assert replay.headers["idempotent-replayed"] == "true"
    other_body = await client.post("/v1/quotas", json={**QUOTA, "amount": "5"},
                                   headers={**ADMIN, "Idempotency-Key": "q-1"})
    assert other_body.status_code == 409
    duplicate = await client.post("/v1/quotas", json=QUOTA, headers=ADMIN)
    assert duplicate.status_code == 409
    bad = await client.post("/v1/quotas", json={**QUOTA, "period_start": "2026-04-02"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "period_start"
    negative = await client.post("/v1/quotas", json={**QUOTA, "amount": "-1"}, headers=ADMIN)
    assert negative.status_code == 422 and negative.json()["errors"][0]["field"] == "amount"
    by_rep = await client.post("/v1/quotas", json=QUOTA, headers=auth_headers(ORG, "rep", "alice"))
    assert by_rep.status_code == 403

    url = f"/v1/quotas/{quota['quota_id']}"
    read = await client.get(url, headers=ADMIN)
    etag = read.headers["etag"]
    assert (await client.get(url, headers=auth_headers(ORG, "rep", "alice"))).status_code == 200
    assert (await client.get(url, headers=auth_headers(ORG, "rep", "bob"))).status_code == 404
    assert (await client.get(url, headers=auth_headers("org-other", "admin"))).status_code == 404
    patched = await client.patch(url, json={"amount": "1500"}, headers={**ADMIN, "If-Match": etag})
    assert patched.status_code == 200 and patched.json()["amount"] == "1500.00" and patched.json()["version"] == 2
    stale = await client.patch(url, json={"amount": "1"}, headers={**ADMIN, "If-Match": etag})
    assert stale.status_code == 412
    listed = await client.get("/v1/quotas", params={"limit": 1}, headers=ADMIN)
    assert [q["quota_id"] for q in listed.json()["items"]] == [quota["quota_id"]]
    assert (await client.get("/v1/quotas", headers=auth_headers(ORG, "rep", "bob"))).json()["items"] == []
    assert (await client.delete(url, headers=ADMIN)).status_code == 204
    assert (await client.get(url, headers=ADMIN)).status_code == 404


async def test_report_filters_are_validated_and_need_a_token(metrics_app):
    _, client = metrics_app
    assert (await client.get("/v1/reports/win-rate")).status_code == 401
    bad_group = await client.get("/v1/reports/win-rate", params={"group_by": "colour"}, headers=ADMIN)
    assert bad_group.status_code == 422 and bad_group.json()["errors"][0]["field"] == "group_by"
    backwards = await client.get("/v1/reports/funnel", params={"from": "2026-02-01T00:00:00Z",
                                                               "to": "2026-01-01T00:00:00Z"}, headers=ADMIN)
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "to"
    not_per_source = await client.get("/v1/reports/activities", params={"group_by": "source"}, headers=ADMIN)
    assert not_per_source.status_code == 422
    rep_org_accuracy = await client.get("/v1/reports/forecast-accuracy", params={"scope": "org"},
                                        headers=auth_headers(ORG, "rep", "alice"))
    assert rep_org_accuracy.status_code == 403
    assert (await client.post("/v1/reports/rebuild", headers=auth_headers(ORG, "manager"))).status_code == 403
    empty = await client.get("/v1/reports/funnel", params=Q1, headers=ADMIN)
    assert empty.status_code == 200 and empty.json()["rows"] == []
    assert "reached = cohort leads" in empty.json()["definition"]


async def test_events_published_to_rabbitmq_reach_the_reports_once(database_url, amqp_url, bus_namespace):
    import aio_pika

    app = create_app(metrics_settings(database_url, amqp_url, bus_namespace), clock=lambda: NOW)
    events = [e for e in build_history().events
              if e.subject_id in ("L1", "L2") or e.data.get("lead_id") in ("L1", "L2")]
    async with running_app(app) as client:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(f"{bus_namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        for envelope in [*events, *events[:5]]:  # the first five twice
            await exchange.publish(aio_pika.Message(envelope.to_json(), delivery_mode=2), routing_key=envelope.type)
        await connection.close()

        async def all_logged():
            async with app.state.context.database.session() as session:
                count = (await session.execute(sa.select(sa.func.count()).select_from(event_log))).scalar_one()
            assert count == len(events)
        await eventually(all_logged, timeout=60)
        await project_all(app.state.context.database)
        # L1 won, L2 lost in Q1 → 1 / 2
        body = (await client.get("/v1/reports/win-rate", params=Q1, headers=ADMIN)).json()
        assert [(r["won"], r["lost"], r["win_rate_pct"]) for r in body["rows"]] == [(1, 1, 50.0)]


async def test_embedded_sqlite_mode_gives_the_same_numbers(tmp_path, metrics_app):
    pg_app, pg_client = metrics_app
    sqlite_app = create_app(metrics_settings(f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"), clock=lambda: NOW)
    events = delivery_order(build_history().events, seed=3)
    await feed(pg_app, events)
    async with running_app(sqlite_app) as lite_client:
        await feed(sqlite_app, events)
        for path, params in [("funnel", Q1), ("win-rate", {**Q1, "group_by": "rep"}), ("deal-size", Q1),
                             ("sales-cycle", Q1), ("response-time", Q1), ("conversion", Q1), ("activities", Q1),
                             ("adoption", Q1), ("coaching", Q1), ("stalled-deals", Q1),
                             ("forecast", {"period": "quarter", "group_by": "team"}),
                             ("leaderboard", {"period": "quarter", "date": "2026-02-01", "metric": "activities"})]:
            lite = await lite_client.get(f"/v1/reports/{path}", params=params, headers=ADMIN)
            pg = await pg_client.get(f"/v1/reports/{path}", params=params, headers=ADMIN)
            assert lite.status_code == 200, lite.text
            assert lite.json()["rows"] == pg.json()["rows"], path


async def test_the_worker_freezes_each_period_once_and_the_cli_rebuilds(metrics_app, database_url, monkeypatch):
    app, client = metrics_app
    context = app.state.context
    for envelope in build_history().events:
        await context.dispatcher.dispatch(envelope)
    await project_all(context.database)
    # month/quarter/year × org+2 teams+3 reps
    assert await snapshot_worker_tick(context, lambda: NOW) == 3 + 3 * (2 + 3)
    assert await snapshot_worker_tick(context, lambda: NOW) == 0
    async with context.database.session() as session:
        starts = {r[0].month for r in (await session.execute(
            sa.select(forecast_snapshots.c.period_start).where(forecast_snapshots.c.scope == "org"))).all()}
        assert starts == {1, 4}  # year and quarter start in January/April, the month in April
        await session.execute(sa.update(m_leads).values(outcome="open", closed_ts=None))
        await session.commit()
    broken = (await client.get("/v1/reports/win-rate", params=Q1, headers=ADMIN)).json()["rows"]
    assert broken == []
    monkeypatch.setenv("SALESFLOW_DATABASE_URL", database_url)
    assert await asyncio.to_thread(cli.main, ["rebuild", "--org", ORG]) == 0
    fixed = (await client.get("/v1/reports/win-rate", params=Q1, headers=ADMIN)).json()["rows"]
    assert [(r["won"], r["lost"]) for r in fixed] == [(3, 1)]


async def test_embedded_projectors_that_overlap_apply_each_event_once(tmp_path, metrics_app):
    """In the embedded mode the worker, a rebuild or `project_all` may project at the same time (no advisory
    lock on SQLite): each must wait for the other, never apply the same rows twice."""
    pg_app, pg_client = metrics_app
    sqlite_app = create_app(metrics_settings(f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"), clock=lambda: NOW)
    events = delivery_order(build_history().events, seed=4)
    await feed(pg_app, events)
    async with running_app(sqlite_app) as lite_client:
        for envelope in events:
            await sqlite_app.state.context.dispatcher.dispatch(envelope)
        database = sqlite_app.state.context.database
        await asyncio.gather(project_all(database), project_all(database), project_all(database))
        for path in ("activities", "production", "funnel"):
            lite = await lite_client.get(f"/v1/reports/{path}", params=Q1, headers=ADMIN)
            pg = await pg_client.get(f"/v1/reports/{path}", params=Q1, headers=ADMIN)
            assert lite.json()["rows"] == pg.json()["rows"], path


async def test_erasure_scrubs_the_logged_snapshots_and_activity_subjects_even_of_late_events(metrics_app):
    import json

    from metrics_testkit import History, T

    from salesflow_shared import events as ev

    app, _ = metrics_app
    h = History()
    snap = ev.LeadSnapshot(lead_id="gdpr-1", contact=ev.ContactData(first_name="Quentin", email="quentin@zyx.example"),
                           company=ev.CompanyData(name="Zyxcorp", domain="zyx.example"), currency="USD")
    h._emit(ev.LeadCreatedV1(lead=snap), "gdpr-1", T(1, 5), version=1)
    h._emit(ev.ActivityLoggedV1(activity_id="act-1", lead_id="gdpr-1", kind="call", rep_id="alice",
                                occurred_at=T(1, 6), subject="Call Quentin about Zyxcorp"), "act-1", T(1, 6))
    h._emit(ev.LeadErasedV1(lead_id="gdpr-1"), "gdpr-1", T(1, 7), version=3)
    # delivered after the erasure: a snapshot retried by its producer, and a late activity
    h._emit(ev.LeadUpdatedV1(lead=snap, changed=["title"], cause="edit"), "gdpr-1", T(1, 5, 1), version=2)
    h._emit(ev.ActivityLoggedV1(activity_id="act-2", lead_id="gdpr-1", kind="note", rep_id="alice",
                                occurred_at=T(1, 6, 1), subject="Quentin's notes"), "act-2", T(1, 6, 1))
    await feed(app, h.events[:3])
    await feed(app, h.events[3:])
    async with app.state.context.database.session() as session:
        logged = [json.dumps(d) for d in (await session.execute(sa.select(event_log.c.data).where(
            event_log.c.org_id == h.org))).scalars()]
    assert len(logged) == 5
    for needle in ("Quentin", "quentin@zyx.example", "Zyxcorp", "zyx.example"):
        assert not [d for d in logged if needle in d], needle
