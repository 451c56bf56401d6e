"""Alembic owns the schema: the revisions produce exactly what the models describe, and
opening an up-to-date database again changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from humanline.domain.clock import SystemClock
from humanline.store.sql import migrations
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import metadata
from tests.conftest import create_postgres_database, drop_postgres_database


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
