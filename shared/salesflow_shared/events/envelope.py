"""The event envelope every service publishes and consumes (docs/architecture.md, Events)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..logging import causation_id_var, correlation_id_var


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    org_id: str
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    subject_id: str
    subject_version: int = 1
    correlation_id: str | None = None
    causation_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.model_validate_json(raw)


def build_envelope(event_type: str, data: dict[str, Any], *, org_id: str, producer: str, subject_id: str,
                   subject_version: int = 1, version: int = 1, occurred_at: datetime | None = None,
                   correlation_id: str | None = None, causation_id: str | None = None) -> Envelope:
    """An envelope that inherits the correlation and causation of whatever is being handled now."""
    event_id = uuid.uuid4()
    return Envelope(
        id=event_id, type=event_type, version=version, org_id=org_id,
        occurred_at=occurred_at or utcnow(), producer=producer, subject_id=subject_id,
        subject_version=subject_version,
        correlation_id=correlation_id or correlation_id_var.get() or str(event_id),
        causation_id=causation_id or causation_id_var.get(),
        data=data,
    )
