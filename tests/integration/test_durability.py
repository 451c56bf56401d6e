"""Guarantee 2: a handoff is durable before RequestHandoff returns, and no queued or assigned
interaction is lost by a restart. (A SIGKILL of a real process is in tests/e2e.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from humanline.domain.clock import SystemClock
from humanline.domain.rules import DispatchPolicy
from humanline.store.port import StoreError
from humanline.store.sql.store import SqlStore
from humanline.v1 import agent_pb2, handoff_pb2
from tests.conftest import Served, serve
from tests.support.client import Stubs, error_details


async def test_restart_keeps_queued_offered_and_assigned_work(
    db_url: str, policy: DispatchPolicy
) -> None:
    first = await serve(db_url, policy)
    client = first.stubs()
    await client.create_agent("ann", {"billing": 4}, capacity=2)
    ann = client.agent("ann")
    welcome = await ann.hello()
    assigned = await client.request_handoff(skills={"billing": 3})
    interaction = await ann.accept((await ann.offer()).offer_id)
    offered = await client.request_handoff(skills={"billing": 3})
    await ann.offer()
    queued = [await client.request_handoff(skills={"fraud": 5}) for _ in range(3)]
    await client.close()
    await first.stop()

    second = await serve(db_url, policy)
    client = second.stubs()
    try:
        # Everything is still there; the offer made on the dead stream went back to the queue.
        held = await client.get_handoff(assigned.handoff_id)
        assert held.state == handoff_pb2.HANDOFF_STATE_ASSIGNED
        assert held.assigned_agent.agent_id == "ann"
        assert (await client.get_handoff(offered.handoff_id)).state == (
            handoff_pb2.HANDOFF_STATE_QUEUED
        )
        waiting = [await client.get_handoff(h.handoff_id) for h in queued]
        assert [h.state for h in waiting] == [handoff_pb2.HANDOFF_STATE_QUEUED] * 3
        positions = [h.queue_position for h in waiting]
        assert positions == sorted(positions)
        # The agent is reconnecting and resumes with its token, work intact.
        assert (await client.get_agent("ann")).state == agent_pb2.AGENT_STATE_RECONNECTING
        ann = client.agent("ann")
        resumed = await ann.resume(welcome.resume_token)
        assert [i.interaction_id for i in resumed.active_interactions] == [
            interaction.interaction_id
        ]
        assert (await ann.offer()).details.handoff_id == offered.handoff_id
        await client.complete("ann", interaction.interaction_id)
        # A fraud expert drains the rest in queue order.
        await client.create_agent("fred", {"fraud": 5})
        fred = client.agent("fred")
        await fred.hello()
        for expected in queued:
            offer = await fred.offer()
            assert offer.details.handoff_id == expected.handoff_id
            await client.complete("fred", (await fred.accept(offer.offer_id)).interaction_id)
    finally:
        await client.close()
        async with asyncio.timeout(15):
            await second.stop()


async def test_a_handoff_is_stored_when_request_handoff_returns(
    db_url: str, policy: DispatchPolicy
) -> None:
    served = await serve(db_url, policy)
    client = served.stubs()
    handoffs = await asyncio.gather(*(client.request_handoff() for _ in range(20)))
    await client.close()
    # Read the file with a fresh engine, as another process would.
    engine = create_async_engine(db_url)
    async with engine.connect() as conn:
        stored = {r[0] for r in await conn.execute(text("SELECT id FROM handoffs"))}
    await engine.dispose()
    assert {h.handoff_id for h in handoffs} <= stored
    await served.stop()


async def test_store_failure_is_unavailable_not_internal(
    client: Stubs, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.asynccontextmanager
    async def down() -> AsyncIterator[None]:
        raise StoreError("connection refused")  # the database is gone
        yield

    monkeypatch.setattr(served.app.store, "write", down)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await client.request_handoff()
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(failed.value)["reason"] == "STORE_UNAVAILABLE"


async def test_a_second_process_cannot_open_the_same_sqlite_file(tmp_path: Path) -> None:
    # SQLite only: PostgreSQL is there to be shared by replicas.
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'humanline.db'}"
    first = SqlStore(db_url, SystemClock())
    await first.open()
    second = SqlStore(db_url, SystemClock())
    with pytest.raises(StoreError, match="another humanline process"):
        await second.open()
    await first.close()
    await second.open()  # free again once the first has closed
    await second.close()
