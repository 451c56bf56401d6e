"""`SqlStore`: engines, transactions and migrations behind the store port.

SQLite (the embedded default) allows one writer at a time. Writes therefore go through a
single connection guarded by an asyncio lock and open with `BEGIN IMMEDIATE`, so a write
transaction never upgrades from a read lock and never meets SQLITE_BUSY from its own
process; reads use a small pool of their own and see WAL snapshots. `synchronous=FULL`
makes every commit durable before the call that caused it returns.

One process per SQLite file: the store holds an exclusive lock on `<file>.lock` while open, so a
second process (which would run a second dispatcher and take the first one's agents for dead)
refuses to start. Several replicas need PostgreSQL.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from humanline.domain.clock import Clock
from humanline.store.port import StoreError
from humanline.store.sql import migrations
from humanline.store.sql.repositories import (
    SqlAgentRepository,
    SqlHandoffRepository,
    SqlOfferRepository,
    SqlPoolQueries,
    SqlSessionRepository,
)


class SqlUnitOfWork:
    """One transaction on one connection, with its repositories and its time."""

    def __init__(self, conn: AsyncConnection, now: datetime) -> None:
        self.now = now
        self.agents = SqlAgentRepository(conn)
        self.handoffs = SqlHandoffRepository(conn)
        self.offers = SqlOfferRepository(conn)
        self.sessions = SqlSessionRepository(conn)
        self.pool = SqlPoolQueries(conn)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide where transactions begin (see _begin_* below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=10000",
    ):
        cursor.execute(pragma)
    cursor.close()


def _exclusive_lock(path: Path) -> int:
    """Holds an exclusive lock on `path` for this process; StoreError if another has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"another humanline process is using {path.with_suffix('')}; one process per "
            "SQLite file (use PostgreSQL for several replicas)"
        ) from None
    return fd


class SqlStore:
    """The store on SQLite or PostgreSQL through SQLAlchemy's async engine."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.url = make_url(url)
        self._clock = clock
        self._write_lock = asyncio.Lock()
        self._writer: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._lock_fd: int | None = None

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded store."""
        return self.url.get_backend_name() == "sqlite"

    async def open(self) -> None:
        """Connects, then migrates the schema to the newest version."""
        if self.is_sqlite:
            self._writer, self._reader = self._sqlite_engines()
        else:
            engine = create_async_engine(
                self.url, pool_size=10, max_overflow=10, pool_pre_ping=True
            )
            self._writer = self._reader = engine
        async with self._writer.connect() as conn:
            await migrations.upgrade(conn)

    def _sqlite_engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        database = self.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _exclusive_lock(Path(f"{database}.lock"))
        writer = create_async_engine(self.url, pool_size=1, max_overflow=0)
        reader = create_async_engine(self.url, pool_size=4, max_overflow=4)
        for engine, begin in ((writer, "BEGIN IMMEDIATE"), (reader, "BEGIN")):
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(
                engine.sync_engine,
                "begin",
                lambda conn, statement=begin: conn.exec_driver_sql(statement),
            )
        return writer, reader

    async def revision(self) -> str | None:
        """The schema revision the database is at."""
        if self._reader is None:
            raise StoreError("store is not open")
        async with self._reader.connect() as conn:
            return await migrations.current(conn)

    async def close(self) -> None:
        """Releases connections."""
        for engine in {self._writer, self._reader}:
            if engine is not None:
                await engine.dispose()
        self._writer = self._reader = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the lock
            self._lock_fd = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlUnitOfWork]:
        """A read-write transaction; commits on normal exit, rolls back on exception."""
        if self._writer is None:
            raise StoreError("store is not open")
        async with self._write_lock:
            try:
                async with self._writer.begin() as conn:
                    yield SqlUnitOfWork(conn, self._clock.now())
            except DBAPIError as exc:
                raise StoreError(str(exc.orig)) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlUnitOfWork]:
        """A read-only snapshot."""
        if self._reader is None:
            raise StoreError("store is not open")
        try:
            async with self._reader.connect() as conn, conn.begin():
                yield SqlUnitOfWork(conn, self._clock.now())
        except DBAPIError as exc:
            raise StoreError(str(exc.orig)) from exc
