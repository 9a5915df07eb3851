"""The visitor's address behind proxies, for per-IP rate limits (SALESFLOW_TRUSTED_PROXIES).

Each proxy appends the address it received the request from to `X-Forwarded-For`, so only the entries
appended by proxies we trust are facts; whatever stands left of them came from the client and may be forged.
The visitor is therefore the right-most entry that is not a trusted proxy, walking from the peer leftwards,
and only when the peer itself is a trusted proxy (otherwise the header is ignored: the peer is the visitor).
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

MAX_ADDRESS_LENGTH = 64
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def parse_trusted_proxies(setting: str) -> tuple[Network, ...]:
    """`"127.0.0.1, 10.0.0.0/8"` → networks (a bare address is a /32 or /128); bad entries raise ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip())


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def visitor_address(peer: str | None, forwarded_for: list[str], trusted: tuple[Network, ...]) -> str | None:
    """The right-most address of the chain peer ← X-Forwarded-For that is not a trusted proxy."""
    if peer is None or not _is_trusted(peer, trusted):
        return peer
    entries = [e.strip() for header in forwarded_for for e in header.split(",") if e.strip()]
    for entry in reversed(entries):
        if not _is_trusted(entry, trusted):
            return entry[:MAX_ADDRESS_LENGTH]
    # Every hop is a trusted proxy: the left-most one is as close to the visitor as we can tell.
    return (entries[0] if entries else peer)[:MAX_ADDRESS_LENGTH]


def client_ip(request: Request, trusted_proxies: str) -> str | None:
    peer = request.client.host if request.client else None
    return visitor_address(peer, request.headers.getlist("x-forwarded-for"), parse_trusted_proxies(trusted_proxies))
