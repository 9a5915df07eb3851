"""Several replicas of a service as real processes on one PostgreSQL database and one RabbitMQ namespace,
a recording SMTP server, and an observer queue on the namespaced exchange. Used by tests/e2e/test_replicas.py
and bench/replicas.py."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from system_harness import free_port, wait_ready

from salesflow_shared import testing
from salesflow_shared.events import ContactData, Envelope, LeadCreatedV1, LeadSnapshot, make_event
from salesflow_shared.runner import find_service
from salesflow_shared.testing import auth_headers

ORG = "org-replicas"
ADMIN = auth_headers(ORG, "admin", "admin-1")


@dataclass
class Replica:
    service: str
    index: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name: str, **labels: str) -> float:
        """One sample of this replica's Prometheus metrics (0 when absent)."""
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@dataclass
class ReplicaSet:
    """Replicas of services sharing one database per service; migrations run once first, like the Job."""

    workdir: Path
    database_urls: dict[str, str]
    amqp_url: str
    namespace: str
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)

    def env(self, service: str) -> dict[str, str]:
        return {**os.environ, "SALESFLOW_ENVIRONMENT": "test", "SALESFLOW_DATABASE_URL": self.database_urls[service],
                "SALESFLOW_AMQP_URL": self.amqp_url, "SALESFLOW_BUS_NAMESPACE": self.namespace,
                "SALESFLOW_MIGRATE_ON_START": "false",
                # A LeadAssigned handled before its LeadCreated (another replica holds it) waits through these.
                "SALESFLOW_RETRY_DELAYS_MS": "[200, 1000, 5000, 30000]",
                "SALESFLOW_OUTBOX_POLL_INTERVAL_S": "0.5", "SALESFLOW_WORKER_IDLE_POLL_S": "1",
                "SALESFLOW_LOG_LEVEL": "WARNING",
                # Up to 2 × pool connections per process: five processes stay well under PostgreSQL's 100,
                # which other tests on this machine share (deploy/README.md: pool × pods < max_connections).
                "SALESFLOW_DB_POOL_SIZE": "3",
                **self.extra_env.get(service, {})}

    def migrate(self, service: str) -> None:
        subprocess.run([sys.executable, "-m", "salesflow_shared.cli", "migrate", service], env=self.env(service),
                       check=True, capture_output=True, timeout=120)

    def start(self, service: str, count: int, timeout: float = 90) -> list[Replica]:
        entry = find_service(service)
        started = []
        for _ in range(count):
            index = sum(1 for r in self.replicas if r.service == service)
            port = free_port()
            log_path = self.workdir / f"{service}-{index}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", f"{entry.package}.entrypoints.http:create_app",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                 "--timeout-graceful-shutdown", "25"],
                env=self.env(service), stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                preexec_fn=testing.dies_with_test_run)
            replica = Replica(service, index, port, log_path, process)
            self.replicas.append(replica)
            started.append(replica)
        for replica in started:
            self.wait_ready(replica, timeout)
        return started

    @staticmethod
    def wait_ready(replica: Replica, timeout: float) -> None:
        wait_ready(replica.process, replica.url, timeout, f"{replica.service}-{replica.index}", replica.log_path)

    def of(self, service: str) -> list[Replica]:
        return [r for r in self.replicas if r.service == service]

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                replica.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


class SmtpSink(testing.SmtpSink):
    """The shared SMTP server, keeping of each message what the replica tests compare: its Message-ID, the
    envelope's recipients and the subject."""

    def keep(self, message: Any, envelope: Any) -> None:
        self.messages.append({"message_id": message.get("Message-ID"), "to": list(envelope.rcpt_tos),
                              "subject": message.get("Subject")})


class Observer:
    """Binds its own queue in the namespace and records every message of the given types, duplicates included."""

    def __init__(self, amqp_url: str, namespace: str, event_types: list[str]) -> None:
        self.amqp_url, self.namespace, self.event_types = amqp_url, namespace, event_types
        self.received: list[Envelope] = []

    async def __aenter__(self) -> Observer:
        self.connection = await aio_pika.connect(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.declare_exchange(f"{self.namespace}salesflow.events",
                                                            aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await self.channel.declare_queue(f"{self.namespace}observer.{uuid.uuid4().hex[:6]}",
                                                 durable=False, auto_delete=True)
        for event_type in self.event_types:
            await queue.bind(self.exchange, routing_key=event_type)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                self.received.append(Envelope.from_json(message.body))

        await queue.consume(on_message)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.connection.close()

    async def publish(self, envelopes: list[Envelope]) -> None:
        await asyncio.gather(*(self.exchange.publish(aio_pika.Message(
            e.to_json(), content_type="application/json", message_id=str(e.id), type=e.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=e.type) for e in envelopes))

    def of_type(self, event_type: str, prefix: str = "") -> list[Envelope]:
        return [e for e in self.received if e.type == event_type and e.subject_id.startswith(prefix)]

    def duplicates(self, event_type: str, prefix: str = "") -> list[str]:
        """Event ids received more than once: a relay published the same outbox row twice."""
        counts = Counter(str(e.id) for e in self.of_type(event_type, prefix))
        return [event_id for event_id, n in counts.items() if n > 1]


def lead_created(lead_id: str, org: str = ORG) -> Envelope:
    return make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id=lead_id, contact=ContactData(
        email=f"{lead_id}@prospect.example", first_name="Pat"), country="DE", product_line="crm")),
                      org_id=org, subject_id=lead_id, subject_version=1, producer="lead-service")


def configure_round_robin(assignment_url: str, reps: list[str], org: str = ORG) -> None:
    """Reps with email addresses, one team, and a rule set that round-robins every lead over the team."""
    with httpx.Client(base_url=assignment_url, headers=auth_headers(org, "admin", "admin-1"), timeout=10) as client:
        for rep in reps:
            response = client.post("/v1/reps", json={"user_id": rep, "name": f"Rep {rep}",
                                                      "email": f"{rep}@salesflow.example"})
            assert response.status_code == 201, response.text
        team = client.post("/v1/teams", json={"name": "inside sales", "member_ids": reps})
        assert team.status_code == 201, team.text
        rules = client.put("/v1/routing-rules", json={"rules": [
            {"name": "everyone", "fallback": True, "pipeline_id": "p-default",
             "owner": {"strategy": "round_robin", "team_id": team.json()["id"]}}]},
            headers={"If-Match": '"0"'})  # the org's first rule set
        assert rules.status_code == 200, rules.text


def assignments_by_lead(assignment_url: str, prefix: str, org: str = ORG) -> Counter[str]:
    """How many stored assignment decisions each lead has (GET /v1/assignments, every page)."""
    counts: Counter[str] = Counter()
    cursor = None
    with httpx.Client(base_url=assignment_url, headers=auth_headers(org, "admin", "admin-1"), timeout=10) as client:
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/assignments", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            counts.update(item["lead_id"] for item in body["items"] if item["lead_id"].startswith(prefix))
            cursor = body.get("next_cursor")
            if not cursor:
                return counts
