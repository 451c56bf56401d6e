"""The embedded store's writer: SQLite statements on the event loop's own thread, and commits
grouped so that one fsync makes many transactions durable.

Why not aiosqlite for writes: there every statement is a hop to the connection's thread and
back, about 470 µs on the reference machine, nearly all of it waiting for wake-ups and the
GIL, while sqlite3 takes a few µs for an indexed statement. A hot-path transaction is a
handful of indexed statements on a connection no other process uses (the store locks the
file), so the writer runs them synchronously, in the loop. Reads, which may be long scans
(pool status, lists), stay on aiosqlite's threads.

Group commit: the first unit of work opens a transaction (`BEGIN IMMEDIATE`) and schedules
its commit; every unit of work is a SAVEPOINT in it, released when the unit succeeds and
rolled back when it fails, so a failing unit undoes only itself. The commit runs once the
units already waiting for the writer have run: alone under light load (no added latency),
many at a time under heavy load (one fsync for all). Its fsync runs in a thread, so the loop
serves on meanwhile; units arriving then wait for the writer and form the next group. A
unit's caller returns only after the commit that holds its changes is durable
(`synchronous=FULL`); if that commit fails, every unit in it fails with `StoreError` and
nothing of theirs happened.

Running in the loop has one cost: should another program (an operator's sqlite3 shell) hold
a write lock on the file, `BEGIN IMMEDIATE` waits for it, up to the busy timeout, with the
loop. Other humanline processes cannot: the store locks the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Dialect, RootTransaction
from sqlalchemy.exc import DBAPIError

from humanline.store.port import StoreError
from humanline.store.sql.prepared import Plans
from humanline.store.trips import RoundTrips

log = structlog.get_logger("humanline.store")


class InlineConnection:
    """The slice of `AsyncConnection` the repositories use, over a synchronous connection:
    each call runs to completion without giving up the loop.

    Prepared statements take a shorter way (`prepared`): run on sqlite3 directly, with the
    same bind and result processing as SQLAlchemy's; errors still come as SQLAlchemy's
    `DBAPIError` subclasses. Everything else goes through SQLAlchemy."""

    def __init__(self, conn: Connection, trips: RoundTrips) -> None:
        self._conn = conn
        self.driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        self._plans = Plans(conn.dialect)
        self._trips = trips  # the rest are counted by the engine's events (`SqlStore`)

    def attach(self) -> None:
        """Takes up the driver's connection again (it is new after an invalidation)."""
        self.driver = self._conn.connection.driver_connection  # type: ignore[assignment]

    @property
    def dialect(self) -> Dialect:
        """The connection's dialect."""
        return self._conn.dialect

    async def execute(self, statement: sa.Executable, parameters: Any = None) -> Any:
        """Runs a statement; returns its result, fetched."""
        planned = self._plans.plan(statement, parameters)
        if planned is None:
            return self._conn.execute(statement, parameters)
        plan, values, many = planned
        bound = [plan.bind(v) for v in values]
        self._trips.add()
        try:
            if many:
                cursor = self.driver.executemany(plan.sql, bound)
            else:
                cursor = self.driver.execute(plan.sql, bound[0])
            fetched = cursor.fetchall() if plan.returns_rows else ()
            return plan.rows(fetched, cursor.rowcount)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(plan.sql, bound, exc, sqlite3.Error) from exc

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A SAVEPOINT around the block, rolled back if the block raises."""
        with self._conn.begin_nested():
            yield


class BriefReader:
    """Brief reads (`Store.read(brief=True)`): a few statements of bounded cost, run like the
    writer's, on a synchronous connection of their own in the loop's thread, one unit at a
    time. A hop to aiosqlite's thread and back costs each statement more than an indexed
    read takes, and under load it waits its turn on a busy loop again and again; a frequent
    small read (the early-warning check, some two milliseconds of SQLite) is cheaper run at
    once. Its transaction (`BEGIN`, deferred) sees what had committed when its first
    statement ran; it is rolled back at the end, having changed nothing."""

    def __init__(self, conn: Connection, trips: RoundTrips) -> None:
        self._conn = conn
        self._inline = InlineConnection(conn, trips)
        self._lock = asyncio.Lock()
        self.units = 0  # for tests: how many brief reads ran

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[InlineConnection]:
        """One read-only transaction on the connection."""
        async with self._lock:
            self.units += 1
            try:
                transaction = self._conn.begin()
                self._inline.attach()
            except DBAPIError as exc:
                raise StoreError(f"cannot begin a transaction: {exc.orig}") from exc
            try:
                yield self._inline
            finally:
                try:
                    transaction.rollback()
                except DBAPIError:
                    self._conn.invalidate()  # the next unit starts on a new connection

    def close(self) -> None:
        """Closes the connection."""
        self._conn.close()


@dataclass(eq=False)
class _Batch:
    """Units of work that commit together."""

    transaction: RootTransaction
    committed: asyncio.Future[None]
    units: int = 0
    failed: BaseException | None = None


class GroupCommitWriter:
    """The single writer of one SQLite database."""

    def __init__(self, conn: Connection, trips: RoundTrips) -> None:
        self._conn = conn
        self._inline = InlineConnection(conn, trips)
        self._lock = asyncio.Lock()  # a unit of work, or a commit, at a time
        self._batch: _Batch | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self.commits = 0  # for tests and the bench: how many fsyncs the units shared
        self.units = 0

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[InlineConnection]:
        """One unit of work; returns (or raises) once its batch's commit is durable."""
        async with self._lock:
            batch = self._batch
            if batch is not None and batch.failed is not None:
                self._fail(batch, batch.failed)  # roll it back before starting anew
                batch = None
            if batch is None:
                batch = self._open()
            self._savepoint("SAVEPOINT unit")
            try:
                yield self._inline
                self._savepoint("RELEASE unit")
            except BaseException as exc:
                self._undo(batch, exc)
                raise
            batch.units += 1
        # Shielded: the commit happens for the whole batch whether or not this caller waits.
        await asyncio.shield(batch.committed)

    def _open(self) -> _Batch:
        try:
            transaction = self._conn.begin()
            self._inline.attach()  # the driver's connection may be new (after invalidate)
        except DBAPIError as exc:
            raise StoreError(f"cannot begin a transaction: {exc.orig}") from exc
        batch = _Batch(transaction, asyncio.get_running_loop().create_future())
        self._batch = batch
        task = asyncio.create_task(self._flush(batch), name="sqlite-group-commit")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        return batch

    def _savepoint(self, sql: str) -> None:
        """Savepoint statements go to sqlite3 directly: SQLAlchemy's nested transactions
        cost more than the rest of a short unit of work, and need no tracking here."""
        try:
            self._inline.driver.execute(sql)
        except sqlite3.Error as exc:
            raise StoreError(f"{sql} failed: {exc}") from exc

    def _undo(self, batch: _Batch, exc: BaseException) -> None:
        """Rolls a failed unit back to its savepoint. If SQLite has already rolled back the
        whole transaction (it does on some I/O errors), the batch is lost: the units that
        ran in it fail at their commit."""
        driver = self._inline.driver
        if not driver.in_transaction:
            batch.failed = exc
            return
        try:
            driver.execute("ROLLBACK TO unit")
            driver.execute("RELEASE unit")
        except sqlite3.Error as error:
            batch.failed = error

    def _fail(self, batch: _Batch, cause: BaseException) -> None:
        """Rolls a lost batch back; its units' callers get a `StoreError`."""
        if self._batch is batch:
            self._batch = None
        if self._conn.in_transaction():
            try:
                batch.transaction.rollback()
            except DBAPIError:
                self._conn.invalidate()  # the next batch starts on a new connection
        if not batch.committed.done():
            error = (
                cause if isinstance(cause, StoreError) else StoreError(f"not committed: {cause}")
            )
            batch.committed.set_exception(error)
            batch.committed.exception()  # retrieved: a batch may have no caller left waiting

    async def _flush(self, batch: _Batch) -> None:
        async with self._lock:
            if batch.committed.done():
                return  # already failed and rolled back
            if self._batch is batch:
                self._batch = None
            if batch.failed is not None:
                self._fail(batch, batch.failed)
                return
            # The fsync runs in a thread, so the loop serves meanwhile; units arriving now
            # wait for the lock and form the next batch.
            commit = asyncio.ensure_future(asyncio.to_thread(batch.transaction.commit))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                await asyncio.wait([commit])  # the thread still has the connection
                self._settle(batch, commit)
                raise
            except Exception:
                pass  # the commit's own error, settled below
            self._settle(batch, commit)

    def _settle(self, batch: _Batch, commit: asyncio.Future[None]) -> None:
        error = commit.exception()
        if error is not None:
            self._fail(batch, error)
            return
        self.commits += 1
        self.units += batch.units
        batch.committed.set_result(None)

    async def close(self) -> None:
        """Commits what is open, then closes the connection."""
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)
        self._conn.close()
        log.info("sqlite_writer_closed", commits=self.commits, transactions=self.units)
