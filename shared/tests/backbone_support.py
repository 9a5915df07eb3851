"""A minimal service used to test the event backbone: one table of effects and configurable handlers."""
from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.bus import EventBus
from salesflow_shared.events import Envelope, EventData, LeadErasedV1
from salesflow_shared.infra_tables import add_infrastructure_tables
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.uow import UnitOfWork

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
effects = sa.Table(
    "effects", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),  # deliberately not unique: duplicates would show
    sa.Column("subject_id", sa.String(100), nullable=False),
)


class BackboneHarness:
    """Records effects; `failures[subject_id]` makes the handler fail that many times first."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()
        self.outages: Counter[str] = Counter()  # the database "unreachable" this many times first
        self.calls: Counter[str] = Counter()
        # The handler of a lead waits here until the test opens the gate (an event still being handled).
        self.gates: dict[str, asyncio.Event] = {}

    async def on_lead_erased(self, data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        assert isinstance(data, LeadErasedV1)
        self.calls[data.lead_id] += 1
        if data.lead_id in self.gates:
            await self.gates[data.lead_id].wait()
        if self.outages[data.lead_id] > 0:
            self.outages[data.lead_id] -= 1
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("database restarting"))
        if self.failures[data.lead_id] > 0:
            self.failures[data.lead_id] -= 1
            raise RuntimeError(f"induced failure for {data.lead_id}")
        await uow.session.execute(sa.insert(effects).values(event_id=str(envelope.id), subject_id=data.lead_id))


def harness_definition(settings: ServiceSettings, harness: BackboneHarness, name: str = "test",
                       batched: bool = False, max_batches_in_flight: int | None = None) -> ServiceDefinition:
    async def on_lead_erased(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        await harness.on_lead_erased(data, envelope, uow)

    return ServiceDefinition(name=name, settings=settings, routers=[], migrations_path=Path("unused"),
                             event_handlers={"LeadErased": [on_lead_erased]}, consume_in_batches=batched,
                             max_batches_in_flight=max_batches_in_flight)


async def start_context(definition: ServiceDefinition, bus: EventBus | None = None) -> ServiceContext:
    context = ServiceContext(definition, bus)
    async with context.database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await context.start()
    return context


async def publish_erased(context: ServiceContext, lead_id: str, org_id: str = "org-a") -> Envelope:
    async with context.uow() as uow:
        envelope = uow.publish(LeadErasedV1(lead_id=lead_id), org_id=org_id, subject_id=lead_id)
        await uow.commit()
    return envelope


async def effect_count(context: ServiceContext, subject_id: str | None = None) -> int:
    async with context.database.session() as session:
        query = sa.select(sa.func.count()).select_from(effects)
        if subject_id is not None:
            query = query.where(effects.c.subject_id == subject_id)
        return int((await session.execute(query)).scalar_one())
