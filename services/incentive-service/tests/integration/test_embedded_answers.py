"""Embedded mode (SQLite, which reads instants back without their zone) answers every instant with its offset,
as full mode does: a client parsing RFC 3339 must not get a naive time from `make run`."""
from __future__ import annotations

from datetime import datetime

from incentive_service.config import Settings
from incentive_service.entrypoints.http import create_app
from salesflow_shared.testing import auth_headers, running_app, service_test_settings

PLAN = {"name": "AE 2027", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
        "coverage": {"participants": ["ann"]}, "base_rate": "0.10"}


async def test_a_plan_created_and_read_back_on_sqlite_carries_its_offset(tmp_path):
    settings = service_test_settings(Settings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'incentive.db'}")
    async with running_app(create_app(settings)) as client:
        created = await client.post("/v1/plans", json=PLAN, headers=auth_headers("org-e"))
        assert created.status_code == 201, created.text
        read = await client.get(f"/v1/plans/{created.json()['plan_id']}", headers=auth_headers("org-e"))
    for answer in (created.json(), read.json()):
        assert datetime.fromisoformat(answer["created_at"]).utcoffset() is not None, answer["created_at"]
