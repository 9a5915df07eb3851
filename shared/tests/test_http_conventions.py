"""The HTTP conventions every service shares, on a small service built with the common library:
auth (401/403 problem+json), tenant isolation (404 for another org's ids), validation errors naming the
field, Idempotency-Key, cursor pagination, body size cap, correlation id."""
from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, Field

from salesflow_shared.app import ServiceDefinition, UowDep, create_service_app
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal
from salesflow_shared.errors import NotFound
from salesflow_shared.events import LeadErasedV1
from salesflow_shared.idempotency import IdempotencyDep
from salesflow_shared.infra_tables import add_infrastructure_tables, outbox_table
from salesflow_shared.pagination import CursorParam, LimitParam, Page, decode_cursor, page_from_rows
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import auth_headers, eventually, refuse_connections, running_app, service_test_settings

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
notes = sa.Table("notes", metadata,
                 sa.Column("id", sa.String(36), primary_key=True),
                 sa.Column("org_id", sa.String(100), nullable=False, index=True),
                 sa.Column("text", sa.String(200), nullable=False))

router = APIRouter(prefix="/v1/notes")


class NoteIn(BaseModel):
    model_config = {"extra": "forbid"}
    text: str = Field(min_length=1, max_length=200)
    priority: int = 0


class NoteOut(BaseModel):
    id: str
    text: str


@router.post("", status_code=201)
async def create_note(body: NoteIn, principal: AdminPrincipal, uow: UowDep, idem: IdempotencyDep):
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="notes.create",
                              payload=body.model_dump())
    if replay is not None:
        return replay
    note_id = str(uuid.uuid4())
    await uow.session.execute(sa.insert(notes).values(id=note_id, org_id=principal.org_id, text=body.text))
    uow.publish(LeadErasedV1(lead_id=note_id), org_id=principal.org_id, subject_id=note_id)
    response = await idem.complete(uow.session, status_code=201, body={"id": note_id, "text": body.text})
    await uow.commit()
    return response


@router.get("/{note_id}")
async def get_note(note_id: str, principal: CurrentPrincipal, uow: UowDep) -> NoteOut:
    row = (await uow.session.execute(sa.select(notes).where(
        notes.c.id == note_id, notes.c.org_id == principal.org_id))).first()
    if row is None:
        raise NotFound(f"note {note_id} not found")
    return NoteOut(id=row.id, text=row.text)


@router.post("/{first_id}/then/{second_id}")
async def touch_two_notes(first_id: str, second_id: str, principal: AdminPrincipal, uow: UowDep) -> NoteOut:
    """Locks one note, then the other: two such requests in opposite orders deadlock (the conflict test)."""
    await uow.session.execute(sa.select(notes.c.id).where(notes.c.id == first_id).with_for_update())
    await asyncio.sleep(0.3)  # the other request takes its first lock meanwhile
    await uow.session.execute(sa.select(notes.c.id).where(notes.c.id == second_id).with_for_update())
    await uow.session.execute(sa.update(notes).where(notes.c.id.in_([first_id, second_id])).values(
        text=notes.c.text + "!"))
    await uow.commit()
    return NoteOut(id=second_id, text="touched")


@router.get("")
async def list_notes(principal: CurrentPrincipal, uow: UowDep, limit: LimitParam = 50,
                     cursor: CursorParam = None) -> Page[NoteOut]:
    after = decode_cursor(cursor, 1)
    query = sa.select(notes).where(notes.c.org_id == principal.org_id).order_by(notes.c.id).limit(limit + 1)
    if after:
        query = query.where(notes.c.id > after[0])
    rows = [NoteOut(id=r.id, text=r.text) for r in (await uow.session.execute(query)).all()]
    return page_from_rows(rows, limit, key=lambda n: [n.id])


@pytest.fixture
async def client(database_url, amqp_url, bus_namespace):
    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, service_name="notes", migrate_on_start=False,
                                     max_body_bytes=4096, max_json_items=1000)
    app = create_service_app(ServiceDefinition(name="notes", settings=settings, routers=[router],
                                               migrations_path=Path("unused")))
    async with app.state.context.database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with running_app(app) as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


def _is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


async def test_requests_without_a_valid_token_get_401_problem(client):
    _is_problem(await client.get("/v1/notes"), 401)
    _is_problem(await client.get("/v1/notes", headers={"Authorization": "Bearer not-a-jwt"}), 401)
    # Signed with a key of a proper length (32 bytes or more for HS256), only not the service's.
    forged = jwt.encode({"sub": "u", "org": "a", "role": "admin", "exp": 9999999999},
                        "a-key-of-the-right-length-that-is-not-ours", algorithm="HS256")
    _is_problem(await client.get("/v1/notes", headers={"Authorization": f"Bearer {forged}"}), 401)
    expired = jwt.encode({"sub": "u", "org": "a", "role": "admin", "exp": 1},
                         service_test_settings(ServiceSettings, database_url="x").jwt_secret, algorithm="HS256")
    body = _is_problem(await client.get("/v1/notes", headers={"Authorization": f"Bearer {expired}"}), 401)
    assert "expired" in body["detail"].lower()


async def test_role_checks_give_403(client):
    response = await client.post("/v1/notes", json={"text": "x"}, headers=auth_headers("org-a", role="rep"))
    _is_problem(response, 403)


async def test_a_token_for_org_a_cannot_read_org_b_rows(client):
    created = await client.post("/v1/notes", json={"text": "b's secret"}, headers=auth_headers("org-b"))
    assert created.status_code == 201
    note_id = created.json()["id"]
    assert (await client.get(f"/v1/notes/{note_id}", headers=auth_headers("org-b"))).status_code == 200
    _is_problem(await client.get(f"/v1/notes/{note_id}", headers=auth_headers("org-a")), 404)
    listed = await client.get("/v1/notes", headers=auth_headers("org-a"))
    assert listed.json() == {"items": [], "next_cursor": None}


async def test_validation_errors_name_the_field(client):
    response = await client.post("/v1/notes", json={"text": "", "priority": "high", "colour": "red"},
                                 headers=auth_headers("org-a"))
    body = _is_problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"text", "priority", "colour"} <= fields
    body = _is_problem(await client.post("/v1/notes", content=b"{not json", headers={
        **auth_headers("org-a"), "content-type": "application/json"}), 422)
    assert body["errors"]
    _is_problem(await client.get("/v1/notes?cursor=%%%garbage", headers=auth_headers("org-a")), 422)


async def test_a_body_that_is_not_utf8_json_and_an_overlong_correlation_id_are_422_naming_them(client):
    body = _is_problem(await client.post("/v1/notes", content=b"\x96_J\x9e\x13", headers={
        **auth_headers("org-a"), "content-type": "application/json"}), 422)
    assert [e["field"] for e in body["errors"]] == ["body"]
    body = _is_problem(await client.get("/v1/notes", headers={**auth_headers("org-a"),
                                                               "X-Correlation-ID": "c" * 101}), 422)
    assert [e["field"] for e in body["errors"]] == ["X-Correlation-ID"]
    echoed = await client.get("/v1/notes", headers={**auth_headers("org-a"), "X-Correlation-ID": "c" * 100})
    assert echoed.status_code == 200 and echoed.headers["X-Correlation-ID"] == "c" * 100


async def test_a_cursor_changed_by_the_client_is_a_422_naming_it(client):
    for number in range(3):
        await client.post("/v1/notes", json={"text": f"note {number}"}, headers=auth_headers("org-c"))
    issued = (await client.get("/v1/notes?limit=1", headers=auth_headers("org-c"))).json()["next_cursor"]
    payload, check = json.loads(base64.urlsafe_b64decode(issued + "=" * (-len(issued) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps([payload.replace('"', '"x', 1), check]).encode()).decode()
    made_up = base64.urlsafe_b64encode(b"[1]").decode()
    for cursor in (edited, made_up):
        body = _is_problem(await client.get(f"/v1/notes?cursor={cursor}", headers=auth_headers("org-c")), 422)
        assert [e["field"] for e in body["errors"]] == ["cursor"]
    assert (await client.get(f"/v1/notes?cursor={issued}", headers=auth_headers("org-c"))).status_code == 200


async def test_idempotency_key_replays_the_same_response_and_has_no_second_effect(client):
    headers = auth_headers("org-a", **{"Idempotency-Key": "k-1"})
    first = await client.post("/v1/notes", json={"text": "once"}, headers=headers)
    second = await client.post("/v1/notes", json={"text": "once"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    listed = await client.get("/v1/notes", headers=auth_headers("org-a"))
    assert len(listed.json()["items"]) == 1
    async with client.app.state.context.database.session() as session:  # one event, not two
        assert (await session.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one() == 1
    _is_problem(await client.post("/v1/notes", json={"text": "other"}, headers=headers), 409)
    # the same key in another org is another key
    other_org = await client.post("/v1/notes", json={"text": "once"},
                                  headers=auth_headers("org-b", **{"Idempotency-Key": "k-1"}))
    assert other_org.status_code == 201 and other_org.json()["id"] != first.json()["id"]


async def test_cursor_pagination_walks_every_row_once(client):
    for i in range(7):
        answer = await client.post("/v1/notes", json={"text": f"n{i}"}, headers=auth_headers("org-a"))
        assert answer.status_code == 201
    seen, cursor = [], None
    while True:
        url = "/v1/notes?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=auth_headers("org-a"))).json()
        seen.extend(n["text"] for n in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"n{i}" for i in range(7)]


async def test_oversized_body_is_refused_with_413(client):
    response = await client.post("/v1/notes", content=b'{"text": "' + b"x" * 10_000 + b'"}',
                                 headers={**auth_headers("org-a"), "content-type": "application/json"})
    _is_problem(response, 413)


async def test_correlation_id_is_echoed_and_generated(client):
    response = await client.get("/healthz", headers={"X-Correlation-ID": "abc-123"})
    assert response.headers["x-correlation-id"] == "abc-123"
    assert (await client.get("/healthz")).headers["x-correlation-id"]


async def test_health_ready_and_metrics(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "broker": True}
    await client.get("/v1/notes", headers=auth_headers("org-a"))
    metrics = (await client.get("/metrics")).text
    assert 'salesflow_http_requests_total{method="GET",route="/v1/notes",status="200"}' in metrics
    assert "salesflow_outbox_unsent" in metrics


async def test_text_postgres_cannot_store_is_refused_not_a_500(client):
    body = _is_problem(await client.post("/v1/notes", json={"text": "a\u0000b"}, headers=auth_headers("org-a")), 422)
    assert body["errors"][0]["field"] == "text"
    body = _is_problem(await client.post("/v1/notes", content=b'{"text": "\\ud800"}', headers={
        **auth_headers("org-a"), "content-type": "application/json"}), 422)
    assert body["errors"][0]["field"] == "text"
    _is_problem(await client.get("/v1/notes/a%00b", headers=auth_headers("org-a")), 404)
    _is_problem(await client.get("/v1/notes?cursor=a%00", headers=auth_headers("org-a")), 422)


async def test_a_database_outage_answers_503_problem_and_the_retry_succeeds_once(client, database_url):
    headers = auth_headers("org-a", **{"Idempotency-Key": "outage-1"})
    await refuse_connections(database_url, refuse=True)
    try:
        body = _is_problem(await client.post("/v1/notes", json={"text": "during"}, headers=headers), 503)
        assert "retry" in body["detail"].lower()
        response = await client.get("/v1/notes", headers=auth_headers("org-a"))
        assert response.status_code == 503 and response.headers["retry-after"]
    finally:
        await refuse_connections(database_url, refuse=False)
    # Back: the same request (same key) is accepted once, as nothing of the first attempt was kept.
    created = await client.post("/v1/notes", json={"text": "during"}, headers=headers)
    assert created.status_code == 201, created.text
    again = await client.post("/v1/notes", json={"text": "during"}, headers=headers)
    assert again.json() == created.json()
    listed = (await client.get("/v1/notes", headers=auth_headers("org-a"))).json()["items"]
    assert [n["text"] for n in listed] == ["during"]


async def test_a_deadlock_answers_503_problem_to_the_request_it_rolled_back_and_keeps_nothing_of_it(client):
    made = [(await client.post("/v1/notes", json={"text": text}, headers=auth_headers("org-a"))).json()["id"]
            for text in ("one", "two")]
    # Opposite lock orders: PostgreSQL breaks the deadlock by rolling one transaction back.
    answers = await asyncio.gather(
        client.post(f"/v1/notes/{made[0]}/then/{made[1]}", headers=auth_headers("org-a")),
        client.post(f"/v1/notes/{made[1]}/then/{made[0]}", headers=auth_headers("org-a")))
    assert sorted(a.status_code for a in answers) == [200, 503], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 503)
    body = _is_problem(refused, 503)
    assert "nothing" in body["detail"] and "retry" in body["detail"].lower()
    assert refused.headers["retry-after"] == "1"
    # Only the request that went through changed the notes: each carries one mark, not two.
    listed = (await client.get("/v1/notes", headers=auth_headers("org-a"))).json()["items"]
    assert sorted(n["text"] for n in listed) == ["one!", "two!"]


async def test_a_deadlock_is_a_conflict_to_retry_not_an_outage_nor_a_bad_message(database_url):
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

    from salesflow_shared.bus import TransientFailure
    from salesflow_shared.consumer import _as_transient
    from salesflow_shared.db import is_database_outage, is_transaction_conflict

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS deadlock_pair (id int PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO deadlock_pair VALUES (1), (2) ON CONFLICT DO NOTHING"))

        async def lock(first: int, second: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(sa.text("SELECT id FROM deadlock_pair WHERE id = :i FOR UPDATE"), {"i": first})
                await asyncio.sleep(0.3)
                await conn.execute(sa.text("SELECT id FROM deadlock_pair WHERE id = :i FOR UPDATE"), {"i": second})

        outcomes = await asyncio.gather(lock(1, 2), lock(2, 1), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) == 1 and isinstance(failures[0], DBAPIError), outcomes
        assert is_transaction_conflict(failures[0]) and not is_database_outage(failures[0])
        # A handler that lost a deadlock is postponed like an outage, not counted towards parking its message.
        assert isinstance(_as_transient(failures[0]), TransientFailure)

        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as wrong_sql:
                await conn.execute(sa.text("SELECT no_such_column FROM pg_class"))
        assert not is_transaction_conflict(wrong_sql.value)
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS deadlock_pair"))
        await engine.dispose()


async def test_outage_errors_are_told_apart_from_statement_errors(database_url):
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

    from salesflow_shared.db import is_database_outage

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as wrong_sql:
                await conn.execute(sa.text("SELECT no_such_column FROM pg_class"))
        assert not is_database_outage(wrong_sql.value)

        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            await refuse_connections(database_url, refuse=True)  # cuts this open connection too
            with pytest.raises(DBAPIError) as cut:
                await conn.execute(sa.text("SELECT 1"))
        assert is_database_outage(cut.value), repr(cut.value)

        with pytest.raises(DBAPIError) as refused:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        assert is_database_outage(refused.value), repr(refused.value)
    finally:
        await refuse_connections(database_url, refuse=False)
        await engine.dispose()


async def test_the_service_recovers_all_its_connections_after_an_outage_under_load(client, database_url):
    """Requests in flight when the connections are cut must give their pooled connections back: after the
    outage every request is served again at once (a leaked connection would leave requests waiting)."""
    import asyncio
    import time

    stop = asyncio.Event()
    answers: list[tuple[float, int]] = []

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            response = await client.post("/v1/notes", json={"text": f"w{n}-{i}"}, headers=auth_headers("org-load"))
            answers.append((time.monotonic(), response.status_code))
            if response.status_code != 201:
                await asyncio.sleep(0.05)

    writers = [asyncio.create_task(writer(n)) for n in range(30)]
    try:
        await asyncio.sleep(1.0)
        await refuse_connections(database_url, refuse=True)
        await asyncio.sleep(3.0)
        await refuse_connections(database_url, refuse=False)
        restored = time.monotonic()
        await asyncio.sleep(5.0)
    finally:
        stop.set()
        await asyncio.gather(*writers)
        await refuse_connections(database_url, refuse=False)
    assert {status for _, status in answers} <= {201, 503}, {status for _, status in answers}
    assert any(status == 503 for _, status in answers), "the outage was not felt"
    late = [status for at, status in answers if at > restored + 2.0]
    assert late and set(late) == {201}, f"{len(late)} answers 2 s after the outage: {set(late)}"
    pool = client.app.state.context.database.engine.pool  # type: ignore[attr-defined]

    async def all_returned():  # (the outbox relay may hold one for a moment)
        assert pool.checkedout() == 0, pool.status()
    await eventually(all_returned, timeout=5)


async def test_json_nested_too_deep_or_too_big_is_a_422_naming_the_limit_not_a_500(client):
    headers = {**auth_headers("org-a"), "content-type": "application/json"}
    body = _is_problem(await client.post("/v1/notes", content=b"[" * 4000, headers=headers), 422)
    assert "max_json_depth = 32" in body["detail"] and body["errors"][0]["field"] == "body"
    # exactly at the limit is parsed (and then refused by the model as the wrong type, as before)
    nested = b"[" * 32 + b"]" * 32
    body = _is_problem(await client.post("/v1/notes", content=nested, headers=headers), 422)
    assert "max_json_depth" not in body["detail"]
    # brackets inside strings do not count
    created = await client.post("/v1/notes", json={"text": "[[[[" * 40}, headers=auth_headers("org-a"))
    assert created.status_code == 201
    # 4,096 bytes (the test app's cap) hold 2,048 values: this app's item limit is lowered to 1,000
    body = _is_problem(await client.post("/v1/notes", content=b"[" + b"0," * 1500 + b"0]", headers=headers), 422)
    assert "max_json_items = 1000" in body["detail"]
    # without a token the shape is still checked first (nothing else runs)
    body = _is_problem(await client.post("/v1/notes", content=b"{\"a\":" * 100 + b"1" + b"}" * 100,
                                         headers={"content-type": "application/json"}), 422)
    assert "max_json_depth" in body["detail"]


async def test_an_idempotency_key_belongs_to_its_caller_not_to_the_whole_org(client):
    alice = auth_headers("org-a", sub="alice", **{"Idempotency-Key": "k-shared"})
    bob = auth_headers("org-a", sub="bob", **{"Idempotency-Key": "k-shared"})
    first = await client.post("/v1/notes", json={"text": "alice's"}, headers=alice)
    assert first.status_code == 201
    # Bob sends Alice's key and body: a request of his own, not Alice's stored response
    second = await client.post("/v1/notes", json={"text": "alice's"}, headers=bob)
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers
    # Bob's key is now his own: another body under it is his conflict
    assert (await client.post("/v1/notes", json={"text": "bob's"}, headers=bob)).status_code == 409
    replay = await client.post("/v1/notes", json={"text": "alice's"}, headers=alice)
    assert replay.json() == first.json() and replay.headers["idempotent-replayed"] == "true"
    listed = await client.get("/v1/notes", headers=auth_headers("org-a"))
    assert len(listed.json()["items"]) == 2
