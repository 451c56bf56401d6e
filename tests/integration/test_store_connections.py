"""PostgreSQL's pooled connections: one the database closed while it sat in the pool (a
restart, a failover, an idle timeout) is replaced when a transaction begins, without the
transaction failing. No ping per checkout: the transaction's first statement, which reads
the database's clock, is the check."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from humanline.domain.clock import SystemClock
from humanline.store.port import StoreError
from humanline.store.sql.listener import asyncpg_dsn
from humanline.store.sql.store import SqlStore


async def _close_the_stores_connections(url: str) -> int:
    admin = await asyncpg.connect(asyncpg_dsn(make_url(url)))
    try:
        closed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
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
