"""Enrichment by a (local, fake) HTTP provider: later LeadUpdated, timeouts and the circuit breaker."""
from __future__ import annotations

import time

from lead_testkit import a_lead, admin, fake_provider, start_lead_app
from salesflow_shared.testing import eventually


async def test_provider_data_lands_later_as_lead_updated(database_url, amqp_url, bus_namespace):
    async with fake_provider() as provider:
        async with start_lead_app(database_url, amqp_url, bus_namespace, enrichment_url=provider.url,
                                  enrichment_poll_interval_s=0.05) as app:
            c = app.client
            lead = (await c.post("/v1/leads", json=a_lead("ceo@spacely.com", country=None), headers=admin())).json()
            assert lead["enrichment_status"] == "pending"
            free = (await c.post("/v1/leads", json=a_lead("joe@gmail.com"), headers=admin())).json()
            assert free["enrichment_status"] == "none"  # nothing to ask a provider about a free-mail address

            async def enriched():
                got = (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()
                assert got["enrichment_status"] == "done"
                return got
            got = await eventually(enriched)
            assert provider.requests == [{"email": "ceo@spacely.com", "domain": "spacely.com"}]
            assert got["company"]["name"] == "Acme"  # what the person entered wins
            assert got["company"]["size"] == "201-500" and got["company"]["industry"] == "Aerospace"
            assert got["country"] == "US" and got["region"] == "California" and got["version"] == 2
            [updated] = await app.outbox("LeadUpdated")
            assert updated["data"]["cause"] == "enrichment" and updated["subject_version"] == 2
            assert set(updated["data"]["changed"]) == {"company.industry", "company.size", "country", "region"}


async def test_a_failing_provider_never_blocks_intake_and_trips_the_breaker(database_url, amqp_url, bus_namespace):
    async with fake_provider() as provider:
        provider.mode = "slow"
        async with start_lead_app(database_url, amqp_url, bus_namespace, enrichment_url=provider.url,
                                  enrichment_poll_interval_s=0.05, enrichment_timeout_s=0.2,
                                  enrichment_failure_threshold=2, enrichment_reset_after_s=60) as app:
            c = app.client
            started = time.monotonic()
            ids = []
            for i in range(4):
                r = await c.post("/v1/leads", json=a_lead(f"p{i}@firm{i}.com"), headers=admin())
                assert r.status_code == 201
                ids.append(r.json()["id"])
            assert time.monotonic() - started < 1.5  # no request waited for the provider
            client = app.context.extras["enrichment_client"]

            async def tripped():
                assert client.breaker.state == "open"
            await eventually(tripped)
            calls = client.calls
            assert calls == 2  # two timeouts opened the circuit; the other leads were not sent

            async def all_deferred():
                for lead_id in ids:
                    got = (await c.get(f"/v1/leads/{lead_id}", headers=admin())).json()
                    assert got["enrichment_status"] == "pending"
            await eventually(all_deferred)
            assert client.calls == calls
            assert await app.outbox("LeadUpdated") == []
