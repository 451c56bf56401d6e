"""A caller cancelled while its read transaction ends (a client that hung up, cancelled
again during the cleanup) still hands its connection back whole: nothing logged as an error,
no connection lost."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime

import pytest

from humanline.domain.clock import FakeClock
from humanline.store.sql.store import SqlStore


async def test_a_read_cancelled_during_its_cleanup_returns_its_connection(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlStore(db_url, FakeClock(datetime(2026, 12, 3, tzinfo=UTC)))
    await store.open()
    entered = asyncio.Event()

    async def reader() -> None:
        async with store.read() as uow:
            await uow.policies.all()
            entered.set()
            await asyncio.sleep(60)

    try:
        for _ in range(20):
            task = asyncio.create_task(reader())
            await entered.wait()
            entered.clear()
            task.cancel()
            for _ in range(3):  # cancelled again while it rolls back and lets go
                await asyncio.sleep(0)
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.2)  # the shielded cleanups finish
        assert store._reader is not None
        assert store._reader.pool.checkedout() == 0  # type: ignore[attr-defined]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
    finally:
        await store.close()


async def test_closing_waits_for_the_transactions_of_cancelled_callers(db_url: str) -> None:
    """A service killed in the middle of reads (its tasks cancelled, then the store closed at
    once, as a replica's death is simulated) loses no connection: the transactions ending in
    the background finish before the pools go. Before, a connection came back to a disposed
    pool and was left for the garbage collector (a ResourceWarning, an error here)."""
    store = SqlStore(db_url, FakeClock(datetime(2026, 12, 3, tzinfo=UTC)))
    await store.open()
    entered = asyncio.Event()

    async def reader() -> None:
        async with store.read() as uow:
            await uow.policies.all()
            entered.set()
            await asyncio.sleep(60)

    tasks = []
    for _ in range(4):
        tasks.append(asyncio.create_task(reader()))
        await entered.wait()
        entered.clear()
    for task in tasks:
        task.cancel()
    await asyncio.sleep(0)  # their endings start, shielded
    await store.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    gc.collect()  # an unclosed connection would warn now, and fail the test
