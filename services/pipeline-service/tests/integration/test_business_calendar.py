"""The org's business calendar: admins set it (If-Match, validated, announced), and task due dates in business
days skip its public holidays and days off."""
from datetime import UTC, datetime

from pipeline_testkit import assigned, new_lead, routed

CALL_IN_TWO_BUSINESS_DAYS = {
    "name": "Calls", "stages": [
        {"name": "Work", "task_templates": [
            {"title": "Call", "type": "call", "due": {"amount": 2, "unit": "business_days"}}]}]}


async def test_due_dates_skip_the_orgs_public_holidays_and_days_off(pipe):
    first = await pipe.client.get("/v1/business-calendar", headers=pipe.headers("rep", "rep-1"))
    assert first.status_code == 200 and first.headers["etag"] == '"0"'
    assert first.json() == {"working_days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                            "country": None, "subdivision": None, "days_off": [], "version": 0, "updated_at": None}

    body = {"country": "DE", "days_off": ["2026-04-07"]}
    assert (await pipe.client.put("/v1/business-calendar", json=body, headers=pipe.headers())).status_code == 428
    assert (await pipe.client.put("/v1/business-calendar", json=body,
                                  headers=pipe.headers("rep", "rep-1", **{"If-Match": '"0"'}))).status_code == 403
    saved = await pipe.client.put("/v1/business-calendar", json=body, headers=pipe.headers(**{"If-Match": '"0"'}))
    assert saved.status_code == 200, saved.text
    assert saved.headers["etag"] == '"1"' and saved.json()["days_off"] == ["2026-04-07"]
    again = await pipe.client.put("/v1/business-calendar", json=body, headers=pipe.headers(**{"If-Match": '"0"'}))
    assert again.status_code == 412  # another admin's change in between is never overwritten blindly
    announced = [e["data"] for e in await pipe.outbox("BusinessCalendarSet")]
    assert announced == [{"working_days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                          "country": "DE", "subdivision": None, "days_off": ["2026-04-07"]}]

    # Thursday 2 April 2026, 14:00 in Berlin: Good Friday, the weekend, Easter Monday and the org's own day off
    # (Tuesday 7 April) are not working days, so "2 business days" is Thursday 9 April, 14:00 Berlin (12:00 UTC).
    pipe.clock.set(datetime(2026, 4, 2, 12, 0, tzinfo=UTC))
    pipeline = await pipe.create_pipeline(CALL_IN_TWO_BUSINESS_DAYS)
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-1", tz="Europe/Berlin"), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))
    created = [e["data"] for e in await pipe.outbox("TaskCreated") if e["data"]["lead_id"] == lead]
    assert [t["due_at"] for t in created] == ["2026-04-09T12:00:00Z"]


async def test_a_calendar_that_makes_no_sense_is_refused_naming_the_field(pipe):
    cases = [
        ({"country": "XX"}, "country"),
        ({"country": "DE", "subdivision": "ZZ"}, "subdivision"),
        ({"subdivision": "BY"}, "subdivision"),
        ({"working_days": []}, "working_days"),
        ({"working_days": ["monday", "monday"]}, "working_days"),
        ({"working_days": ["funday"]}, "working_days.0"),
        ({"days_off": ["2026-02-30"]}, "days_off.0"),
    ]
    for body, field in cases:
        resp = await pipe.client.put("/v1/business-calendar", json=body, headers=pipe.headers(**{"If-Match": '"0"'}))
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in resp.json()["errors"]], (body, resp.json())
    assert await pipe.outbox("BusinessCalendarSet") == []
