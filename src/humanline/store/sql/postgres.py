"""The PostgreSQL store's connection for repositories: prepared statements on asyncpg itself.

SQLAlchemy's asyncpg adapter runs every statement through its execution machinery and a
greenlet switch; with a dozen statements per use case that was most of what a use case
cost on the replica's CPU. `PgConnection` runs the repositories' prepared statements
(`prepared.Plan`) on the transaction's asyncpg connection directly, with the same bind and
result processing, and asyncpg's own cache of server-side prepared statements. Everything
else, and every statement before the transaction has begun, goes through SQLAlchemy, which
owns the transaction (it begins it lazily, with the first statement it runs: `SqlStore`
reads the database's clock first).
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from humanline.store.sql.prepared import Plans
from humanline.store.trips import RoundTrips

# A connection the database closed fails as `InterfaceError` once asyncpg has seen it close,
# and as `InternalClientError` if the server's last words came in but not yet the end.
CONNECTION_FAILED = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
_AFFECTED = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class PgConnection:
    """The slice of `AsyncConnection` the repositories use, with prepared statements run on
    asyncpg. Errors come as SQLAlchemy's `DBAPIError`, with asyncpg's error (and its
    SQLSTATE) as `orig`."""

    def __init__(
        self,
        conn: AsyncConnection,
        driver: asyncpg.Connection,
        plans: Plans,
        *,
        autocommit: bool = False,
    ) -> None:
        self._conn = conn
        self._driver = driver
        self._plans = plans
        self._autocommit = autocommit

    @classmethod
    async def of(
        cls, conn: AsyncConnection, plans: Plans, *, autocommit: bool = False
    ) -> PgConnection:
        """The connection for `conn`'s transaction; `plans` are the store's (a plan is the
        same on every connection; asyncpg prepares it on each). With `autocommit`, `conn`
        has no transaction and the prepared statements run each on its own."""
        raw = await conn.get_raw_connection()
        return cls(conn, raw.driver_connection, plans, autocommit=autocommit)

    @property
    def dialect(self) -> Dialect:
        """The connection's dialect."""
        return self._conn.dialect

    async def execute(self, statement: sa.Executable, parameters: Any = None) -> Any:
        """Runs a statement; returns its result, fetched."""
        planned = self._plans.plan(statement, parameters)
        if planned is None or not (self._autocommit or self._driver.is_in_transaction()):
            return await self._conn.execute(statement, parameters)
        plan, values, many = planned
        bound = [plan.bind(v) for v in values]
        try:
            if many:
                await self._driver.executemany(plan.sql, bound)
                return plan.rows((), -1)
            if plan.returns_rows:
                if plan.results is None:  # the first run: asyncpg's numbers need the types
                    prepared = await self._driver.prepare(plan.sql)
                    plan.resolve(self.dialect, [a.type.oid for a in prepared.get_attributes()])
                return plan.rows(await self._driver.fetch(plan.sql, *bound[0]), -1)
            status = await self._driver.execute(plan.sql, *bound[0])
        except asyncpg.PostgresError as exc:
            raise DBAPIError.instance(
                plan.sql,
                bound,
                exc,
                asyncpg.PostgresError,
                connection_invalidated=self._driver.is_closed(),
            ) from exc
        except CONNECTION_FAILED as exc:  # the connection, not the statement
            raise DBAPIError(plan.sql, bound, exc, connection_invalidated=True) from exc
        affected = _AFFECTED.match(status or "")
        return plan.rows((), int(affected.group(1)) if affected else -1)

    def begin_nested(self) -> AbstractAsyncContextManager[Any]:
        """A SAVEPOINT for the block (SQLAlchemy's)."""
        return self._conn.begin_nested()


class _CountedProtocol:
    """asyncpg's protocol with each request that waits for the database's answer counted.
    asyncpg's connections, prepared statements and transactions send everything through
    these methods of their protocol, each of which ends when the answer has come."""

    __slots__ = ("_protocol", "_trips")

    def __init__(self, protocol: Any, trips: RoundTrips) -> None:
        self._protocol = protocol
        self._trips = trips

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)

    def query(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.query(*args, **kw)

    def prepare(self, *args: Any, **kw: Any) -> Any:
        self._trips.add(preparing=True)
        return self._protocol.prepare(*args, **kw)

    def bind_execute(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.bind_execute(*args, **kw)

    def bind_execute_many(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.bind_execute_many(*args, **kw)

    def bind(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.bind(*args, **kw)

    def execute(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.execute(*args, **kw)

    def close_statement(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.close_statement(*args, **kw)

    def copy_in(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.copy_in(*args, **kw)

    def copy_out(self, *args: Any, **kw: Any) -> Any:
        self._trips.add()
        return self._protocol.copy_out(*args, **kw)


def counted_connections(trips: RoundTrips) -> type[asyncpg.Connection]:
    """asyncpg's connection class (its `connection_class`) that counts its round trips
    into `trips`."""

    class CountedConnection(asyncpg.Connection):  # type: ignore[misc]
        def __init__(self, protocol: Any, *args: Any, **kw: Any) -> None:
            super().__init__(_CountedProtocol(protocol, trips), *args, **kw)

    return CountedConnection
