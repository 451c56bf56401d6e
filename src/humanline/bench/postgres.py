"""Throw-away PostgreSQL databases: one with a unique name per server under test, created
through an admin connection and dropped afterwards (the test suite makes its own the same way).
"""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.engine import make_url

from humanline.store.sql.listener import asyncpg_dsn

DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 5.0


class Unreachable(Exception):
    """The PostgreSQL server could not be reached (or refused to create a database); the
    message names it and says why."""


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(server_url)), timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(server_url: str, prefix: str) -> str:
    """Creates an empty database named `prefix` and a random suffix on the server of
    `server_url` (any database on it) and returns its URL; raises Unreachable."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        await _admin(server_url, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        shown = make_url(server_url).render_as_string()
        raise Unreachable(f"{shown} is unreachable ({exc})") from exc
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, url: str) -> None:
    """Drops the database of `url`, made by `create_database` on the server of `server_url`,
    disconnecting whoever is still connected to it; raises Unreachable."""
    name = make_url(url).database
    try:
        await _admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise Unreachable(f"could not drop database {name} ({exc})") from exc
