"""The audit log: every change a person (or an event) made, with who, when, what, before and after."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import audit_log


def _plain(value: Any) -> Any:
    """JSON-safe (decimals and dates as strings), so the row stores exactly what the API showed."""
    return None if value is None else json.loads(json.dumps(value, default=str))


async def record(uow: UnitOfWork, org_id: str, actor: str, at: datetime, action: str, entity: str, entity_id: str,
                 before: Any = None, after: Any = None) -> None:
    await uow.session.execute(sa.insert(audit_log).values(
        org_id=org_id, at=at, actor=actor, action=action, entity=entity, entity_id=entity_id,
        before=_plain(before), after=_plain(after)))
