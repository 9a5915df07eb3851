"""The conventions every service shares, as metrics-service keeps them: times are RFC 3339 only."""
from __future__ import annotations

import pytest
from metrics_testkit import ORG

from salesflow_shared.testing import auth_headers

ADMIN = auth_headers(ORG, "admin", "root")


@pytest.mark.parametrize("field,value", [("to", "0.5"), ("from", "1767225600"), ("from", "2026-01-01"),
                                         ("to", "2026-04-01T00:00:00")])
async def test_report_periods_take_rfc3339_times_only(metrics_app, field, value):
    _, client = metrics_app
    response = await client.get("/v1/reports/win-rate", params={field: value}, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_a_report_period_with_an_offset_is_read_as_that_instant(metrics_app):
    _, client = metrics_app
    response = await client.get("/v1/reports/win-rate", headers=ADMIN,
                                params={"from": "2026-01-01T02:00:00+02:00", "to": "2026-04-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert response.json()["filters"]["from"] == "2026-01-01T02:00:00+02:00"
