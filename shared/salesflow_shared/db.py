"""Database access: one async engine per service process, PostgreSQL in production, SQLite embedded."""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy import JSON, BindParameter, Insert, Table, Text, bindparam, event, func, insert, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

R = TypeVar("R")

# What the statements sent from here on in this task (and the tasks it starts) are for, as counted by
# `Database.count_statements`: "request" (an HTTP request, and anything not marked), "consumer" (a delivered event's
# inbox and handlers), "relay" (the outbox relay) or a background worker's name. Set where each of those begins.
STATEMENT_PATH: ContextVar[str] = ContextVar("salesflow_statement_path", default="request")
P = ParamSpec("P")


def counted_as(path: str) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """The statements sent while the decorated coroutine function runs count for `path` (`STATEMENT_PATH`)."""
    def decorate(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(function)
        async def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            token = STATEMENT_PATH.set(path)
            try:
                return await function(*args, **kwargs)
            finally:
                STATEMENT_PATH.reset(token)
        return counted
    return decorate


def records(cls: type[R], rows: Iterable[Any]) -> list[R]:
    """Rows (mappings: `.mappings()`) as records: `cls` (a dataclass) has a field for each column selected, named
    alike."""
    return [cls(**row) for row in rows]


def first_record(cls: type[R], result: Result[Any]) -> R | None:
    """The result's first row as a record (see `records`), or None without one."""
    row = result.mappings().first()
    return cls(**row) if row is not None else None


def row_values(record: Any) -> dict[str, Any]:
    """A record's (a dataclass's) fields as its row's values, for an INSERT: the inverse of `records`. Shallow: the
    values as they are (`dataclasses.asdict` would deep-copy every JSON value, on hot paths)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def rows_affected(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE touched. `session.execute` is typed as returning a `Result`,
    but for a data-changing statement it is a `CursorResult`, which is what carries the count."""
    return cast(CursorResult[Any], result).rowcount


def cte_parameters(table: Table, prefix: str) -> dict[str, BindParameter[Any]]:
    """Each column of `table` bound to a parameter named `<prefix>_<column>`: the values of an INSERT that also runs
    as a data-modifying CTE of another statement. SQLAlchemy takes a parameter named like a column of an outer
    UPDATE (or of the table an outer INSERT writes) into that statement's own values, so the inner statement's
    parameters must not be named like one. Execute it with `prefixed(prefix, values)`."""
    return {column.name: bindparam(f"{prefix}_{column.name}", type_=column.type) for column in table.c}


def insert_from_arrays(table: Table, alias: str, names: Sequence[str]) -> Insert:
    """PostgreSQL: the INSERT of rows passed as one array parameter per column (`array_params(alias, names, rows)`),
    in the order given (`unnest(…) WITH ORDINALITY`; a JSON column's array holds its values' text, cast back). One
    statement whatever the number of rows, and one SQLAlchemy caches: a multi-row VALUES has no cache key, so
    SQLAlchemy compiles it again at every execution. Usable as a data-modifying CTE of another Core statement (the
    parameters are named `<alias>_<column>`: not like a column the outer statement writes, see `cte_parameters`)."""
    def is_json(name: str) -> bool:
        return isinstance(table.c[name].type, JSON)
    arrays = [bindparam(f"{alias}_{name}", type_=ARRAY(Text() if is_json(name) else table.c[name].type))
              for name in names]
    rows = func.unnest(*arrays).table_valued(*names, with_ordinality="n").render_derived(name=alias)
    return insert(table).from_select(list(names), select(
        *(sql_cast(rows.c[name], table.c[name].type) if is_json(name) else rows.c[name] for name in names)
    ).order_by(rows.c.n))


def array_params(alias: str, names: Iterable[str], rows: Collection[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of `insert_from_arrays(table, alias, names)` (and of `outbox_rows.unnest`) for these rows: one
    list per column, in the rows' order (a dict or list value is sent as its JSON text)."""
    return {f"{alias}_{name}": [json.dumps(row[name]) if isinstance(row[name], dict | list) else row[name]
                                for row in rows] for name in names}


def prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values`, by column name, as the parameters `cte_parameters(table, prefix)` binds."""
    return {f"{prefix}_{name}": value for name, value in values.items()}


async def reads_outside_a_transaction(session: AsyncSession) -> AsyncConnection:
    """The session's connection, its statements from now on each on its own (autocommit) when the session holds no
    transaction yet: for a request that only reads. A single statement sees one snapshot by itself, and under READ
    COMMITTED a transaction would not give several statements one snapshot anyway, so none is opened (no BEGIN and
    ROLLBACK round trips). A session that changed something keeps reading in that change's transaction.
    SQLAlchemy puts the connection back to its default when it returns it to the pool."""
    if session.in_transaction():
        return await session.connection()
    return await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


class Database:
    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False,
                 session_settings: Mapping[str, str] | None = None) -> None:
        """`session_settings` (PostgreSQL): settings each connection is given once, when it is opened (SET),
        for everything it then runs: e.g. a service whose statements all want the same planner settings, instead
        of SET LOCAL in every transaction (a round trip each, and a transaction to hold it)."""
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # No pre-ping: it costs a round trip on every checkout. A connection found dead in use fails that
            # one operation (an outage: 503 / postponed message, retried) and SQLAlchemy then invalidates
            # the whole pool, so the next checkouts reconnect.
            # Up to twice `pool_size` connections, as many as before with its overflow, but none of them an
            # overflow connection: those are closed as soon as they are returned to a full pool, so under a
            # steady stream of deliveries (prefetch above the pool size) each burst paid for new connections
            # (connect, the driver's set-up queries, every statement prepared again). They are still opened
            # only when needed, and then kept.
            kwargs.update(pool_size=2 * pool_size, max_overflow=0, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        elif session_settings:
            # Sent as SET on each new connection (not as startup parameters: a pooler such as PgBouncer refuses
            # those it does not know), in one round trip for the connection's lifetime.
            settings = "; ".join(f"SET {name} = '{value}'" for name, value in session_settings.items())
            event.listen(self.engine.sync_engine, "connect",
                         lambda dbapi_connection, _record: dbapi_connection.run_async(
                             lambda driver: driver.execute(settings)))
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def count_statements(self, statements: Any, commits: Any) -> None:
        """Count (Prometheus counters) every statement this engine sends, by its `STATEMENT_PATH` (the counter's
        one label), and every transaction it commits."""
        by_path: dict[str, Any] = {}

        def count(*_args: Any) -> None:
            path = STATEMENT_PATH.get()
            counter = by_path.get(path)
            if counter is None:
                counter = by_path[path] = statements.labels(path=path)
            counter.inc()
        event.listen(self.engine.sync_engine, "before_cursor_execute", count)
        event.listen(self.engine.sync_engine, "commit", lambda *_args: commits.inc())

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - a readiness probe answers "not ready" whatever the failure is
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the relay read while a request writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def ensure_postgres_database(url: str) -> None:
    """Create the database named in `url` if it does not exist (the run command, `migrate` and tests use this).

    The maintenance database is only contacted when the target is missing, so a URL that goes through a
    pooler exposing just the application database works too.
    """
    import asyncpg

    parsed = make_url(url)
    target = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(target)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", parsed.database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await conn.close()


async def drop_postgres_database(url: str) -> None:
    import asyncpg

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        await conn.close()


# SQLSTATEs that mean "the database is not there right now", not "this statement is wrong": connection
# exceptions (class 08), the server shutting down or starting up (57P01-57P03), too many connections (53300).
_OUTAGE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


# SQLSTATEs of a transaction the server rolled back to settle a conflict with concurrent work: a serialization
# failure (40001) or a deadlock (40P01). Nothing of it was kept, and the same work tried again goes through.
_CONFLICT_SQLSTATES = ("40001", "40P01")


def _sqlstate(exc: DBAPIError) -> str:
    """The PostgreSQL SQLSTATE of a driver error ('' when it has none): asyncpg's errors name it `sqlstate`,
    psycopg's `pgcode`."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(sqlstate) if sqlstate else ""


def is_transaction_conflict(exc: BaseException) -> bool:
    """True when the database rolled the transaction back because it conflicted with another one (a deadlock, a
    serialization failure): nobody's input was wrong and trying again succeeds."""
    return isinstance(exc, DBAPIError) and _sqlstate(exc) in _CONFLICT_SQLSTATES


def is_database_outage(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable, restarting or refusing connections: the work should
    be tried again later, and it is nobody's input that was wrong."""
    if isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.statement is None:  # raised while connecting (e.g. "database is not accepting connections")
            return True
        return _sqlstate(exc).startswith(_OUTAGE_SQLSTATE_PREFIXES)
    return False
