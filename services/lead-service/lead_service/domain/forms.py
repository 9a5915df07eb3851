"""A web form as intake uses it: its mapping spec, its secrets and its browser settings (no I/O)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from .mapping import FormSpec

PUBLIC_KEY_FIELD = "sf_key"
SUBMISSION_ID_FIELD = "submission_id"
RESERVED_FIELDS = (PUBLIC_KEY_FIELD, SUBMISSION_ID_FIELD)


class Form(BaseModel):
    """A web form (the API's FormOut adds its submit URL)."""

    model_config = ConfigDict(frozen=True)

    id: str
    org_id: str
    name: str
    mapping: dict[str, str]
    defaults: dict[str, Any]
    required: list[str]
    public_key: str
    signing_secret: str
    honeypot_field: str
    redirect_url: str | None
    rate_limit_per_minute: int
    version: int
    allowed_origins: list[str]

    @property
    def spec(self) -> FormSpec:
        return FormSpec(mapping=self.mapping, defaults={"source": "web_form", **self.defaults},
                        required=tuple(self.required), ignored=(*RESERVED_FIELDS, self.honeypot_field))

    def as_dict(self) -> dict[str, Any]:
        return {**self.model_dump(), "submit_url": f"/v1/forms/{self.id}/submissions"}
