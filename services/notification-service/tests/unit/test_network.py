"""Which addresses a webhook may reach: public ones only, IPv4 and IPv6, embedded IPv4 included."""
from __future__ import annotations

import ipaddress

import pytest

from notification_service.domain.network import refusal


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("::ffff:127.0.0.1", "127.0.0.1 is a loopback"),  # IPv4-mapped
    ("2002:a00:1::1", "10.0.0.1 is a private"),  # 6to4 around a private address
    ("64:ff9b::a9fe:a9fe", "169.254.169.254 is a link-local"),  # NAT64 to the metadata address
])
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str):
    why = refusal(ipaddress.ip_address(address))
    assert why is not None and reason in why


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001::200e"])
def test_public_addresses_pass(address: str):
    assert refusal(ipaddress.ip_address(address)) is None


def test_private_networks_are_off_limits_in_production_unless_allowed():
    from notification_service.config import Settings
    production = dict(environment="production", jwt_secret="x" * 40, database_url="postgresql://db/notification",
                      amqp_url="amqp://broker/")
    assert Settings(**production).webhooks_may_reach_private_networks is False
    assert Settings(**production, webhook_allow_private_networks=True).webhooks_may_reach_private_networks is True
    assert Settings(environment="development").webhooks_may_reach_private_networks is True
    assert Settings(environment="test", webhook_allow_private_networks=False).webhooks_may_reach_private_networks \
        is False
