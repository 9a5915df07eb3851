"""Each service starts on an empty database, migrates it, and answers /healthz, /readyz, /metrics and
/openapi.json — on PostgreSQL + RabbitMQ (full mode) and on SQLite + the in-process bus (embedded mode)."""
from __future__ import annotations

import contextlib
import importlib

import pytest
import sqlalchemy as sa

from salesflow_shared.runner import SERVICES
from salesflow_shared.testing import running_app, service_test_settings


def _app(entry, database_url: str, amqp_url: str = "", namespace: str = ""):
    settings_cls = importlib.import_module(f"{entry.package}.config").Settings
    create_app = importlib.import_module(f"{entry.package}.entrypoints.http").create_app
    settings = service_test_settings(settings_cls, database_url=database_url, amqp_url=amqp_url,
                                     namespace=namespace)
    return create_app(settings)


async def _assert_serves(client, app) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": True, "broker": True}
    assert "salesflow_http_requests_total" in (await client.get("/metrics")).text
    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == f"Salesflow {app.state.context.name}"
    async with app.state.context.database.session() as session:
        tables = await session.run_sync(lambda s: sa.inspect(s.bind).get_table_names())
        # One row per head: a service may keep independent branches of migrations (incentive-service).
        versions = (await session.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert {"outbox", "inbox", "idempotency_keys"} <= set(tables)
    assert versions


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
async def test_service_starts_migrates_and_is_ready_on_postgres_and_rabbitmq(entry, make_database_url, amqp_url,
                                                                            bus_namespace):
    app = _app(entry, await make_database_url(entry.package), amqp_url, bus_namespace)
    async with running_app(app) as client:
        await _assert_serves(client, app)


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
async def test_service_starts_embedded_on_sqlite(entry, tmp_path):
    app = _app(entry, f"sqlite+aiosqlite:///{tmp_path / (entry.package + '.db')}")
    async with running_app(app) as client:
        await _assert_serves(client, app)


async def test_readyz_reports_an_unreachable_database(tmp_path):
    entry = SERVICES[0]
    app = _app(entry, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with running_app(app) as client:
        await app.state.context.database.dispose()
        # A directory where the database file was: connections now fail. The service's relay and workers keep
        # trying meanwhile, and SQLite creates an empty file on their first try, so swap until the directory
        # is in place.
        database_file = tmp_path / "x.db"
        while not database_file.is_dir():
            database_file.unlink(missing_ok=True)
            with contextlib.suppress(FileExistsError):
                database_file.mkdir()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] is False
