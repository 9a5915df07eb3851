"""Which network addresses an outbound webhook may reach: public ones only (no SSRF into our own network).

Pure: an address in, the reason it is refused (or None) out. Addresses that embed an IPv4 address
(IPv4-mapped, 6to4, Teredo, NAT64) are judged by the IPv4 address they lead to as well.
"""
from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address

IpAddress = IPv4Address | IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _own_refusal(address: IpAddress) -> str | None:
    for flag, what in (("is_unspecified", "an unspecified address"), ("is_loopback", "a loopback address"),
                       ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
                       ("is_reserved", "a reserved address"), ("is_private", "a private address")):
        if getattr(address, flag):
            return what
    if not address.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), 192.0.0.0/24
        return "not globally routable"
    return None


def embedded_ipv4(address: IpAddress) -> list[IPv4Address]:
    if not isinstance(address, IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in NAT64:
        found.append(IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def refusal(address: IpAddress) -> str | None:
    """Why a webhook may not go to `address` ("loopback", "private", ...), or None for a public address."""
    for candidate in (*embedded_ipv4(address), address):
        what = _own_refusal(candidate)
        if what is not None:
            return f"{candidate} is {what}"
    return None
