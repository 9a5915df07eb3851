"""Replicas that cooperate: 3 assignment-service and 2 notification-service processes on one PostgreSQL
database each and one RabbitMQ. Consumers compete for LeadCreated/LeadAssigned, the outbox relays share the
outbox (FOR UPDATE SKIP LOCKED), the delivery workers share the deliveries; every lead is assigned once,
every LeadAssigned is published once, every rep email is sent once, also when replicas get SIGTERM mid-load.

LeadCreated is published straight to the exchange (lead-service's part), so only these two services run."""
from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator

import pytest
from replicas_support import Observer, ReplicaSet, SmtpSink, assignments_by_lead, configure_round_robin, lead_created

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, eventually

REPS = ["ann", "bob", "cid", "dee"]
OBSERVED = ["LeadAssigned"]


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[tuple[ReplicaSet, SmtpSink]]:
    suffix = uuid.uuid4().hex[:8]
    databases = {name: f"{POSTGRES_URL}/sfrep_{name.split('-')[0]}_{suffix}"
                 for name in ("assignment-service", "notification-service")}
    namespace = f"rep{suffix}."
    with SmtpSink() as smtp:
        replicas = ReplicaSet(tmp_path_factory.mktemp("replicas"), databases, AMQP_URL, namespace, extra_env={
            "notification-service": {"SALESFLOW_SMTP_HOST": "127.0.0.1", "SALESFLOW_SMTP_PORT": str(smtp.port),
                                     "SALESFLOW_SCHEDULER_POLL_INTERVAL_S": "0.2",
                                     # Deliveries claimed by a replica that stops are retried by another one
                                     # when the claim's lease runs out (120 s by default).
                                     "SALESFLOW_DELIVERY_LEASE_S": "15"}})
        try:
            for service, url in databases.items():
                asyncio.run(ensure_postgres_database(url))
                replicas.migrate(service)
            replicas.start("assignment-service", 3)
            replicas.start("notification-service", 2)
            configure_round_robin(replicas.of("assignment-service")[0].url, REPS)
            yield replicas, smtp
        finally:
            replicas.stop_all()
            for url in databases.values():
                asyncio.run(drop_postgres_database(url))
            asyncio.run(delete_namespace(AMQP_URL, namespace))


def _handled(replica, event_type: str) -> float:
    return replica.metric("salesflow_messages_handled_total", event_type=event_type, outcome="ok")


async def test_replicas_compete_and_do_each_thing_once(system):
    replicas, smtp = system
    prefix, count = "comp-", 120
    before = {id(r): _handled(r, "LeadCreated") for r in replicas.of("assignment-service")}
    emails_before = len(smtp.messages)
    async with Observer(AMQP_URL, replicas.namespace, OBSERVED) as observer:
        await observer.publish([lead_created(f"{prefix}{i}") for i in range(count)])

        async def everyone_assigned_and_mailed():
            assert len({e.subject_id for e in observer.of_type("LeadAssigned", prefix)}) == count
            assert len(smtp.messages) - emails_before >= count
        await eventually(everyone_assigned_and_mailed, timeout=60)

    # Each assignment replica took a share of the LeadCreated messages, each notification replica too.
    shares = [_handled(r, "LeadCreated") - before[id(r)] for r in replicas.of("assignment-service")]
    assert all(share > 0 for share in shares) and sum(shares) == count, shares
    assert all(_handled(r, "LeadAssigned") > 0 for r in replicas.of("notification-service"))
    # Exactly once: one decision per lead, one LeadAssigned per lead (no outbox row published twice),
    # one email per lead (no delivery sent twice).
    decisions = assignments_by_lead(replicas.of("assignment-service")[1].url, prefix)
    assert len(decisions) == count and set(decisions.values()) == {1}
    assert observer.duplicates("LeadAssigned", prefix) == []
    assert len(observer.of_type("LeadAssigned", prefix)) == count
    new_emails = smtp.messages[emails_before:]
    assert len(new_emails) == count
    assert len({m["message_id"] for m in new_emails}) == count
    assert {m["to"][0] for m in new_emails} == {f"{rep}@salesflow.example" for rep in REPS}
    # Every message names its lead (the LeadAssigned handled before its LeadCreated waited for it).
    assert {m["subject"] for m in new_emails} == {"New lead assigned to you: Pat"}


async def test_sigterm_during_load_loses_and_repeats_nothing(system):
    replicas, smtp = system
    prefix, count = "term-", 240
    emails_before = len(smtp.messages)
    victim_assignment = replicas.of("assignment-service")[0]
    victim_notification = replicas.of("notification-service")[0]
    async with Observer(AMQP_URL, replicas.namespace, OBSERVED) as observer:
        await observer.publish([lead_created(f"{prefix}{i}") for i in range(count)])

        async def under_way():
            assert len(observer.of_type("LeadAssigned", prefix)) >= 20
        await eventually(under_way, timeout=30)
        assert len({e.subject_id for e in observer.of_type("LeadAssigned", prefix)}) < count, "load ended too soon"
        victim_assignment.process.send_signal(signal.SIGTERM)
        victim_notification.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        codes = await asyncio.gather(loop.run_in_executor(None, victim_assignment.process.wait, 40),
                                     loop.run_in_executor(None, victim_notification.process.wait, 40))
        # uvicorn finishes its graceful shutdown, then re-raises the SIGTERM it caught (exit status -15).
        assert set(codes) <= {0, -signal.SIGTERM}, codes
        for victim in (victim_assignment, victim_notification):
            assert "Traceback" not in victim.log_path.read_text(), victim.log_path.read_text()[-3000:]

        async def everyone_assigned_and_mailed():
            assert len({e.subject_id for e in observer.of_type("LeadAssigned", prefix)}) == count
            assert len(smtp.messages) - emails_before >= count
        await eventually(everyone_assigned_and_mailed, timeout=120)

    decisions = assignments_by_lead(replicas.of("assignment-service")[1].url, prefix)
    assert len(decisions) == count and set(decisions.values()) == {1}, "a lead was lost or assigned twice"
    assert observer.duplicates("LeadAssigned", prefix) == []
    assert len(observer.of_type("LeadAssigned", prefix)) == count
    new_emails = smtp.messages[emails_before:]
    assert len(new_emails) == count and len({m["message_id"] for m in new_emails}) == count
