"""Fixtures for end-to-end tests: the real server in a process of its own, always stopped.

`start_server(**HUMANLINE_settings)` starts one more `humanline serve` (fresh SQLite file in
tmp_path, free port, short timings), waits until it is SERVING and returns its `ServerProcess`
(`wait=False`: only spawns it); `server` is one with the defaults, `client` stubs connected to
it. At teardown every server still running gets SIGTERM and must exit with 0 within the timeout
(SIGKILL otherwise, and the test errors), without a traceback on stderr or an error-level log
line: so every e2e test also checks the graceful shutdown and a clean run. When a test fails,
the tail of each server's captured stderr and stdout is printed with the teardown output.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from humanline.store.sql.listener import asyncpg_dsn
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.e2e.process import ServerProcess, StartServer, connect, tail
from tests.support.client import Stubs

REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, so teardown knows whether the test failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture
async def start_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StartServer]:
    """Starts servers for the test; stops (SIGTERM) every one still running at teardown."""
    servers: list[ServerProcess] = []

    async def start(wait: bool = True, **settings: str) -> ServerProcess:
        server = ServerProcess.create(tmp_path / f"server{len(servers) + 1}", **settings)
        servers.append(server)
        if wait:
            await server.start()
        else:
            await server.spawn()
        return server

    yield start

    problems = []
    for server in servers:
        if not server.running:
            continue
        assert server.process is not None
        crashed = server.process.returncode
        try:
            code = await server.terminate()
        except BaseException:
            if server.process is not None:  # never leave a server behind
                await server.kill()
            raise
        if crashed is not None:
            problems.append(f"{server.target} had exited on its own with {crashed}")
        elif server.forced_kills:
            problems.append(f"{server.target} ignored SIGTERM and was killed")
        elif code != 0:
            problems.append(f"{server.target} exited with {code} after SIGTERM")
        else:
            problems.extend(f"{server.target}: {trouble}" for trouble in server.trouble())
    if problems or _failed(request):
        for server in servers:
            for run in range(1, server.runs + 1):
                print(tail(server.stderr_path(run), 60))
                print(tail(server.stdout_path(run), 60))
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
async def server(start_server: StartServer) -> ServerProcess:
    """One server with the default e2e settings."""
    return await start_server()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[Stubs]:
    """Stubs on a channel to `server`, closed before the server stops."""
    stubs = connect(server.target)
    yield stubs
    await stubs.close()


# --- a PostgreSQL database of the test's own (several replicas share it) ----------------------


@dataclass
class PostgresDatabase:
    """A fresh database: `url` for the servers (HUMANLINE_DATABASE_URL), `dsn` for asyncpg."""

    name: str
    url: str
    dsn: str


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresDatabase]:
    """A fresh, migrated PostgreSQL database with a unique name, dropped at the end. Request it
    before `start_server`, so that the servers stop before it is dropped. Skips when the server
    (HUMANLINE_TEST_DATABASE_URL, as in tests/conftest.py) is unreachable; fails when CI=true.
    HUMANLINE_E2E_KEEP_DATABASE=1 keeps it for a look afterwards."""
    url = await create_postgres_database("humanline_e2e")
    name = str(make_url(url).database)
    try:
        yield PostgresDatabase(name, url, asyncpg_dsn(make_url(url)))
    finally:
        if os.environ.get("HUMANLINE_E2E_KEEP_DATABASE"):
            print(f"kept database {name}")
        else:
            await drop_postgres_database(url)
