"""CSV import on PostgreSQL + RabbitMQ: 10k rows with bad ones, progress, per-row errors, de-duplication."""
from __future__ import annotations

import csv
import io

import pytest
from lead_testkit import admin, rep, start_lead_app

from salesflow_shared.testing import eventually

HEADER = ["Email", "First Name", "Last Name", "Company", "Job Title", "Country", "Amount", "Currency"]


def ten_thousand_rows() -> tuple[bytes, set[int]]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    bad_lines: set[int] = set()
    for i in range(10_000):
        line = i + 2
        row = [f"person{i}@company{i % 700}.com", f"First{i}", f"Last{i}", f"Company {i % 700}",
               "Head of Ops" if i % 3 else "CTO", "DE", str(100 + i), "EUR"]
        if i % 1000 == 17:
            row[0] = "not-an-email"
            bad_lines.add(line)
        elif i % 1000 == 555:
            row[5] = "Germany"
            bad_lines.add(line)
        elif i % 1000 == 901:
            row = row[:3]
            bad_lines.add(line)
        elif i == 42:
            row[3] = 'Quoted, "multi\nline" Inc'
        writer.writerow(row)
    return out.getvalue().encode(), bad_lines


@pytest.fixture
async def small_body_app(database_url, amqp_url, bus_namespace):
    async with start_lead_app(database_url, amqp_url, bus_namespace, max_body_bytes=262_144) as app:
        yield app


async def test_ten_thousand_row_import_with_bad_rows(small_body_app):
    lead_app = small_body_app
    c = lead_app.client
    body, bad_lines = ten_thousand_rows()
    # the upload is far bigger than any other request may be
    assert (await c.post("/v1/leads", content=body, headers=admin(**{"Content-Type": "application/json"}))
            ).status_code == 413
    r = await c.post("/v1/imports", content=body, params={"filename": "leads.csv"},
                     headers=admin(**{"Content-Type": "text/csv"}))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["total_rows"] == 10_000

    async def finished():
        progress = (await c.get(f"/v1/imports/{job['id']}", headers=admin())).json()
        assert progress["status"] == "done", progress
        return progress
    progress = await eventually(finished, timeout=60, interval=0.5)
    assert progress["processed_rows"] == 10_000
    assert progress["failed"] == len(bad_lines) == 30
    assert progress["created"] == 10_000 - 30 and progress["updated"] == 0

    errors, cursor = [], None
    while True:
        page = (await c.get(f"/v1/imports/{job['id']}/errors", params={"limit": 7, **({"cursor": cursor} if cursor
                                                                                    else {})},
                            headers=admin())).json()
        errors += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {e["row"] for e in errors} == bad_lines
    by_row = {e["row"]: e for e in errors}
    assert by_row[19]["errors"][0]["field"] == "contact.email"
    assert by_row[557]["errors"][0]["field"] == "country"
    assert by_row[903]["errors"] == [{"field": "row", "message": "3 cells where the header has 8"}]
    assert by_row[19]["data"]["Email"] == "not-an-email"

    leads = (await c.get("/v1/leads", params={"q": "person42@"}, headers=admin())).json()["items"]
    assert leads[0]["company"]["name"] == 'Quoted, "multi\nline" Inc' and leads[0]["source"] == "import"
    assert len(await lead_app.outbox("LeadCreated")) == 10_000 - 30
    # companies were de-duplicated by their domain
    companies = (await c.get("/v1/companies", params={"q": "company1.com"}, headers=admin())).json()["items"]
    assert [co["domain"] for co in companies] == ["company1.com"]

    # importing the same people again updates their open leads instead of duplicating them
    again = "Email,Job Title\nperson1@company1.com,COO\nperson1@company1.com,CFO\nnew@fresh.io,CEO\n"
    r = await c.post("/v1/imports", content=again.encode(), headers=admin(**{"Content-Type": "text/csv"}))
    job2 = r.json()

    async def finished2():
        progress = (await c.get(f"/v1/imports/{job2['id']}", headers=admin())).json()
        assert progress["status"] == "done"
        return progress
    progress = await eventually(finished2, timeout=20)
    assert (progress["created"], progress["updated"], progress["failed"]) == (1, 2, 0)
    lead = (await c.get("/v1/leads", params={"q": "person1@company1.com"}, headers=admin())).json()["items"]
    assert len(lead) == 1 and lead[0]["contact"]["title"] == "CFO"

    # export the filtered list as CSV
    r = await c.get("/v1/leads/export", params={"q": "company7.com"}, headers=admin())
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 15 and {row["company.domain"] for row in rows} == {"company7.com"}


async def test_bad_uploads_are_refused_whole(small_body_app):
    lead_app = small_body_app
    c = lead_app.client
    csv_headers = admin(**{"Content-Type": "text/csv"})
    r = await c.post("/v1/imports", content=b"", headers=csv_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
    r = await c.post("/v1/imports", content=b"shoe,hat\n1,2\n", headers=csv_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header"
    r = await c.post("/v1/imports", content=b"email,email\na@b.io,c@d.io\n", headers=csv_headers)
    assert r.status_code == 422
    r = await c.post("/v1/imports", content=b"email\n\xff\xfe@x.io\n", headers=csv_headers)
    assert r.status_code == 422
    r = await c.post("/v1/imports", content=b"email\na@b.io\n", headers=admin())
    assert r.status_code == 415
    assert (await c.get("/v1/imports", headers=admin())).json()["items"] == []
    r = await c.post("/v1/imports", content=b"email\na@b.io\n", headers=csv_headers)
    assert (await c.get(f"/v1/imports/{r.json()['id']}", headers=admin("org-b"))).status_code == 404


async def test_a_rep_imports_their_own_call_list(small_body_app):
    c = small_body_app.client
    taken = await c.post("/v1/leads", headers=rep(sub="rep-a"), json={
        "contact": {"email": "taken@buyer.com", "first_name": "Tia"}, "source": "api"})
    assert taken.status_code == 201, taken.text
    own = await c.post("/v1/leads", headers=rep(sub="rep-b"), json={
        "contact": {"email": "mine@buyer.com", "first_name": "Mo"}, "source": "api"})
    calls = ("Email,First Name,Owner Id\nnew1@buyer.com,Ned,rep-a\nnew2@buyer.com,Nia,\n"
             "taken@buyer.com,Tia,\nmine@buyer.com,Moe,\n")
    r = await c.post("/v1/imports", content=calls.encode(), headers=rep(sub="rep-b", **{"Content-Type": "text/csv"}))
    assert r.status_code == 202, r.text
    job = r.json()

    async def finished():
        progress = await c.get(f"/v1/imports/{job['id']}", headers=rep(sub="rep-b"))
        assert progress.status_code == 200 and progress.json()["status"] == "done", progress.text
        return progress.json()
    progress = await eventually(finished, timeout=20)
    assert (progress["created"], progress["updated"], progress["failed"], progress["created_by"]) == (
        2, 1, 1, "rep-b")
    [error] = (await c.get(f"/v1/imports/{job['id']}/errors", headers=rep(sub="rep-b"))).json()["items"]
    assert error["row"] == 4 and error["errors"][0]["field"] == "contact.email"
    assert taken.json()["id"] in error["errors"][0]["message"] and "rep 'rep-a'" in error["errors"][0]["message"]

    mine = (await c.get("/v1/leads", params={"limit": 10}, headers=rep(sub="rep-b"))).json()["items"]
    assert sorted(lead["contact"]["email"] for lead in mine) == ["mine@buyer.com", "new1@buyer.com",
                                                                 "new2@buyer.com"]
    assert {lead["owner_id"] for lead in mine} == {"rep-b"}  # a rep's import is theirs, whatever a column says
    assert next(x for x in mine if x["id"] == own.json()["id"])["contact"]["first_name"] == "Moe"
    still = (await c.get(f"/v1/leads/{taken.json()['id']}", headers=rep(sub="rep-a"))).json()
    assert (still["owner_id"], still["source"]) == ("rep-a", "api")

    # Another rep sees neither the import nor its errors; a manager sees it.
    assert (await c.get(f"/v1/imports/{job['id']}", headers=rep(sub="rep-a"))).status_code == 404
    assert (await c.get(f"/v1/imports/{job['id']}/errors", headers=rep(sub="rep-a"))).status_code == 404
    assert (await c.get("/v1/imports", headers=rep(sub="rep-a"))).json()["items"] == []
    assert [i["id"] for i in (await c.get("/v1/imports", headers=admin())).json()["items"]] == [job["id"]]
