"""One ETag format and one If-Match check for every service (HTTP conventions, contract.py declares them).

ETags are strong validators, `"<version>"` (a quoted opaque string). If-Match compares strongly (RFC 9110
13.1.1): a weak validator (`W/"3"`) never matches, so it is refused with 412 like a stale one; `*` matches any
current representation. Without If-Match a change that needs one is refused with 428: every PATCH and PUT
changes a versioned resource, so every one of them needs it.

A singleton an org has not set yet (its routing rules, its Mailchimp settings, its reporting currency) is at
version 0: its ETag is `"0"` (`UNSET_ETAG`), so the first PUT sends `If-Match: "0"` and two admins setting it
at once cannot both win. `*` never matches it (RFC 9110: `*` needs a current representation).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import PreconditionFailed, PreconditionRequired


def strong_etag(version: object) -> str:
    return f'"{version}"'


def content_etag(body: Any) -> str:
    """The strong ETag of a representation that has no version of its own (a report, a computed view): a digest
    of its canonical JSON, so it changes exactly when what a reader sees changes."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return strong_etag(hashlib.sha256(canonical.encode()).hexdigest()[:32])


UNSET_ETAG = strong_etag(0)


def check_if_match(if_match: str | None, current_etag: str | None, *, what: str = "resource") -> None:
    """Refuse a change unless If-Match names the representation as it is now. `current_etag` None: a singleton
    not set yet, which only `"0"` matches (`*` needs a current representation; see the module doc)."""
    unset = current_etag is None
    if if_match is None:
        raise PreconditionRequired(f"send If-Match: {UNSET_ETAG} to set the {what} for the first time" if unset
                                   else f"send If-Match with the {what}'s ETag (a GET returns it)")
    tags = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    if tags and all(tag.startswith("W/") for tag in tags):
        raise PreconditionFailed("If-Match needs the strong ETag you read; weak validators (W/) never match")
    if unset:
        if UNSET_ETAG not in tags:
            raise PreconditionFailed(f"the {what} is not set yet; send If-Match: {UNSET_ETAG} to set it")
        return
    if "*" in tags:
        return
    if current_etag not in tags:
        raise PreconditionFailed(f"the {what} changed since you read it (now {current_etag}); read it again")
