"""One ETag format and one If-Match check for every service (HTTP conventions, contract.py declares them).

ETags are strong validators, `"<version>"` (a quoted opaque string). If-Match compares strongly (RFC 9110
13.1.1): a weak validator (`W/"3"`) never matches, so it is refused with 412 like a stale one; `*` matches any
current representation. Without If-Match a change that needs one is refused with 428.
"""
from __future__ import annotations

from .errors import PreconditionFailed, PreconditionRequired


def strong_etag(version: object) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, current_etag: str, *, what: str = "resource") -> None:
    if if_match is None:
        raise PreconditionRequired(f"send If-Match with the {what}'s ETag (a GET returns it)")
    tags = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    if tags and all(tag.startswith("W/") for tag in tags):
        raise PreconditionFailed("If-Match needs the strong ETag you read; weak validators (W/) never match")
    if "*" in tags:
        return
    if current_etag not in tags:
        raise PreconditionFailed(f"the {what} changed since you read it (now {current_etag}); read it again")
