"""The consumer applies each delivered batch in the transaction that logs it (the projector in this process):
nothing is left waiting, the read models equal a rebuild from the log whatever the batches, their order and
redeliveries; a batch that finds another projector busy leaves its events, and they are applied later."""
from __future__ import annotations

import sqlalchemy as sa
from metrics_testkit import build_history, delivery_order, dump_read_models, other_org_history

from metrics_service.adapters.read_models import PROJECTOR_LOCK
from metrics_service.service_layer.projector import pending, rebuild_read_models
from salesflow_shared.testing import as_deliveries, eventually


async def deliver_in_batches(app, envelopes, size: int) -> None:
    dispatcher = app.state.context.dispatcher
    for i in range(0, len(envelopes), size):
        await dispatcher.handle_batch(as_deliveries(envelopes[i:i + size]))


async def test_delivered_batches_are_applied_as_they_are_logged_and_equal_a_rebuild(metrics_app):
    app, _ = metrics_app
    events = build_history().events + other_org_history().events
    await deliver_in_batches(app, delivery_order(events, seed=5), size=7)  # shuffled, with duplicates
    database = app.state.context.database
    assert await pending(database) == 0  # applied by the consumer's own transactions
    incremental = await dump_read_models(app)
    await rebuild_read_models(database)
    assert await dump_read_models(app) == incremental


async def test_a_batch_that_finds_the_projector_busy_leaves_its_events_for_later(metrics_app, database_url):
    app, _ = metrics_app
    if not database_url.startswith("postgresql"):
        return
    events = delivery_order(build_history().events, seed=8)
    database = app.state.context.database
    async with database.session() as busy:  # another projector's turn, held until this transaction ends
        await busy.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": PROJECTOR_LOCK})
        await deliver_in_batches(app, events[:20], size=5)
        assert await pending(database) == len({e.id for e in events[:20]})
        await busy.rollback()

    async def none_waiting() -> None:
        assert await pending(database) == 0
    await eventually(none_waiting, timeout=10)  # the worker, told by the batches that left them
    await deliver_in_batches(app, events[20:], size=5)
    assert await pending(database) == 0
    incremental = await dump_read_models(app)
    await rebuild_read_models(database)
    assert await dump_read_models(app) == incremental
