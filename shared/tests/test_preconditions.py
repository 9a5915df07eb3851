"""One ETag format and one If-Match check for every service (salesflow_shared.preconditions)."""
from __future__ import annotations

import pytest

from salesflow_shared.errors import PreconditionFailed, PreconditionRequired
from salesflow_shared.preconditions import check_if_match, strong_etag


def test_etags_are_strong_quoted_versions() -> None:
    assert strong_etag(7) == '"7"' and strong_etag("q-1:2") == '"q-1:2"'


def test_if_match_accepts_the_current_etag_among_others_or_a_star() -> None:
    check_if_match('"7"', '"7"')
    check_if_match('"6", "7"', '"7"')
    check_if_match("*", '"7"')


@pytest.mark.parametrize("sent", ['"6"', 'W/"7"', 'W/"6", W/"7"', "7"])
def test_a_stale_weak_or_unquoted_validator_is_refused_with_412(sent: str) -> None:
    with pytest.raises(PreconditionFailed):
        check_if_match(sent, '"7"', what="lead")


def test_a_missing_if_match_is_428() -> None:
    with pytest.raises(PreconditionRequired) as raised:
        check_if_match(None, '"7"', what="lead")
    assert raised.value.status == 428 and "lead" in raised.value.detail
