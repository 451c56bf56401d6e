"""Schema migrations (Alembic), applied at start and by `humanline migrate`.

Revisions live in `versions/`; each is self-contained (plain SQLAlchemy types, no imports
from the application) so that later code changes never alter an old migration.
"""

from __future__ import annotations

from collections.abc import Callable
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
    an advisory lock, so that two replicas starting at once do not race. On SQLite with
    foreign keys off, as Alembic's batch mode needs (copying a table that others reference
    must not cascade its deletion to them), and checked once the revisions are in."""
    await _migrate(conn, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(conn: AsyncConnection, revision: str) -> None:
    """Takes the database behind `conn` back to `revision`, as `upgrade` does forward."""
    await _migrate(conn, lambda cfg: command.downgrade(cfg, revision))


async def _migrate(conn: AsyncConnection, step: Callable[[Config], None]) -> None:
    def run(sync_conn: Connection) -> None:
        step(alembic_config(sync_conn))

    postgres = conn.dialect.name == "postgresql"
    sqlite = conn.dialect.name == "sqlite"
    if postgres:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.commit()
    if sqlite:
        if conn.in_transaction():  # the pragma is a no-op inside one; migrating commits anyway
            await conn.commit()
        await _sqlite_pragma(conn, "PRAGMA foreign_keys=OFF")
    try:
        await conn.run_sync(run)
        await conn.commit()
        if sqlite:
            broken = await _sqlite_pragma(conn, "PRAGMA foreign_key_check")
            if broken:
                raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
    finally:
        if postgres:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            await conn.commit()
        if sqlite:
            await _sqlite_pragma(conn, "PRAGMA foreign_keys=ON")


async def _sqlite_pragma(conn: AsyncConnection, pragma: str) -> list[tuple[object, ...]]:
    """Runs a pragma outside any transaction (foreign_keys is a no-op inside one): on the
    driver's connection, which begins none by itself (see `store._sqlite_pragmas`)."""
    raw = await conn.get_raw_connection()

    def run(sync_conn: Connection) -> list[tuple[object, ...]]:
        cursor = raw.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(pragma)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    return await conn.run_sync(run)
