"""Schema migrations (Alembic), applied at start and by `humanline migrate`.

Revisions live in `versions/`; each is self-contained (plain SQLAlchemy types, no imports
from the application) so that later code changes never alter an old migration.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at these revisions, bound to `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


async def current(conn: AsyncConnection) -> str | None:
    """The revision the database is at, or None if it is empty."""

    def run(sync_conn: Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    return await conn.run_sync(run)


# pg_advisory_lock key: replicas starting at once migrate one after the other.
MIGRATION_LOCK = int.from_bytes(b"humanlin", "big") >> 1


async def upgrade(conn: AsyncConnection, revision: str = "head") -> None:
    """Migrates the database behind `conn` to `revision` and commits. On PostgreSQL under
    an advisory lock, so that two replicas starting at once do not race."""

    def run(sync_conn: Connection) -> None:
        command.upgrade(alembic_config(sync_conn), revision)

    postgres = conn.dialect.name == "postgresql"
    if postgres:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.commit()
    try:
        await conn.run_sync(run)
        await conn.commit()
    finally:
        if postgres:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            await conn.commit()
