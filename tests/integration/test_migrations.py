"""Alembic owns the schema: the revisions produce exactly what the models describe, and
opening an up-to-date database again changes nothing."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from humanline.domain.clock import SystemClock
from humanline.store.sql import migrations
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import metadata


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
