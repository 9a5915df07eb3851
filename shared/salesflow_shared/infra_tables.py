"""Tables every service has in its own database: outbox, inbox and idempotency keys.

Each service's metadata gets them through `add_infrastructure_tables(metadata)`, and its first Alembic
migration creates them through `create_infrastructure_tables(op)`, so the shape is defined once.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, Integer

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer, "sqlite")


def _outbox_columns() -> list[Any]:
    return [
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    ]


def _outbox_indexes(table_name: str = "outbox") -> list[tuple[str, list[str], dict[str, Any]]]:
    where = sa.text("published_at IS NULL")
    return [("ix_outbox_unpublished", ["id"], {"postgresql_where": where, "sqlite_where": where})]


def _inbox_columns() -> list[Any]:
    return [
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _idempotency_columns() -> list[Any]:
    return [
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("response_body", sa.JSON, nullable=True),
        sa.Column("response_headers", sa.JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def add_infrastructure_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    outbox = sa.Table("outbox", metadata, *_outbox_columns())
    for name, cols, kw in _outbox_indexes():
        sa.Index(name, *[outbox.c[c] for c in cols], **kw)
    inbox = sa.Table("inbox", metadata, *_inbox_columns())
    idempotency = sa.Table("idempotency_keys", metadata, *_idempotency_columns())
    return {"outbox": outbox, "inbox": inbox, "idempotency_keys": idempotency}


def create_infrastructure_tables(op: Any) -> None:
    op.create_table("outbox", *_outbox_columns())
    for name, cols, kw in _outbox_indexes():
        op.create_index(name, "outbox", cols, **kw)
    op.create_table("inbox", *_inbox_columns())
    op.create_table("idempotency_keys", *_idempotency_columns())


def drop_infrastructure_tables(op: Any) -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("inbox")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")


# One process-wide description used by the relay, inbox and idempotency code; each service's own
# metadata carries identical copies for its migrations.
INFRA_METADATA = sa.MetaData()
INFRA = add_infrastructure_tables(INFRA_METADATA)
outbox_table = INFRA["outbox"]
inbox_table = INFRA["inbox"]
idempotency_table = INFRA["idempotency_keys"]
