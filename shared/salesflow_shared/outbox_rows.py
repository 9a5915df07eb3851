"""Outbox rows that a service's own statement writes, for events that only some of the statement's rows publish.

`UnitOfWork.publish` writes every event it is given, at commit, in a statement of its own. An event published only
when a statement changes a row (a delivery's "sent" mark, which an attempt overtaken by a newer one does not write)
would cost that statement and then the commit's insert. Built here instead, each event's row is keyed by what
decides it (the delivery's id) and passed to the deciding statement as one array per column (`OUTBOX_ARRAYS`,
`unnest`: the statement is the same whatever the number of rows); the statement inserts, as a data-modifying CTE,
those whose keys it changed, and after the commit only those are handed to the relay (`committed`), as a commit
hands over its own. (`UnitOfWork.take_outbox_rows` is for a statement that writes every event published so far.)
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Insert

from .db import array_params, insert_from_arrays
from .events import EventData, make_event
from .infra_tables import outbox_table
from .logging import traceparent_var
from .uow import CommittedEvents, outbox_message, outbox_row

# The outbox's columns as a statement takes them in arrays (the headers as JSON text, cast back by the statement).
OUTBOX_ARRAYS = (("event_id", "varchar"), ("event_type", "varchar"), ("org_id", "varchar"), ("payload", "text"),
                 ("headers", "text"), ("created_at", "timestamptz"))
OUTBOX_COLUMNS = tuple(name for name, _ in OUTBOX_ARRAYS)


def unnest(alias: str, arrays: tuple[tuple[str, str], ...]) -> str:
    """PostgreSQL: rows from one array parameter per column (`:<alias>_<column>`), numbered `n` in their order."""
    return ("unnest(" + ", ".join(f"CAST(:{alias}_{name} AS {kind}[])" for name, kind in arrays)
            + f") WITH ORDINALITY AS {alias}(" + ", ".join(name for name, _ in arrays) + ", n)")


def insert_outbox_from(alias: str, arrays: tuple[tuple[str, str], ...] = OUTBOX_ARRAYS, *, where: str = "") -> str:
    """PostgreSQL: the INSERT of the outbox rows passed as arrays (`unnest(alias, arrays)`, `array_params`), in the
    order given (their ids are the relay's publishing order); `where`, a condition on them (their key, say). For a
    statement that writes them as a data-modifying CTE of its own."""
    return (f"INSERT INTO {outbox_table.name} (event_id, event_type, org_id, payload, headers, created_at)\n"
            f"SELECT {alias}.event_id, {alias}.event_type, {alias}.org_id, {alias}.payload, "
            f"CAST({alias}.headers AS json), {alias}.created_at\n"
            f"FROM {unnest(alias, arrays)}\n" + (f"WHERE {where}\n" if where else "") + f"ORDER BY {alias}.n")


def insert_outbox_statement(alias: str) -> Insert:
    """`insert_outbox_from(alias)` as a SQLAlchemy Core statement (`db.insert_from_arrays`), for a Core statement
    that writes its events as a data-modifying CTE of its own; the same parameters
    (`array_params(alias, OUTBOX_COLUMNS, rows)`)."""
    return insert_from_arrays(outbox_table, alias, OUTBOX_COLUMNS)


# With the key of each row: `unnest("<alias>", KEYED_OUTBOX_ARRAYS)`.
KEYED_OUTBOX_ARRAYS = (("key", "varchar"), *OUTBOX_ARRAYS)


@dataclass
class KeyedOutboxRows:
    """Events to publish only if the statement deciding their key writes it: each built as `UnitOfWork.publish`
    would (the service as producer, the trace it is added in)."""
    producer: str
    _rows: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    def add(self, key: str, data: EventData, *, org_id: str, subject_id: str, subject_version: int = 1) -> None:
        envelope = make_event(data, org_id=org_id, subject_id=subject_id, subject_version=subject_version,
                              producer=self.producer)
        self._rows.append((key, outbox_row(envelope, traceparent_var.get()), envelope.correlation_id))

    def params(self, alias: str) -> dict[str, list[Any]]:
        """The parameters of `unnest(alias, KEYED_OUTBOX_ARRAYS)`: every row, with its key."""
        return array_params(alias, ("key", *OUTBOX_COLUMNS), [{"key": key, **row} for key, row, _ in self._rows])

    def rows_of(self, keys: Collection[str]) -> list[dict[str, Any]]:
        """The outbox rows of these keys, in the order added (for `INSERT_OUTBOX`, where no CTE is had)."""
        return [row for key, row, _ in self._rows if key in keys]

    def committed(self, keys: Collection[str]) -> CommittedEvents:
        """What the relay is handed once the rows of these keys (those the statement wrote) are committed."""
        return [(outbox_message(row, correlation_id), row["created_at"])
                for key, row, correlation_id in self._rows if key in keys]
