"""Which assignments change a lead's position (pipeline_service.domain.assignments)."""
import pytest

from pipeline_service.domain.assignments import changes_nothing

PARIS = ("rep-1", "team-a", "Europe/Paris")


@pytest.mark.parametrize(("known_version", "known", "version", "told", "expected"), [
    (3, PARIS, 4, PARIS, True),  # the LeadAssigned of the decision whose routing (version 3) named the owner
    (3, PARIS, 5, PARIS, False),  # a decision lies between (version 4): its version must be recorded
    (3, PARIS, 4, ("rep-2", "team-a", "Europe/Paris"), False),  # another owner
    (3, PARIS, 4, ("rep-1", "team-b", "Europe/Paris"), False),  # another team
    (3, PARIS, 4, ("rep-1", "team-a", None), False),  # the time zone the tasks' due dates use
    (0, (None, None, None), 1, (None, None, None), False),  # no assignment known yet: the snapshot may move the owner
])
def test_an_assignment_changes_nothing_only_right_after_the_same_one(known_version, known, version, told, expected):
    assert changes_nothing(known_version, known, version, told) is expected
