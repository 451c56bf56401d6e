"""Fixtures shared by all tests: a database per test, the service, a real gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from humanline.domain.clock import SystemClock
from humanline.domain.rules import DispatchPolicy
from humanline.grpc.server import RunningServer, create_server
from humanline.service.app import Humanline
from humanline.store import create_store
from tests.support.client import Stubs

# Fast enough for tests, still far above scheduling noise on a loaded 2-core machine.
FAST = DispatchPolicy(
    offer_timeout=timedelta(seconds=1.0),
    grace_period=timedelta(seconds=1.5),
    heartbeat_interval=timedelta(seconds=30),
)


@dataclass
class Served:
    """A service behind a real gRPC server on a free port."""

    app: Humanline
    running: RunningServer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    async def stop(self) -> None:
        await self.running.stop(self.app, grace=1.0)


async def serve(db_url: str, policy: DispatchPolicy) -> Served:
    """Starts the service and a server on port 0."""
    app = Humanline(
        create_store(db_url, SystemClock()), policy, sweep_interval=0.25, watch_interval=0.05
    )
    await app.start()
    running = await create_server(app, "127.0.0.1:0", hello_timeout=2.0)
    return Served(app, running)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh embedded database for the test."""
    return f"sqlite+aiosqlite:///{tmp_path / 'humanline.db'}"


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
    stubs = Stubs.connect(served.target)
    yield stubs
    await stubs.close()
