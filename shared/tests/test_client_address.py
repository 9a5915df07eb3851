"""The visitor behind proxies: the right-most X-Forwarded-For entry that is not a trusted proxy."""
import pytest
from pydantic import ValidationError

from salesflow_shared.client_address import parse_trusted_proxies, visitor_address
from salesflow_shared.settings import ServiceSettings

GATEWAY = parse_trusted_proxies("172.28.0.10")
TWO_HOPS = parse_trusted_proxies("10.0.0.0/8, 127.0.0.1")


def test_the_entry_the_trusted_gateway_appended_wins_over_what_the_client_wrote():
    # the client forged "1.2.3.4"; the gateway appended the address it saw
    assert visitor_address("172.28.0.10", ["1.2.3.4, 203.0.113.7"], GATEWAY) == "203.0.113.7"
    assert visitor_address("172.28.0.10", ["1.2.3.4", "203.0.113.7"], GATEWAY) == "203.0.113.7"  # two headers
    assert visitor_address("172.28.0.10", ["203.0.113.7"], GATEWAY) == "203.0.113.7"


def test_trusted_hops_are_skipped_from_the_right():
    chain = ["6.6.6.6, 198.51.100.9, 10.1.2.3"]  # forged, visitor, an inner proxy
    assert visitor_address("127.0.0.1", chain, TWO_HOPS) == "198.51.100.9"
    assert visitor_address("127.0.0.1", ["10.0.0.5, 10.0.0.6"], TWO_HOPS) == "10.0.0.5"


def test_an_untrusted_peer_is_the_visitor_whatever_it_claims():
    assert visitor_address("198.51.100.9", ["1.2.3.4"], GATEWAY) == "198.51.100.9"
    assert visitor_address("172.28.0.10", [], GATEWAY) == "172.28.0.10"  # the gateway itself, no header


def test_trusted_proxies_must_be_addresses_or_networks():
    assert ServiceSettings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == "10.0.0.0/8, ::1"
    with pytest.raises(ValidationError):
        ServiceSettings(trusted_proxies="gateway")
