"""LISTEN on a dedicated asyncpg connection for other replicas' hints.

Hints are ids only and only hints: PostgreSQL drops them while the connection is down and
never replays them. So after every (re)connection the listener calls `on_reset`, and the
replicas also poll for changes at least once a second; a lost hint delays, never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import URL

CHANNEL = "humanline"
log = structlog.get_logger("humanline.listener")


def asyncpg_dsn(url: URL) -> str:
    """The plain libpq-style DSN asyncpg takes, from a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    """Listens on CHANNEL until cancelled, reconnecting with jittered backoff."""

    def __init__(
        self, url: URL, on_hint: Callable[[str], None], on_reset: Callable[[], None]
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._on_hint = on_hint
        self._on_reset = on_reset
        self.connected = asyncio.Event()

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_hint(payload)

    async def run(self) -> None:
        """Listens until cancelled."""
        backoff = 0.1
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._received)
                self.connected.set()
                backoff = 0.1
                self._on_reset()  # hints sent while we were away are gone: look again
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5):
                            await lost.wait()
                    if conn.is_closed():
                        break
                    await conn.execute("SELECT 1")  # notices a silently dead connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listener_disconnected", error=type(exc).__name__)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(backoff * (1 + random.random()))
            backoff = min(backoff * 2, 5.0)
