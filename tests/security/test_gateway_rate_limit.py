"""Per-IP rate limits behind the real nginx gateway (deploy/gateway): each visitor is counted on its own, and
a forged X-Forwarded-For does not buy a visitor a fresh limit.

Visitors are distinct loopback addresses (127.0.1.x: Linux routes all of 127/8 to lo); the gateway connects to
lead-service from 127.0.0.2, its own address, which lead-service trusts as docker-compose's gateway is trusted.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import yaml
from gateway_testkit import running_gateway
from lead_testkit import create_form, start_lead_app, submit_url

from salesflow_shared.testing import serving_over_http

GATEWAY_ADDRESS = "127.0.0.2"
ROOT = Path(__file__).resolve().parents[2]


async def post_from(address: str, url: str, data: dict, headers: dict | None = None) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        return (await client.post(url, data=data, headers=headers or {})).status_code


async def test_fifty_visitors_each_get_their_own_limit_and_forged_headers_do_not_help(database_url, amqp_url,
                                                                                        bus_namespace):
    async with start_lead_app(database_url, amqp_url, bus_namespace, ip_rate_limit_per_minute=2,
                              trusted_proxies=GATEWAY_ADDRESS) as lead:
        form = await create_form(lead.client, {"name": "Demo", "mapping": {"email": "contact.email"}})
        fields = {"sf_key": form["public_key"]}
        async with serving_over_http(lead.app) as port:
            with running_gateway(port, GATEWAY_ADDRESS) as gateway:
                url = gateway + submit_url(form)
                statuses = [await post_from(f"127.0.1.{n}", url, {**fields, "email": f"v{n}@corp{n}.example"})
                            for n in range(1, 51)]
                assert statuses == [201] * 50  # 50 visitors, one post each: nobody is limited
                # One visitor, a new forged X-Forwarded-For on every post: still one visitor (limit 2)
                forged = [await post_from("127.0.1.99", url, {**fields, "email": f"f{n}@bot.example"},
                                          {"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(3)]
                assert forged == [201, 201, 429]
                # ... and the gateway's own address never stands for a visitor
                assert await post_from("127.0.1.50", url, {**fields, "email": "again@corp50.example"}) == 201
                assert await post_from("127.0.1.50", url, {**fields, "email": "third@corp50.example"}) == 429


def test_the_deployments_trust_their_gateway():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gateway_address = compose["services"]["gateway"]["networks"]["default"]["ipv4_address"]
    for name in ("lead-service", "pipeline-service", "assignment-service", "notification-service",
                 "metrics-service"):
        assert compose["services"][name]["environment"]["SALESFLOW_TRUSTED_PROXIES"] == gateway_address
    base = (ROOT / "deploy/kubernetes/base/kustomization.yaml").read_text()
    assert "- SALESFLOW_TRUSTED_PROXIES=" in base
