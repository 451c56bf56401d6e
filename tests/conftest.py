"""Fixtures shared by all tests: a database per test, the service, a real gRPC server.

Every test that takes `db_url` runs twice: on the embedded SQLite store and on PostgreSQL.
The PostgreSQL side uses one database per test run, created with a unique name, emptied
before each test and dropped at the end. `HUMANLINE_TEST_DATABASE_URL` names the server (any
database on it; default postgres@127.0.0.1:5432). When it cannot be reached the PostgreSQL
tests are skipped with one line saying so, and fail instead when CI=true.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from humanline.bench import postgres as throwaway
from humanline.domain.clock import SystemClock
from humanline.domain.rules import DispatchPolicy
from humanline.grpc.server import RunningServer, create_server
from humanline.service.app import Humanline
from humanline.store import create_store
from humanline.store.sql.listener import asyncpg_dsn
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import metadata
from humanline.tokens import KeyRing
from tests.support.client import Stubs

# Fast enough for tests, still far above scheduling noise on a loaded 2-core machine.
FAST = DispatchPolicy(
    offer_timeout=timedelta(seconds=1.0),
    grace_period=timedelta(seconds=1.5),
    heartbeat_interval=timedelta(seconds=30),
)


@dataclass
class Served:
    """A service behind a real gRPC server on a free port; callers authenticate with tokens
    signed by `keys`."""

    app: Humanline
    running: RunningServer
    keys: KeyRing | None = None

    def stubs(self) -> Stubs:
        """A client whose calls carry the right token each."""
        return Stubs.connect(self.target, self.keys)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    async def stop(self) -> None:
        await self.running.stop(self.app, grace=1.0)


async def serve(db_url: str, policy: DispatchPolicy, **server_args: Any) -> Served:
    """Starts the service and a server on port 0 (`server_args` go to `create_server`)."""
    app = Humanline(
        create_store(db_url, SystemClock()), policy, sweep_interval=0.25, watch_interval=0.05
    )
    await app.start()
    keys = KeyRing.generate()
    running = await create_server(app, "127.0.0.1:0", keys=keys, hello_timeout=2.0, **server_args)
    return Served(app, running, keys)


PG_SERVER = os.environ.get("HUMANLINE_TEST_DATABASE_URL", throwaway.DEFAULT_SERVER)
TABLES = ", ".join(table.name for table in metadata.sorted_tables)


async def create_postgres_database(prefix: str, *, migrate: bool = True) -> str:
    """Creates a database with a unique name on the test server, migrates it (unless told not
    to) and returns its URL. When the server cannot be reached, skips the test with one line
    saying so (fails instead when CI=true)."""
    try:
        url = await throwaway.create_database(PG_SERVER, prefix)
    except throwaway.Unreachable as exc:
        message = (
            f"PostgreSQL tests need a server: {exc}; start it or set HUMANLINE_TEST_DATABASE_URL"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if not migrate:
        return url
    try:
        store = SqlStore(url, SystemClock())
        await store.open()  # migrates
        await store.close()
    except BaseException:
        await drop_postgres_database(url)
        raise
    return url


async def drop_postgres_database(url: str) -> None:
    """Drops a database made by `create_postgres_database`, disconnecting what is left."""
    await throwaway.drop_database(PG_SERVER, url)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database for this test run on the test PostgreSQL server, migrated; dropped after."""
    url = asyncio.run(create_postgres_database("humanline_test"))
    yield url
    asyncio.run(drop_postgres_database(url))


def empty_postgres(url: str) -> None:
    """Empties every table of a test database (faster than a database per test)."""

    async def truncate() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(make_url(url)), timeout=5)
        try:
            await conn.execute(f"TRUNCATE {TABLES} CASCADE")
        finally:
            await conn.close()

    asyncio.run(truncate())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store the test runs on."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh database for the test, on `backend`."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'humanline.db'}"
    url: str = request.getfixturevalue("postgres_database")
    empty_postgres(url)
    return url


@pytest.fixture
def policy() -> DispatchPolicy:
    """The dispatch numbers for the test; override in a module for other timings."""
    return FAST


@pytest.fixture
async def served(db_url: str, policy: DispatchPolicy) -> AsyncIterator[Served]:
    """The service on a real gRPC server."""
    s = await serve(db_url, policy)
    yield s
    async with asyncio.timeout(15):  # a shutdown that hangs is a bug: fail, don't stall
        await s.stop()


@pytest.fixture
async def client(served: Served) -> AsyncIterator[Stubs]:
    """Stubs on a channel to the served service."""
    stubs = served.stubs()
    yield stubs
    await stubs.close()
