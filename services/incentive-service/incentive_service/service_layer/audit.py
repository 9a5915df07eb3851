"""The audit log: every change a person (or an event) made, with who, when, what, before and after."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from salesflow_shared.uow import UnitOfWork

from ..adapters.repository.audit import AuditEntry, insert_audit_entry


def _plain(value: Any) -> Any:
    """JSON-safe (decimals and dates as strings), so the row stores exactly what the API showed."""
    return None if value is None else json.loads(json.dumps(value, default=str))


async def record(uow: UnitOfWork, org_id: str, actor: str, at: datetime, action: str, entity: str, entity_id: str,
                 before: Any = None, after: Any = None) -> None:
    await insert_audit_entry(uow.session, org_id, AuditEntry(at, actor, action, entity, entity_id, _plain(before),
                                                             _plain(after)))
