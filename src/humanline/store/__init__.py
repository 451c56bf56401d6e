"""Persistence behind a port (`store.port`) with its SQL implementation (`store.sql`)."""

from __future__ import annotations

from humanline.domain.clock import Clock
from humanline.store.port import Store
from humanline.store.sql.store import SqlStore


def create_store(url: str, clock: Clock) -> Store:
    """The store for a database URL: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://...`."""
    return SqlStore(url, clock)
