"""PostgreSQL's pooled connections: one the database closed while it sat in the pool (a
restart, a failover, an idle timeout) is replaced when a transaction begins, without the
transaction failing. No ping per checkout: the transaction's first statement, which reads
the database's clock, is the check. Brief reads send their statements alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from humanline.domain.clock import FakeClock, SystemClock
from humanline.service.quality import early_warning_tallies
from humanline.store.port import StoreError
from humanline.store.sql.listener import asyncpg_dsn
from humanline.store.sql.store import SqlStore


async def _close_the_stores_connections(url: str) -> int:
    """Ends the store's server processes, and waits until they have ended: their last words
    (a FATAL error) are then on their way to the store, and which way its connections fail
    depends on how much of them asyncpg has read."""
    admin = await asyncpg.connect(asyncpg_dsn(make_url(url)))
    try:
        closed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name LIKE 'humanline%'"
        )
    finally:
        await admin.close()
    return closed


async def test_connections_the_database_closed_are_replaced_when_a_transaction_begins(
    db_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL's connection pool")
    store = SqlStore(db_url, SystemClock(), pool_size=2)
    await store.open()
    try:
        async with store.write() as uow, store.read() as other:  # two pooled connections
            assert await uow.agents.get("nobody") is None
            assert await other.agents.get("nobody") is None
        assert await _close_the_stores_connections(db_url) == 2
        async with store.write() as uow:
            assert await uow.agents.get("nobody") is None
        async with store.read() as uow:
            assert await uow.handoffs.get("nobody") is None
    finally:
        await store.close()


# Seen under load: a replica stopped the hard way closed its store while a stream's look at
# the store was still reading; the engine was disposed under it, and its connection was
# never closed (a ResourceWarning, which fails the test that caused it).
async def test_closing_waits_for_transactions_under_way_and_refuses_new_ones(
    db_url: str,
) -> None:
    store = SqlStore(db_url, SystemClock(), pool_size=2)
    await store.open()
    reading, release = asyncio.Event(), asyncio.Event()

    async def a_slow_reader() -> None:
        async with store.read() as uow:
            assert await uow.agents.get("nobody") is None
            reading.set()
            await release.wait()
            assert await uow.handoffs.get("nobody") is None  # still open, mid-close

    reader = asyncio.create_task(a_slow_reader())
    await reading.wait()
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    with pytest.raises(StoreError, match="closing"):
        async with store.read():
            pass
    release.set()
    await reader
    await closing


class SentStatements:
    """The first word of each statement asyncpg's connections send themselves (SQLAlchemy's
    own prepared statements aside): `_execute` runs those with parameters (`fetch`, ...),
    `execute` without them those with none (BEGIN, COMMIT)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        sent = self.sent
        execute, run = asyncpg.Connection.execute, asyncpg.Connection._execute

        async def recorded_execute(
            connection: asyncpg.Connection, query: str, *args: Any, **kw: Any
        ) -> Any:
            if not args:
                sent.append(query.split(None, 1)[0].rstrip(";").upper())
            return await execute(connection, query, *args, **kw)

        async def recorded_run(
            connection: asyncpg.Connection, query: str, *args: Any, **kw: Any
        ) -> Any:
            sent.append(query.split(None, 1)[0].rstrip(";").upper())
            return await run(connection, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, "execute", recorded_execute)
        monkeypatch.setattr(asyncpg.Connection, "_execute", recorded_run)


async def test_a_brief_read_on_postgres_is_its_statements_alone(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No BEGIN, no read of the database's clock, no COMMIT: the early-warning check's one
    statement is one round trip."""
    if backend != "postgres":
        pytest.skip("PostgreSQL's brief reads")
    clock = FakeClock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    store = SqlStore(db_url, clock, pool_size=2)
    await store.open()
    try:
        async with store.read(brief=True) as warm:  # asyncpg's prepared statements
            await early_warning_tallies(warm, timedelta(days=1))
        statements = SentStatements(monkeypatch)
        async with store.read(brief=True) as uow:
            assert uow.now == clock.now()  # the replica's clock
            mine, before = await early_warning_tallies(uow, timedelta(days=1))
        assert statements.sent == ["SELECT"]
        assert mine.whole.handoffs == before.whole.handoffs == 0
        async with store.read() as uow:  # a transaction, for comparison
            await uow.agents.get("nobody")
        assert statements.sent[1:] == ["BEGIN", "SELECT", "COMMIT"]  # its clock: SQLAlchemy's
    finally:
        await store.close()


async def test_a_brief_read_throws_away_a_connection_the_database_closed(
    db_url: str, backend: str
) -> None:
    """The brief read on it fails (there is no transaction to begin again); the connection
    is not handed to the next one, which works."""
    if backend != "postgres":
        pytest.skip("PostgreSQL's brief reads")
    store = SqlStore(db_url, SystemClock(), pool_size=1)
    await store.open()
    try:
        async with store.read(brief=True) as uow:  # the pool's one connection
            assert await uow.agents.get("nobody") is None
        assert await _close_the_stores_connections(db_url) == 1
        with pytest.raises(StoreError):
            async with store.read(brief=True) as uow:
                await uow.agents.get("nobody")
        for _ in range(3):
            async with store.read(brief=True) as uow:
                assert await uow.agents.get("nobody") is None
    finally:
        await store.close()


async def _the_stores_server_processes(url: str) -> set[int]:
    admin = await asyncpg.connect(asyncpg_dsn(make_url(url)))
    try:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND application_name LIKE 'humanline%'"
        )
    finally:
        await admin.close()
    return {row["pid"] for row in rows}


def _the_next_statement_meets_the_servers_last_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next statement, on asyncpg or through SQLAlchemy's adapter, fails as one sent on
    a connection the database had just closed, whose FATAL error asyncpg had not read yet:
    a `PostgresError`, on a connection asyncpg does not know is closed."""
    from asyncpg.prepared_stmt import PreparedStatement

    fetches = {cls: cls.fetch for cls in (asyncpg.Connection, PreparedStatement)}

    async def fails(self: Any, *args: Any, **kw: Any) -> Any:
        for cls, fetch in fetches.items():
            monkeypatch.setattr(cls, "fetch", fetch)
        raise asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        )

    for cls in fetches:
        monkeypatch.setattr(cls, "fetch", fails)


async def test_a_connection_that_answers_with_the_servers_last_words_is_thrown_away(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction begins again on a new connection; a brief read fails, and the next
    one has a new connection. Seen in CI as the connection's first error after the
    database closed it, before asyncpg had seen it close."""
    if backend != "postgres":
        pytest.skip("PostgreSQL's connections")
    store = SqlStore(db_url, SystemClock(), pool_size=1)
    await store.open()
    try:
        async with store.read(brief=True) as uow:
            assert await uow.agents.get("nobody") is None
        first = await _the_stores_server_processes(db_url)
        _the_next_statement_meets_the_servers_last_words(monkeypatch)
        async with store.write() as uow:  # its clock, the first statement, fails
            assert await uow.agents.get("nobody") is None
        second = await _the_stores_server_processes(db_url)
        assert len(first) == len(second) == 1
        assert first != second

        _the_next_statement_meets_the_servers_last_words(monkeypatch)
        with pytest.raises(StoreError, match="administrator command"):
            async with store.read(brief=True) as uow:
                await uow.agents.get("nobody")
        async with store.read(brief=True) as uow:
            assert await uow.agents.get("nobody") is None
        third = await _the_stores_server_processes(db_url)
        assert len(third) == 1
        assert third != second
    finally:
        await store.close()
