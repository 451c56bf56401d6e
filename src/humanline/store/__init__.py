"""Persistence behind a port (`store.port`) with its SQL implementation (`store.sql`)."""

from __future__ import annotations

from humanline.domain.clock import Clock
from humanline.store.port import Store
from humanline.store.sql.store import SqlStore


def create_store(url: str, clock: Clock, *, pool_size: int = 10, notify: bool = True) -> Store:
    """The store for a database URL: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://...`.
    `notify` off means replicas only poll for each other's changes (PgBouncer transaction
    pooling cannot LISTEN)."""
    return SqlStore(url, clock, pool_size=pool_size, notify=notify)
