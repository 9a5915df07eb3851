"""Enrichment by a (local, fake) HTTP provider: later LeadUpdated, timeouts and the circuit breaker."""
from __future__ import annotations

import asyncio
import json
import time

import sqlalchemy as sa
from lead_testkit import a_lead, admin, fake_provider, rep, start_lead_app

from lead_service.adapters.orm import leads
from lead_service.service_layer.enrichment import enrich_due
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


async def _lead(c, lead_id):
    return (await c.get(f"/v1/leads/{lead_id}", headers=admin())).json()


async def test_a_nul_byte_or_junk_in_an_answer_is_cleaned_and_never_stops_the_other_leads(database_url, amqp_url,
                                                                                            bus_namespace):
    async with fake_provider() as provider:
        # control characters (a NUL included) inside values, an oversized field, a bad country, unknown fields
        provider.answers["nul@nulcorp.com"] = json.dumps({
            "company": {"industry": "Aero\u0000space", "size": "9" * 5000, "name": "Ignored", "ceo": "x"},
            "location": {"country": "USA", "region": "Cal\u0007ifornia\r\n"},
            "tracking": {"pixel": "https://evil.example"}}).encode()
        async with start_lead_app(database_url, amqp_url, bus_namespace, enrichment_url=provider.url,
                                  enrichment_poll_interval_s=3600) as app:  # the test runs the worker itself
            c = app.client
            bad = (await c.post("/v1/leads", json=a_lead("nul@nulcorp.com", country=None), headers=admin())).json()
            good = (await c.post("/v1/leads", json=a_lead("ok@okcorp.com", country=None), headers=admin())).json()
            client = app.context.extras["enrichment_client"]
            assert await enrich_due(app.context, client) == 2  # both leads claimed in one batch
            got_bad, got_good = await _lead(c, bad["id"]), await _lead(c, good["id"])
            assert got_bad["enrichment_status"] == "done" and got_good["enrichment_status"] == "done"
            assert got_bad["company"]["industry"] == "Aerospace" and got_bad["company"]["size"] == "9" * 50
            assert got_bad["company"]["name"] == "Acme"  # what the person entered wins
            assert got_bad["country"] is None and got_bad["region"] == "California"
            assert got_bad["enrichment"]["provider"] == {"company": {"industry": "Aerospace", "size": "9" * 50,
                                                                     "name": "Ignored"},
                                                         "location": {"region": "California"}}
            assert got_good["country"] == "US" and got_good["company"]["industry"] == "Aerospace"


async def test_a_600_kb_answer_is_refused_counted_and_rerun_by_an_admin_after_the_outage(database_url, amqp_url,
                                                                                         bus_namespace):
    async with fake_provider() as provider:
        provider.answers["big@bigcorp.com"] = json.dumps(
            {"company": {"industry": "x" * 600_000}, "location": {"region": "y" * 10_000}}).encode()
        async with start_lead_app(database_url, amqp_url, bus_namespace, enrichment_url=provider.url,
                                  enrichment_poll_interval_s=3600, enrichment_max_attempts=2) as app:
            c = app.client
            lead = (await c.post("/v1/leads", json=a_lead("big@bigcorp.com", country=None), headers=admin())).json()
            client = app.context.extras["enrichment_client"]
            for _ in range(4):  # retries are due at once: push the clock past each retry delay
                await enrich_due(app.context, client)
                async with app.context.uow() as uow:
                    await uow.session.execute(sa.update(leads).where(leads.c.id == lead["id"])
                                              .values(enrichment_next_at=None))
                    await uow.commit()
            got = await _lead(c, lead["id"])
            assert len(provider.requests) == 2  # every attempt counted: two, then it gave up
            assert got["enrichment_status"] == "failed" and got["company"]["industry"] is None
            r = await c.get(f"/v1/leads/{lead['id']}", headers=admin())
            assert len(r.content) < 5_000
            assert await app.outbox("LeadUpdated") == []

            # the outage is over: an admin runs enrichment again for what failed in its window
            del provider.answers["big@bigcorp.com"]
            retry = {"failed_from": "2000-01-01T00:00:00Z"}
            assert (await c.post("/v1/leads/enrichment/retry", json=retry,
                                 headers=rep())).status_code == 403
            bad = await c.post("/v1/leads/enrichment/retry", json={"failed_from": "2026-01-01T00:00:00"},
                               headers=admin())
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "failed_from"
            assert (await c.post("/v1/leads/enrichment/retry", json={"failed_to": "2000-01-01T00:00:00Z"},
                                 headers=admin())).json() == {"queued": 0}
            too_long = await c.post("/v1/leads/enrichment/retry", json={"lead_ids": ["x" * 37]}, headers=admin())
            assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"].startswith("lead_ids")
            assert (await c.post("/v1/leads/enrichment/retry", headers=admin())).json() == {"queued": 1}  # all failed
            await enrich_due(app.context, client)
            got = await _lead(c, lead["id"])
            assert got["enrichment_status"] == "done" and got["company"]["industry"] == "Aerospace"
            assert len(provider.requests) == 3


async def test_an_answer_arriving_after_the_erasure_fills_nothing(database_url, amqp_url, bus_namespace):
    async with fake_provider() as provider:
        provider.delay_s = 1.0
        async with start_lead_app(database_url, amqp_url, bus_namespace, enrichment_url=provider.url,
                                  enrichment_poll_interval_s=0.05, enrichment_timeout_s=5) as app:
            c = app.client
            lead = (await c.post("/v1/leads", json=a_lead("gone@gonecorp.com", country=None),
                                 headers=admin())).json()

            async def asked():
                assert provider.requests
            await eventually(asked)  # the provider is answering now
            assert (await c.post(f"/v1/leads/{lead['id']}/erase", headers=admin())).status_code == 200
            await asyncio.sleep(1.5)  # the answer arrived and was handled
            got = await _lead(c, lead["id"])
            assert got["country"] is None and got["region"] is None and got["company"]["industry"] is None
            assert got["enrichment"] == {} and got["enrichment_status"] == "none"
            assert await app.outbox("LeadUpdated") == []
