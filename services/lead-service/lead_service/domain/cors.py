"""Which web pages may post to a form from script (CORS), per form: its `allowed_origins`.

A form's page usually lives on the customer's own site, another origin than the API: a `fetch()` from it
needs a preflight answer and `Access-Control-Allow-Origin` on the response, for that page's origin only.
"""
from __future__ import annotations

from urllib.parse import urlsplit

# What a page's script may send with a submission (the rest of the request is the browser's).
ALLOWED_REQUEST_HEADERS = "Content-Type, Idempotency-Key, Salesflow-Submission-Id"
EXPOSED_RESPONSE_HEADERS = ("Idempotent-Replayed, Location, X-Correlation-ID, Retry-After, RateLimit-Limit, "
                            "RateLimit-Remaining, RateLimit-Reset")
PREFLIGHT_MAX_AGE_S = 600
MAX_ALLOWED_ORIGINS = 50


def normalise_origin(text: str) -> str:
    """`https://www.Example.com:443` → `https://www.example.com`; anything but a bare http(s) origin is refused
    (ValueError): no path, query, user or wildcard, so a form is never opened to every site by mistake."""
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an origin like https://www.example.com (scheme and host)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password \
            or "*" in value:
        raise ValueError("must be an origin only: scheme, host and optional port, no path, query or wildcard")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")


def origin_allowed(origin: str | None, allowed_origins: list[str]) -> bool:
    if not origin:
        return False
    try:
        return normalise_origin(origin) in allowed_origins
    except ValueError:  # "null" (sandboxed pages, file://) and garbage are never allowed
        return False


def response_headers(origin: str | None, allowed_origins: list[str]) -> dict[str, str]:
    """Headers every answer to a submission carries: the origin echoed when allowed. `Vary: Origin` always,
    so a cache never serves one origin's answer to another."""
    headers = {"Vary": "Origin"}
    if origin is not None and origin_allowed(origin, allowed_origins):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSED_RESPONSE_HEADERS
    return headers


def preflight_headers(origin: str | None, allowed_origins: list[str]) -> dict[str, str]:
    headers = response_headers(origin, allowed_origins)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({"Access-Control-Allow-Methods": "POST, OPTIONS",
                        "Access-Control-Allow-Headers": ALLOWED_REQUEST_HEADERS,
                        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)})
    return headers
