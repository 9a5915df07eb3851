"""A Mailchimp Marketing API v3 client with httpx.

The API key ends with its data centre (`xxxx-us6` → https://us6.api.mailchimp.com/3.0). Members are addressed by
the MD5 of the lowercased email. At most `max_connections` requests are in flight per API key (Mailchimp allows
10 simultaneous connections per key); 429, 5xx, timeouts and transport errors are retried with exponential
backoff (Retry-After honoured); any other 4xx (invalid address, compliance state...) is permanent.
"""
from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import Any

import httpx

from salesflow_shared.retries import RetryLater, retry_after_seconds, retrying_call

from .errors import PermanentDeliveryError, TransientDeliveryError


class MailchimpError(Exception):
    pass


def base_url_for(api_key: str, override: str = "") -> str:
    if override:
        return override.rstrip("/")
    _, sep, dc = api_key.rpartition("-")
    if not sep or not dc.isalnum():
        raise ValueError("a Mailchimp API key ends with its data centre, e.g. 'abc123-us6'")
    return f"https://{dc}.api.mailchimp.com/3.0"


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()  # noqa: S324 - Mailchimp's member id


class MailchimpClient:
    def __init__(self, api_key: str, *, base_url: str = "", max_connections: int = 10, timeout_s: float = 10.0,
                 max_retries: int = 4, backoff_s: float = 0.5, backoff_max_s: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls`: the TLS settings (certificate authorities) to use; by default loaded for this client alone."""
        self.base_url = base_url_for(api_key, base_url)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._slots = asyncio.Semaphore(max_connections)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, auth=("salesflow", api_key),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(timeout_s, pool=None), headers={"User-Agent": "salesflow-notification/0.1"},
            verify=tls if tls is not None else True)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        attempts = self.max_retries + 1
        try:
            async for attempt in retrying_call(attempts=attempts, base_s=self.backoff_s, max_s=self.backoff_max_s):
                with attempt:
                    return await self._attempt(method, path, json)
        except RetryLater as exc:
            raise TransientDeliveryError(f"gave up after {attempts} attempts: {exc}") from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, method: str, path: str, json: Any) -> dict[str, Any]:
        """One request; RetryLater for what may pass (rate limit, server error, network), permanent otherwise."""
        async with self._slots:  # the slot is held for the request only, not while waiting to retry
            try:
                response = await self._http.request(method, path, json=json)
            except httpx.TransportError as exc:  # timeouts, refused/reset connections
                raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response.json() if response.content else {}
        detail = _detail(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryLater(f"HTTP {response.status_code}: {detail}",
                             retry_after_seconds(response.headers.get("retry-after")))
        raise PermanentDeliveryError(f"HTTP {response.status_code}: {detail}")

    # ------------------------------------------------------------------ the calls notification-service makes
    async def upsert_member(self, list_id: str, email: str, *, status_if_new: str = "subscribed",
                            merge_fields: dict[str, Any] | None = None, status: str | None = None) -> dict[str, Any]:
        """`status` also sets an existing member's status (putting back a member we archived)."""
        body: dict[str, Any] = {"email_address": email, "status_if_new": status_if_new}
        if status:
            body["status"] = status
        if merge_fields:
            body["merge_fields"] = merge_fields
        return await self.request("PUT", f"/lists/{list_id}/members/{subscriber_hash(email)}", body)

    async def set_tags(self, list_id: str, member_hash: str, tags: list[str], active: bool = True) -> None:
        await self.request("POST", f"/lists/{list_id}/members/{member_hash}/tags",
                           {"tags": [{"name": t, "status": "active" if active else "inactive"} for t in tags]})

    async def unsubscribe(self, list_id: str, member_hash: str) -> None:
        try:
            await self.request("PATCH", f"/lists/{list_id}/members/{member_hash}", {"status": "unsubscribed"})
        except PermanentDeliveryError as exc:
            if not str(exc).startswith("HTTP 404"):  # not on the list: nothing to unsubscribe
                raise

    async def archive(self, list_id: str, member_hash: str) -> None:
        try:
            await self.request("DELETE", f"/lists/{list_id}/members/{member_hash}")
        except PermanentDeliveryError as exc:
            if not str(exc).startswith("HTTP 404"):
                raise


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        title, detail = body.get("title"), body.get("detail")
        return str(f"{title}: {detail}" if title and detail and title != detail else title or detail or body)[:500]
    except ValueError:
        return response.text[:500]


class MailchimpClients:
    """One client (and one connection cap) per API key, shared by every worker task of the process."""

    def __init__(self, *, base_url: str = "", max_connections: int = 10, timeout_s: float = 10.0,
                 max_retries: int = 4, backoff_s: float = 0.5, backoff_max_s: float = 30.0) -> None:
        self._options: dict[str, Any] = dict(base_url=base_url, max_connections=max_connections, timeout_s=timeout_s,
                                             max_retries=max_retries, backoff_s=backoff_s,
                                             backoff_max_s=backoff_max_s)
        self._clients: dict[str, MailchimpClient] = {}
        # Loaded once, at start-up, for every org's client: loading the certificate authorities costs more CPU than
        # hundreds of calls (it was paid by each org's first call).
        self._tls = httpx.create_ssl_context()

    def for_key(self, api_key: str) -> MailchimpClient:
        client = self._clients.get(api_key)
        if client is None:
            client = self._clients[api_key] = MailchimpClient(api_key, **self._options, tls=self._tls)
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
