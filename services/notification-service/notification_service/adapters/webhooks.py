"""Outbound webhooks (e.g. a chat incoming-webhook URL), signed like docs/architecture.md's form signatures.

Unless private networks are allowed (development and test), a webhook only goes to public addresses
(domain/network.py): the URL's host is resolved and every address checked when the subscription is saved and
again before each attempt, and the request then goes to the address just checked (Host header and TLS name
kept), so a name that resolves differently a moment later (DNS rebinding) cannot redirect it. Redirects are
never followed.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from salesflow_shared.signatures import SIGNATURE_HEADER, sign

from ..domain.network import IpAddress, refusal
from .errors import PermanentDeliveryError, TransientDeliveryError


class WebhookTargetRefused(Exception):
    """The URL leads (or may lead) to an address webhooks must not reach."""


async def checked_addresses(url: str) -> list[IpAddress]:
    """The addresses the URL's host has now, all public; raises WebhookTargetRefused, or OSError when the
    name does not resolve."""
    parsed = httpx.URL(url)
    if not parsed.host:
        raise WebhookTargetRefused("the URL has no host")
    try:
        addresses: list[IpAddress] = [ipaddress.ip_address(parsed.host)]
    except ValueError:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        if (why := refusal(address)) is not None:
            raise WebhookTargetRefused(why if str(address) == parsed.host else f"{parsed.host} resolves to {why}")
    if not addresses:
        raise WebhookTargetRefused(f"{parsed.host} has no address")
    return addresses


class WebhookSender:
    def __init__(self, timeout_s: float = 10.0, *, allow_private_networks: bool = False) -> None:
        self._allow_private_networks = allow_private_networks
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                       headers={"User-Agent": "salesflow-notification/0.1"})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, url: str, secret: str, body: bytes, *, timestamp: int, delivery_id: str) -> int:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, timestamp),
                   "Salesflow-Delivery-Id": delivery_id}
        target, extensions = httpx.URL(url), {}
        if not self._allow_private_networks:
            try:
                address = str((await checked_addresses(url))[0])
            except WebhookTargetRefused as exc:
                raise PermanentDeliveryError(f"webhook URL refused: {exc}") from exc
            except OSError as exc:  # the name may resolve again later
                raise TransientDeliveryError(f"webhook host does not resolve: {exc}") from exc
            if target.host != address:  # a name: connect to the address just checked, not to a new lookup
                headers["Host"] = target.netloc.decode("ascii")
                extensions = {"sni_hostname": target.host}
                target = target.copy_with(host=address)
        try:
            response = await self._http.post(target, content=body, headers=headers, extensions=extensions)
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response.status_code
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise TransientDeliveryError(f"HTTP {response.status_code}")
        raise PermanentDeliveryError(f"HTTP {response.status_code}: {response.text[:300]}")
