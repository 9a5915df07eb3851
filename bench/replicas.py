"""Saturation throughput of assignment-service with 1 replica and with 3 (real processes, one PostgreSQL
database, one RabbitMQ): a burst of N LeadCreated is published at once and the time until every lead's
LeadAssigned has been published is measured (each lead: inbox, projection, routing decision, rotation
update, two outbox rows, relay publish with confirms). Baseline: the 1-replica run. The leads are spread over
several organizations: a strict round robin locks its team's rotation row, so one team's assignments are
serialised whatever the number of replicas (--orgs 1 shows that bound).

This machine has 2 cores shared by every replica, PostgreSQL and RabbitMQ, so the ratio shows how well the
replicas cooperate (no lock convoys, no duplicate work), not how a cluster of real nodes would scale.

    .venv/bin/python bench/replicas.py [--leads 600] [--replicas 1 3]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from replicas_support import Observer, ReplicaSet, assignments_by_lead, configure_round_robin, lead_created  # noqa: E402

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace  # noqa: E402


async def burst(replicas: ReplicaSet, leads: int, orgs: list[str], timeout: float) -> float:
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    async with Observer(AMQP_URL, replicas.namespace, ["LeadAssigned"]) as observer:
        envelopes = [lead_created(f"{prefix}{i}", orgs[i % len(orgs)]) for i in range(leads)]
        started = time.perf_counter()
        await observer.publish(envelopes)
        deadline = started + timeout
        while len({e.subject_id for e in observer.of_type("LeadAssigned", prefix)}) < leads:
            if time.perf_counter() > deadline:
                raise SystemExit(f"only {len(observer.of_type('LeadAssigned', prefix))}/{leads} assigned "
                                 f"after {timeout:.0f} s")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        duplicates = observer.duplicates("LeadAssigned", prefix)
    decisions: Counter[str] = Counter()
    for org in orgs:
        decisions += assignments_by_lead(replicas.of("assignment-service")[0].url, prefix, org)
    if duplicates or len(decisions) != leads or set(decisions.values()) != {1}:
        raise SystemExit(f"not exactly once: {len(duplicates)} duplicate events, {len(decisions)} leads decided")
    return elapsed


def run(count: int, leads: int, warmup: int, org_count: int, timeout: float) -> float:
    suffix = uuid.uuid4().hex[:8]
    database = f"{POSTGRES_URL}/sfbench_assignment_{suffix}"
    namespace = f"bench{suffix}."
    asyncio.run(ensure_postgres_database(database))
    replicas = ReplicaSet(Path(tempfile.mkdtemp(prefix="sf-replicas-")), {"assignment-service": database},
                          AMQP_URL, namespace)
    try:
        replicas.migrate("assignment-service")
        replicas.start("assignment-service", count)
        orgs = [f"org-bench-{i}" for i in range(org_count)]
        for org in orgs:
            configure_round_robin(replicas.of("assignment-service")[0].url, ["ann", "bob", "cid", "dee"], org)
        asyncio.run(burst(replicas, warmup, orgs, timeout))  # connections and caches warm
        return asyncio.run(burst(replicas, leads, orgs, timeout))
    finally:
        replicas.stop_all()
        asyncio.run(drop_postgres_database(database))
        asyncio.run(delete_namespace(AMQP_URL, namespace))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--orgs", type=int, default=8,
                        help="tenants the leads are spread over (a round robin serialises one team's leads)")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    results = {}
    for count in args.replicas:
        elapsed = run(count, args.leads, args.warmup, args.orgs, args.timeout)
        results[count] = args.leads / elapsed
        print(f"assignment-service x{count}: {args.leads} leads in {elapsed:.2f} s = {results[count]:.0f} leads/s",
              flush=True)
    base = results[args.replicas[0]]
    for count in args.replicas[1:]:
        print(f"ratio x{count} / x{args.replicas[0]} (baseline): {results[count] / base:.2f} "
              f"(2 cores shared by all replicas, PostgreSQL and RabbitMQ)")


if __name__ == "__main__":
    main()
