"""`SqlStore`: engines, transactions, clock, hints and migrations behind the store port.

SQLite (the embedded default) allows one writer at a time. Writes therefore go through a
single connection, run on the event loop's thread with commits grouped (`sqlite`), in
transactions opened with `BEGIN IMMEDIATE`, so a write never upgrades from a read lock and
never meets SQLITE_BUSY from its own process; reads use a small aiosqlite pool of their own
and see WAL snapshots. `synchronous=FULL` makes every commit durable before the call that
caused it returns. One process per SQLite
file: the store holds an exclusive lock on `<file>.lock` while open, so a second process
(which would run a second dispatcher and take the first one's agents for dead) refuses to
start. The process clock is the clock.

PostgreSQL is the coordination engine for several replicas: transactions run concurrently
(READ COMMITTED; conditional updates, row locks and constraints guard every claim), the
database's `now()` is the one clock, a deadlock or serialization failure becomes a
`StoreConflict` that the service retries whole, and hints for other replicas go out with
`pg_notify` inside the transaction, so they are delivered only if it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from humanline.domain.clock import Clock
from humanline.store.port import StoreConflict, StoreError
from humanline.store.sql import migrations
from humanline.store.sql.listener import CHANNEL, PgListener
from humanline.store.sql.policies import SqlRoutingPolicyRepository
from humanline.store.sql.postgres import CONNECTION_FAILED, PgConnection, counted_connections
from humanline.store.sql.prepared import Plans
from humanline.store.sql.repositories import (
    APPLICATION_NAME,
    SqlAgentRepository,
    SqlConnection,
    SqlHandoffRepository,
    SqlOfferRepository,
    SqlPoolQueries,
    SqlQualityTracks,
    SqlReplicaRepository,
    SqlSessionRepository,
)
from humanline.store.sql.retention import SqlRetention
from humanline.store.sql.rollups import SqlQualityRollups
from humanline.store.sql.sqlite import BriefReader, GroupCommitWriter
from humanline.store.trips import RoundTrips

# The tables whose rows the hot path updates or deletes, each update leaving a row version
# behind (on PostgreSQL, for VACUUM to reclaim): agents and sessions change with every
# offer and status, replicas with every heartbeat, handoffs and offers through their life,
# quality facts are deleted once folded, quality buckets are added to.
HOT_TABLES = (
    "agents",
    "sessions",
    "replicas",
    "handoffs",
    "offers",
    "quality_facts",
    "quality_rollups",
)
VACUUM_LOCK = 7_283_003  # pg_try_advisory_lock key: one replica vacuums at a time
VACUUM_COST_DELAY = "2ms"  # autovacuum's own pace (autovacuum_vacuum_cost_delay's default)

# SQLSTATEs after which PostgreSQL has rolled the transaction back and a retry is safe.
RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected

NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', hint) FROM unnest(CAST(:hints AS text[])) AS hint")


async def _end(conn: AsyncConnection, transaction: Any, *, commit: bool) -> None:
    """Commits (or rolls back) and hands the connection back to its pool."""
    try:
        if commit:
            await transaction.commit()
        else:
            with contextlib.suppress(DBAPIError, OSError):  # the first error is the story
                await transaction.rollback()
    finally:
        await conn.close()


class SqlUnitOfWork:
    """One transaction on one connection, with its repositories and its time."""

    def __init__(
        self,
        conn: SqlConnection,
        now: datetime,
        *,
        notifies: bool,
        writer: str,
        serialized: bool = False,
    ) -> None:
        self.now = now
        self.serialized = serialized
        self.agents = SqlAgentRepository(conn, now, writer)
        self.handoffs = SqlHandoffRepository(conn, now, writer)
        self.offers = SqlOfferRepository(conn, now)
        self.sessions = SqlSessionRepository(conn, now)
        self.pool = SqlPoolQueries(conn, now)
        self.quality = SqlQualityTracks(conn, now)
        self.rollups = SqlQualityRollups(conn)
        self.retention = SqlRetention(conn)
        self.replicas = SqlReplicaRepository(conn, now)
        self.policies = SqlRoutingPolicyRepository(conn, now)
        self._conn = conn
        self._notifies = notifies

    async def notify(self, hints: Collection[str]) -> None:
        """Hints for other replicas, delivered when (and only if) this transaction commits."""
        if self._notifies and hints:
            await self._conn.execute(NOTIFY, {"hints": sorted(hints)})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide where transactions begin (see _sqlite_engines).
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


def _sqlite_setup(engine: Engine, begin: str, trips: RoundTrips) -> None:
    """Pragmas on every new connection, `begin` as the statement that opens a transaction
    (`BEGIN IMMEDIATE` for writers, so they never upgrade from a read lock), and each
    statement, BEGIN and COMMIT counted in `trips`."""
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    event.listen(engine, "before_cursor_execute", lambda *_: trips.add())
    event.listen(engine, "commit", lambda _: trips.add())


def _query_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only = ON")


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


def _store_error(exc: DBAPIError) -> StoreError:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in RETRYABLE:
        return StoreConflict(str(exc.orig))
    return StoreError(str(exc.orig))


CLOSE_WAIT_SECONDS = 10.0  # how long closing waits for transactions under way

# Every PostgreSQL connection's settings, sent when it connects.
PG_SETTINGS = {
    # No parallel workers: every statement the service sends reads a bounded slice, and
    # starting workers costs several milliseconds, many times what those reads take. The
    # planner misjudges the quality buckets (it takes bucket starts and resolutions to be
    # independent and puts a day's hours by type at some 50 times the rows there are), so
    # that adding them up looked worth workers.
    "max_parallel_workers_per_gather": "0",
}


class SqlStore:
    """The store on SQLite or PostgreSQL through SQLAlchemy's async engine."""

    def __init__(self, url: str, clock: Clock, *, pool_size: int = 10, notify: bool = True) -> None:
        self.url = make_url(url)
        self._clock = clock
        self._pool_size = pool_size
        self._notify = notify and not self.is_sqlite
        self._writer: AsyncEngine | None = None
        self._inline_engine: Engine | None = None
        self._group: GroupCommitWriter | None = None  # SQLite's writer
        self._brief_engine: Engine | None = None
        self._brief: BriefReader | None = None  # SQLite's brief reads
        self._reader: AsyncEngine | None = None
        self._lock_fd: int | None = None
        self._ending: set[asyncio.Task[None]] = set()  # see _transaction
        self._open = 0  # transactions begun and not yet ended (see close)
        self._none_open = asyncio.Event()
        self._none_open.set()
        self._closing = False
        self._tag = ""
        self._plans: Plans | None = None  # PostgreSQL's prepared statements
        self.round_trips = RoundTrips()

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded store."""
        return self.url.get_backend_name() == "sqlite"

    @property
    def exclusive(self) -> bool:
        """SQLite is used by one process at a time (file lock); PostgreSQL is shared."""
        return self.is_sqlite

    @property
    def background_writers(self) -> int | None:
        """Half the pool on PostgreSQL: matching beyond that only queues for connections, in
        front of the agent streams' reads (an offer made on another replica reaches its
        agent through one) and the calls; SQLite's writer takes any number."""
        return None if self.is_sqlite else max(1, self._pool_size // 2)

    async def open(self, writer: str = "") -> None:
        """Connects, then migrates the schema to the newest version. `writer` tags the rows
        this process writes (see the replicas' change feed)."""
        self._tag = writer
        if self.is_sqlite:
            self._writer, self._reader = self._sqlite_engines()
        else:
            # Named, so that the replicas' change feed can find their transactions (and ops
            # can tell the replicas apart) in pg_stat_activity.
            name = f"{APPLICATION_NAME} {writer}".strip()
            engine = create_async_engine(
                self.url,
                pool_size=self._pool_size,
                max_overflow=self._pool_size,
                connect_args={
                    "server_settings": {"application_name": name, **PG_SETTINGS},
                    "connection_class": counted_connections(self.round_trips),
                },
            )
            self._writer = self._reader = engine
            self._plans = Plans(engine.dialect)
        try:
            async with self._writer.connect() as conn:
                await migrations.upgrade(conn)
            if self.is_sqlite:
                self._group = self._sqlite_writer()
                self._brief = self._sqlite_brief_reader()
        except (OSError, DBAPIError) as exc:
            await self.close()
            raise StoreError(f"cannot open the database: {exc}") from exc

    def _sqlite_engines(self) -> tuple[AsyncEngine, AsyncEngine]:
        database = self.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _exclusive_lock(Path(f"{database}.lock"))
        # The async "writer" only migrates the schema (Alembic runs on it at open); writes
        # afterwards go through `_sqlite_writer`.
        writer = create_async_engine(self.url, pool_size=1, max_overflow=0)
        reader = create_async_engine(self.url, pool_size=4, max_overflow=4)
        _sqlite_setup(writer.sync_engine, "BEGIN IMMEDIATE", self.round_trips)
        _sqlite_setup(reader.sync_engine, "BEGIN", self.round_trips)
        return writer, reader

    def _sqlite_writer(self) -> GroupCommitWriter:
        """The synchronous connection that runs every write (see `sqlite`)."""
        self._inline_engine = self._sqlite_sync_engine("BEGIN IMMEDIATE")
        return GroupCommitWriter(self._inline_engine.connect(), self.round_trips)

    def _sqlite_brief_reader(self) -> BriefReader:
        """The synchronous connection that runs brief reads (see `sqlite.BriefReader`)."""
        self._brief_engine = self._sqlite_sync_engine("BEGIN", query_only=True)
        return BriefReader(self._brief_engine.connect(), self.round_trips)

    def _sqlite_sync_engine(self, begin: str, *, query_only: bool = False) -> Engine:
        """An engine of one synchronous connection, used in the loop's thread."""
        engine = sa.create_engine(
            self.url.set(drivername="sqlite"),
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},  # opened here, closed on shutdown
        )
        _sqlite_setup(engine, begin, self.round_trips)
        if query_only:  # after the pragmas: reads, nothing else
            event.listen(engine, "connect", _query_only)
        return engine

    async def revision(self) -> str | None:
        """The schema revision the database is at."""
        if self._reader is None:
            raise StoreError("store is not open")
        async with self._reader.connect() as conn:
            return await migrations.current(conn)

    async def close(self) -> None:
        """Refuses new transactions, waits for those under way (their callers are stopping
        or being cancelled: a connection still checked out when the engine is disposed is
        never closed) and releases connections."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await self._none_open.wait()
        if self._ending:  # transactions of cancelled callers, ending in the background
            await asyncio.gather(*list(self._ending), return_exceptions=True)
        if self._group is not None:
            await self._group.close()
            self._group = None
        if self._inline_engine is not None:
            self._inline_engine.dispose()
            self._inline_engine = None
        if self._brief is not None:
            self._brief.close()
            self._brief = None
        if self._brief_engine is not None:
            self._brief_engine.dispose()
            self._brief_engine = None
        for engine in {self._writer, self._reader}:
            if engine is not None:
                await engine.dispose()
        self._writer = self._reader = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the lock
            self._lock_fd = None

    @asynccontextmanager
    async def _transaction(
        self, engine: AsyncEngine, isolation: str | None = None
    ) -> AsyncIterator[tuple[AsyncConnection, datetime]]:
        """A transaction on a pooled connection, with its time: committed when the block
        ends normally, rolled back otherwise.

        On PostgreSQL the time is the database's, and reading it is the transaction's first
        statement, which SQLAlchemy's asyncpg adapter sends after BEGIN. It doubles as the
        check that a pooled connection still works: one the database closed meanwhile (a
        restart, a failover, an idle timeout) is thrown away there and the transaction
        begins again on a new one, before anything else was sent. That saves the round trip
        a ping on every checkout would cost."""
        async with self._counted(), self._begin(engine, isolation) as begun:
            yield begun

    @asynccontextmanager
    async def _counted(self) -> AsyncIterator[None]:
        """Counts a use of a connection as under way (see `close`); refused once closing."""
        if self._closing:
            raise StoreError("the store is closing")
        self._open += 1
        self._none_open.clear()
        try:
            yield
        finally:
            self._open -= 1
            if not self._open:
                self._none_open.set()

    @asynccontextmanager
    async def _statements(self, plans: Plans) -> AsyncIterator[PgConnection]:
        """A pooled PostgreSQL connection outside any transaction: each statement is one
        round trip and its own transaction (see `read`'s `brief`). A connection that fails
        is thrown away rather than handed to the next caller, whatever the error: one the
        database just closed may fail first with the server's last words, before asyncpg
        has seen it close."""
        assert self._reader is not None
        async with self._counted():
            conn = await self._reader.connect()
            try:
                yield await PgConnection.of(conn, plans, autocommit=True)
            except DBAPIError:
                await conn.invalidate()
                raise
            finally:
                await asyncio.shield(self._ending_task(conn.close()))

    @asynccontextmanager
    async def _begin(
        self, engine: AsyncEngine, isolation: str | None
    ) -> AsyncIterator[tuple[AsyncConnection, datetime]]:
        for attempt in range(2):
            conn = await engine.connect()
            try:
                if isolation is not None:  # for this checkout only: the pool resets it
                    await conn.execution_options(isolation_level=isolation)
                transaction = await conn.begin()
                if self.is_sqlite:
                    now = self._clock.now()
                else:
                    now = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
                break
            except DBAPIError as exc:
                # On PostgreSQL, nothing was done yet, so trying once more on a new connection
                # is safe, and a connection the database just closed does not always fail as
                # one that is closed (it may answer first with the server's last words). On
                # SQLite, only a connection that is gone is worth replacing.
                gone = exc.connection_invalidated or not self.is_sqlite
                if not exc.connection_invalidated and gone:
                    await conn.invalidate()
                await conn.close()
                if attempt or not gone:
                    raise
            except BaseException:
                await conn.close()
                raise
        # Ending the transaction and handing the connection back run as one task, shielded
        # from the caller's cancellation (a client that hung up): cut off, the pool's reset
        # of the connection fails with CancelledError, which SQLAlchemy logs as an error with
        # a traceback, and the connection is lost. Shielded, they finish in order in the
        # background while the cancellation goes on up.
        # `close` waits for those still running, so that no connection comes back to a pool
        # already disposed (and is lost unclosed).
        try:
            yield conn, now
        except BaseException:
            await asyncio.shield(self._ending_task(_end(conn, transaction, commit=False)))
            raise
        else:
            await asyncio.shield(self._ending_task(_end(conn, transaction, commit=True)))

    def _ending_task(self, ending: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(ending)
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        return task

    async def _repositories_connection(self, conn: AsyncConnection) -> SqlConnection:
        """PostgreSQL's connections run prepared statements on asyncpg (`postgres`); SQLite's
        reads, few and long, take SQLAlchemy's way."""
        if self._plans is None:
            return conn
        return await PgConnection.of(conn, self._plans)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqlUnitOfWork]:
        """A read-write transaction; commits on normal exit, rolls back on exception."""
        if self._writer is None:
            raise StoreError("store is not open")
        try:
            if self._group is not None:
                async with self._group.unit() as inline:
                    yield SqlUnitOfWork(
                        inline,
                        self._clock.now(),
                        notifies=False,
                        writer=self._tag,
                        serialized=True,  # the one writer runs one unit of work at a time
                    )
            else:
                async with self._transaction(self._writer) as (conn, now):
                    yield SqlUnitOfWork(
                        await self._repositories_connection(conn),
                        now,
                        notifies=self._notify,
                        writer=self._tag,
                    )
        except DBAPIError as exc:
            raise _store_error(exc) from exc
        except OSError as exc:  # the connection itself failed
            raise StoreError(str(exc)) from exc

    @asynccontextmanager
    async def read(
        self, *, snapshot: bool = False, brief: bool = False
    ) -> AsyncIterator[SqlUnitOfWork]:
        """A read-only transaction: on PostgreSQL each statement sees what had committed when
        it started, or, with `snapshot`, when the first did (REPEATABLE READ). A SQLite
        transaction is always a snapshot; a `brief` one runs in the loop's thread. A `brief`
        read on PostgreSQL without `snapshot` sends its statements outside a transaction, a
        round trip each (BEGIN, the database's clock and COMMIT are three more), and takes
        the replica's clock."""
        if self._reader is None:
            raise StoreError("store is not open")
        isolation = "REPEATABLE READ" if snapshot and not self.is_sqlite else None
        try:
            if brief and self._brief is not None:
                if self._closing:
                    raise StoreError("the store is closing")
                async with self._brief.unit() as inline:
                    yield SqlUnitOfWork(inline, self._clock.now(), notifies=False, writer=self._tag)
                return
            if brief and not snapshot and self._plans is not None:
                async with self._statements(self._plans) as statements:
                    yield SqlUnitOfWork(
                        statements, self._clock.now(), notifies=False, writer=self._tag
                    )
                return
            async with self._transaction(self._reader, isolation) as (conn, now):
                yield SqlUnitOfWork(
                    await self._repositories_connection(conn),
                    now,
                    notifies=False,
                    writer=self._tag,
                )
        except DBAPIError as exc:
            raise _store_error(exc) from exc
        except OSError as exc:
            raise StoreError(str(exc)) from exc

    async def vacuum(self) -> dict[str, float]:
        """See the port. On PostgreSQL with autovacuum off, one replica at a time (a session
        advisory lock: VACUUM runs outside any transaction) vacuums `HOT_TABLES`; a table's
        pages that no update touched since are skipped (the visibility map), so a turn's
        cost follows what changed since the last, not the history; once dead row versions
        are on more than 2% of a table's pages, VACUUM also passes over its indexes, a cost
        that grows with the table but comes as rarely as it does. (VACUUM also keeps the
        planner's idea of each table's size current. ANALYZE is left out: on a month of
        history it took a couple of seconds of the database's CPU, which under load held
        up offers for a minute.)"""
        took: dict[str, float] = {}
        if self._reader is None or self.is_sqlite:
            return took
        async with self._counted():
            conn = await self._reader.connect()
            try:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                if await driver.fetchval("SELECT current_setting('autovacuum')") == "on":
                    return took
                if not await driver.fetchval("SELECT pg_try_advisory_lock($1)", VACUUM_LOCK):
                    return took
                # Paced as autovacuum paces itself: a turn that must clean a big table's
                # indexes then takes longer, rather than a core the hot path needs.
                await driver.execute(f"SET vacuum_cost_delay = '{VACUUM_COST_DELAY}'")
                for table in HOT_TABLES:
                    began = time.perf_counter()
                    await driver.execute(f"VACUUM {table}")
                    took[table] = time.perf_counter() - began
                await driver.execute("RESET vacuum_cost_delay")
                await driver.execute("SELECT pg_advisory_unlock($1)", VACUUM_LOCK)
            except BaseException as exc:
                await conn.invalidate()  # closed, not pooled: it may hold the lock
                if isinstance(exc, (asyncpg.PostgresError, *CONNECTION_FAILED)):
                    raise StoreError(f"vacuum failed: {exc}") from exc
                raise
            finally:
                await asyncio.shield(self._ending_task(conn.close()))
        return took

    def listener(
        self, on_hint: Callable[[str], None], on_reset: Callable[[], None]
    ) -> PgListener | None:
        """Other replicas' hints, on PostgreSQL unless notifications are off (poll-only)."""
        if not self._notify:
            return None
        return PgListener(self.url, on_hint, on_reset)
