"""The embedded store's writer (`humanline.store.sql.sqlite`): units of work that run together
share one commit, a failing unit undoes only itself, a failed commit fails every unit of its
batch and keeps none of them, and nothing a caller was told is committed is lost on reopening.
Its brief reads, in the loop's thread beside it, see only what was committed and change
nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from humanline.domain.clock import SystemClock
from humanline.store.port import StoreError
from humanline.store.sql.sqlite import GroupCommitWriter
from humanline.store.sql.store import SqlStore
from tests.unit.builders import profile


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'humanline.db'}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[SqlStore]:
    opened = SqlStore(url, SystemClock())
    await opened.open()
    yield opened
    await opened.close()


def writer(store: SqlStore) -> GroupCommitWriter:
    group = store._group  # the writer under test
    assert group is not None
    return group


async def create(store: SqlStore, agent_id: str, *, fail: bool = False) -> None:
    async with store.write() as uow:
        await uow.agents.insert(agent_id, profile(skills={"chat": 3}), uow.now)
        if fail:
            raise RuntimeError(f"{agent_id} changed its mind")


async def stored_agents(url: str) -> set[str]:
    """The agents a fresh store on the same file finds."""
    reopened = SqlStore(url, SystemClock())
    await reopened.open()
    try:
        async with reopened.read() as uow:
            return {
                a.id
                for a in await uow.agents.page(limit=1000, after_id=None, state=None, skill=None)
            }
    finally:
        await reopened.close()


async def test_units_running_together_share_commits_and_all_survive(
    store: SqlStore, url: str
) -> None:
    before = writer(store).commits
    await asyncio.gather(*(create(store, f"agent-{i:03}") for i in range(200)))
    commits = writer(store).commits - before
    assert 1 <= commits < 200  # grouped: far fewer fsyncs than transactions
    await store.close()
    assert await stored_agents(url) == {f"agent-{i:03}" for i in range(200)}


async def test_a_failing_unit_undoes_only_itself(store: SqlStore, url: str) -> None:
    before = writer(store).commits
    results = await asyncio.gather(
        create(store, "ann"),
        create(store, "bob", fail=True),
        create(store, "cid"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], RuntimeError)
    assert writer(store).commits - before == 1  # one batch, committed without bob
    await store.close()
    assert await stored_agents(url) == {"ann", "cid"}


class _FailingCommit:
    """Stands in for a batch's transaction: the commit fails as on a full disk."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def commit(self) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def rollback(self) -> None:
        self._real.rollback()


async def test_a_failed_commit_fails_every_unit_of_its_batch_and_keeps_none(
    store: SqlStore, url: str
) -> None:
    async def sabotaged(agent_id: str) -> None:
        async with store.write() as uow:
            await uow.agents.insert(agent_id, profile(), uow.now)
            batch = writer(store)._batch
            assert batch is not None
            if not isinstance(batch.transaction, _FailingCommit):
                batch.transaction = _FailingCommit(batch.transaction)  # type: ignore[assignment]

    results = await asyncio.gather(
        sabotaged("ann"), sabotaged("bob"), create(store, "cid"), return_exceptions=True
    )
    assert all(isinstance(r, StoreError) for r in results), results
    await create(store, "dee")  # the next batch starts afresh
    await store.close()
    assert await stored_agents(url) == {"dee"}


async def test_a_caller_that_stops_waiting_stops_neither_the_commit_nor_the_others(
    store: SqlStore, url: str
) -> None:
    leaving = asyncio.create_task(create(store, "ann"))
    staying = asyncio.create_task(create(store, "bob"))
    await asyncio.sleep(0)  # both units have run; their callers wait for the same commit
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await staying
    await store.close()
    assert await stored_agents(url) == {"ann", "bob"}


async def test_brief_reads_see_what_was_committed_and_never_a_unit_under_way(
    store: SqlStore,
) -> None:
    assert store._brief is not None
    assert store._brief.units == 0
    async with store.write() as uow:
        await uow.agents.insert("ann", profile(skills={"chat": 3}), uow.now)
        async with store.read(brief=True) as brief:  # ann's unit is not committed yet
            assert await brief.agents.get("ann") is None
    async with store.read(brief=True) as brief:
        found = await brief.agents.get("ann")
        assert found is not None
        assert found.id == "ann"
    assert store._brief.units == 2  # in the loop's thread, not on a reader's


async def test_brief_reads_change_nothing_and_a_failed_one_leaves_the_next_working(
    store: SqlStore, url: str
) -> None:
    with pytest.raises(StoreError, match="readonly"):
        async with store.read(brief=True) as brief:
            await brief.agents.insert("bob", profile(skills={"chat": 3}), brief.now)

    async def fail_reading() -> None:
        async with store.read(brief=True) as brief:
            assert await brief.agents.get("bob") is None
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError):
        await fail_reading()
    # Brief reads beside writes, many at once: each sees a consistent store.
    ids = [f"agent-{i:03}" for i in range(50)]

    async def read_back() -> int:
        async with store.read(brief=True) as brief:
            return len(await brief.agents.page(limit=100, after_id=None, state=None, skill=None))

    seen = await asyncio.gather(*(create(store, i) for i in ids), *(read_back() for _ in ids))
    assert all(0 <= n <= len(ids) for n in seen[len(ids) :])
    assert await read_back() == len(ids)
    await store.close()
    assert await stored_agents(url) == set(ids)
