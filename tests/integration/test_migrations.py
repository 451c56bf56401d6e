"""Alembic owns the schema: the revisions produce exactly what the models describe, and
opening an up-to-date database again changes nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from humanline.domain.clock import SystemClock
from humanline.domain.model import WaitPlan
from humanline.store.sql import migrations
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import metadata
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.unit import builders

HANDOFF_A = "5d0c4f7e-8a5b-4c59-9a41-1f7f3a0e2b01"
HANDOFF_B = "5d0c4f7e-8a5b-4c59-9a41-1f7f3a0e2b02"
REQUEST_A = "7e1d5a8f-9b6c-4d6a-8b52-2a8a4b1f3c01"
REQUEST_B = "7e1d5a8f-9b6c-4d6a-8b52-2a8a4b1f3c02"
OFFER_A = "9f2e6b9a-0c7d-4e7b-9c63-3b9b5c2a4d01"


async def test_migrations_match_the_models_and_reapply_cleanly(db_url: str) -> None:
    store = SqlStore(db_url, SystemClock())
    await store.open()
    await store.close()
    await store.open()  # a second start migrates nothing and fails nothing
    try:
        assert await store.revision() == migrations.head()

        def diff(conn: Connection) -> list[Any]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))

        async with store._writer.connect() as conn:  # type: ignore[union-attr]
            assert await conn.run_sync(diff) == []
    finally:
        await store.close()


async def test_replicas_starting_at_once_on_a_new_database_migrate_it_once() -> None:
    """Four replicas opening an empty PostgreSQL database together: one migrates under the
    advisory lock, the others wait and then find nothing to do; none fails."""
    url = await create_postgres_database("humanline_migrate", migrate=False)
    stores = [SqlStore(url, SystemClock()) for _ in range(4)]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(store.open() for store in stores))
        assert [await store.revision() for store in stores] == [migrations.head()] * 4
    finally:
        await asyncio.gather(*(store.close() for store in stores), return_exceptions=True)
        await drop_postgres_database(url)


async def test_going_back_and_forth_over_wait_plans_keeps_every_row(db_url: str) -> None:
    """Revision 0007 copies `handoffs` on SQLite (a new state needs a new CHECK constraint):
    with foreign keys on, that copy would cascade to the handoffs' skills and offers. Down to
    0006 and up again, with data, nothing is lost; an EXPIRED handoff goes back as CANCELLED,
    the only end state 0006 knows."""
    store = SqlStore(db_url, SystemClock())
    await store.open()
    waiting = replace(
        builders.handoff(HANDOFF_A, request_id=REQUEST_A, skills={"billing": 3}),
        plan=WaitPlan(expires_at=builders.at(600)),
    )
    lapsed = builders.handoff(HANDOFF_B, request_id=REQUEST_B, skills={"fraud": 4})
    try:
        async with store.write() as uow:
            await uow.agents.insert("ann", builders.profile(skills={"billing": 3}), uow.now)
            await uow.handoffs.insert(waiting)
            await uow.handoffs.insert(lapsed)
            assert await uow.handoffs.offer(waiting.id, "ann", OFFER_A) is not None
            await uow.offers.insert(builders.offer(OFFER_A, handoff_id=waiting.id, agent_id="ann"))
            assert await uow.handoffs.expire(lapsed.id, uow.now, "no agent") is not None

        async def counts() -> tuple[int, int, int]:
            async with store._writer.connect() as conn:  # type: ignore[union-attr]
                found = []
                for table in ("handoffs", "handoff_skills", "offers"):
                    found.append(
                        (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()
                    )
                return found[0], found[1], found[2]

        assert await counts() == (2, 2, 1)
        async with store._writer.connect() as conn:  # type: ignore[union-attr]
            await migrations.downgrade(conn, "0006")
        assert await counts() == (2, 2, 1)
        async with store._writer.connect() as conn:  # type: ignore[union-attr]
            states = await conn.execute(sa.text("SELECT id, state FROM handoffs ORDER BY id"))
            assert dict(states.all()) == {waiting.id: "OFFERED", lapsed.id: "CANCELLED"}
            await migrations.upgrade(conn)
        assert await counts() == (2, 2, 1)
        async with store.read() as uow:
            back = await uow.handoffs.get(waiting.id)
            assert back is not None
            assert back.request.required_skills == waiting.request.required_skills
            assert back.plan == WaitPlan()  # 0006 had no plans: none made up
            assert await uow.offers.get(OFFER_A) is not None
    finally:
        await store.close()
