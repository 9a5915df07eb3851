"""Outbound webhooks (e.g. a chat incoming-webhook URL), signed like DESIGN.md's form signatures."""
from __future__ import annotations

import httpx

from ..domain.signing import SIGNATURE_HEADER, sign_webhook
from .errors import PermanentDeliveryError, TransientDeliveryError


class WebhookSender:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                       headers={"User-Agent": "salesflow-notification/0.1"})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, url: str, secret: str, body: bytes, *, timestamp: int, delivery_id: str) -> int:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_webhook(secret, body, timestamp),
                   "Salesflow-Delivery-Id": delivery_id}
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response.status_code
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise TransientDeliveryError(f"HTTP {response.status_code}")
        raise PermanentDeliveryError(f"HTTP {response.status_code}: {response.text[:300]}")
