"""An activity on a lead's timeline: a call, email, meeting, demo, proposal or note."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class Activity(BaseModel):
    """An activity as the API shows it (the stored row adds its org and the external id it was logged under)."""

    model_config = ConfigDict(frozen=True)

    id: str
    lead_id: str
    kind: str  # call, email, meeting, demo, proposal, note
    rep_id: str | None
    occurred_at: datetime
    duration_seconds: int | None
    outcome: str | None
    subject: str | None
    notes: str | None
    source: str | None  # rep, form, sequence, system
    created_at: datetime
