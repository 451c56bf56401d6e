"""Hot-path queries are covered by indexes: EXPLAIN them against 2,000,000 finished handoffs,
on both stores.

Each store (SQLite in a file of its own, PostgreSQL in a database of its own) is seeded with
a month of history, bulk-loaded by `bench.history` (COPY on PostgreSQL, executemany on
SQLite): 2,000,000 finished handoffs over 30 days with their skills and offers, 300 agents'
ended sessions, and the quality buckets folded from them. On top of it goes the live state,
written through the store's tables: replicas (one alive, one dead with a connected agent who
holds an assigned handoff, one stopped), agents busy, away, in their grace period and
deleted, their sessions, a live queue of queued, offered and assigned handoffs, and quality
facts not rolled up yet. (On SQLite, where the process is alone, the service takes every
other replica on record for dead at start, the live one too, and recovers their agents.)

The test then runs the service over real gRPC through a workload that takes every hot path
(log-ins, requests, offers declined, accepted, expired and rescinded, completions, ratings,
quality reports, exports, cancels, a watch, pool status and its watch, agent listings, a
drop with a resume, a grace period running out, a dead replica's recovery, the rollup of
quality facts, the pruner, the sweeper and, on PostgreSQL, the replicas' change feed), and
records every statement the store sends, with its parameters and the repository method
that sent it; every repository method must have run (on SQLite, but for the few that send
nothing there: `NOT_RUN_ON_SQLITE`).

Each SELECT, UPDATE, DELETE and INSERT ... SELECT is then EXPLAINed with its recorded
parameters on the seeded database, and the test fails on any plan that reads a whole big
table. Each check first judges a few statements whose plans are known (`KNOWN_PLANS`), so
that it cannot pass by recognising nothing.

PostgreSQL: a Seq Scan, or a scan without an index condition of an index that is not
partial. That is the plan PostgreSQL makes for the first executions of the service's
prepared statements (asyncpg prepares them; custom plans, for the actual values). After
five, PostgreSQL may cache a generic plan, made without the values. The store writes its
state constants into the SQL text (`repositories._const`) so that partial indexes
(`WHERE state = 'QUEUED'`) match even then; so every statement is also EXPLAINed with the
generic plan forced, and must not read a whole big table either.

SQLite (EXPLAIN QUERY PLAN): a SCAN of a big table without an index, or through an index
that is not partial, and an automatic index or a Bloom filter on one (SQLite builds either
by reading the whole table). SQLite plans with the statistics ANALYZE leaves in
`sqlite_stat1`, which the loader gathered; the service never runs ANALYZE, so a store it
made has none, and every statement is also EXPLAINed with them gone.

A plan's shape does not tell everything: a SEARCH on an open range of an index that is not
partial (`created_at <= ?` on all handoffs) reads the whole history as surely as a scan. So
each statement is also run, with its recorded parameters, in a transaction rolled back, and
the work it did is counted, not timed: SQLite's virtual machine instructions (its progress
handler), PostgreSQL's buffers (EXPLAIN ANALYZE). Reading the history once costs six to
thirty times the budgets (`WORK_BUDGETS`); the service's statements stay under a fourth of
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from humanline.bench import history
from humanline.bench.history import History
from humanline.domain.clock import SystemClock
from humanline.grpc.server import create_server
from humanline.service.app import Humanline
from humanline.store.sql.listener import asyncpg_dsn
from humanline.store.sql.repositories import (
    SqlAgentRepository,
    SqlHandoffRepository,
    SqlOfferRepository,
    SqlPoolQueries,
    SqlQualityTracks,
    SqlReplicaRepository,
    SqlSessionRepository,
)
from humanline.store.sql.retention import SqlRetention
from humanline.store.sql.rollups import SqlQualityRollups
from humanline.store.sql.sqlite import InlineConnection
from humanline.store.sql.store import PG_SETTINGS, SqlStore
from humanline.store.sql.tables import (
    agent_languages,
    agent_skills,
    agents,
    handoff_skills,
    handoffs,
    offers,
    quality_facts,
    replicas,
    sessions,
)
from humanline.tokens import KeyRing
from humanline.v1 import (
    agent_pb2,
    agent_service_pb2,
    handoff_pb2,
    handoff_service_pb2,
    pool_service_pb2,
    quality_pb2,
    routing_pb2,
)
from tests.conftest import FAST, Served, create_postgres_database, drop_postgres_database
from tests.support.client import AgentDriver, Stubs

FINISHED_HANDOFFS = 2_000_000
HISTORY = History(handoffs=FINISHED_HANDOFFS, days=30.0, prefix="seed")


def _md5_id(text: str) -> str:
    """A UUID made of `text` (as PostgreSQL's `md5(text)::uuid`)."""
    return str(uuid.UUID(hashlib.md5(text.encode()).hexdigest()))


DEAD_REPLICA_HANDOFF = _md5_id("dead-replica-handoff")
QUEUED = handoff_pb2.HANDOFF_STATE_QUEUED
# Offers and grace periods short enough to run out during the test, long enough for the
# workload's accepts and resumes on a loaded machine (the waits overlap).
POLICY = replace(FAST, offer_timeout=timedelta(seconds=4), grace_period=timedelta(seconds=3))

# Tables that grow with traffic: a scan of the whole table gets slower every day. The agent
# tables (agents, agent_skills, agent_languages: a few hundred rows, one per agent), replicas
# (one row per process start) and alembic_version stay small, and the planner rightly reads
# them whole rather than through an index; scans of those are allowed.
# (Not `quality_facts`: it holds what the rollup has not folded yet, seconds' worth, and is
# read oldest first by design.)
BIG_TABLES = frozenset({"handoffs", "handoff_skills", "offers", "sessions", "quality_rollups"})

REPOSITORIES: dict[str, type] = {
    "agents": SqlAgentRepository,
    "handoffs": SqlHandoffRepository,
    "offers": SqlOfferRepository,
    "sessions": SqlSessionRepository,
    "replicas": SqlReplicaRepository,
    "pool": SqlPoolQueries,
    "quality": SqlQualityTracks,
    "rollups": SqlQualityRollups,
    "retention": SqlRetention,
}

# Repository methods the workload does not run, and why that is fine. Every other one must
# have sent its statements (or the test would pass by checking nothing): a new repository
# method needs a step in `_workload`, or a line here.
NOT_RUN = {
    "handoffs.insert": "INSERT ... VALUES only",
    "offers.insert": "INSERT ... VALUES only",
    "sessions.insert": "INSERT ... VALUES only",
    "replicas.register": "INSERT ... VALUES only",
    "replicas.revive": "only after this replica was declared dead; replicas is small",
    "replicas.live": "not used by the service; replicas is small",
    "quality.record_completion": "INSERT ... ON CONFLICT (primary key) only",
    "quality.record_rating": "INSERT ... ON CONFLICT (primary key) only",
}
# On SQLite the process is alone on its database (it holds a lock on the file), so a few
# methods send nothing there or are not called at all; on PostgreSQL they must run.
NOT_RUN_ON_SQLITE = {
    "agents.changed_since": "the change feed, polled only where replicas share the database",
    "handoffs.changed_since": "the change feed, polled only where replicas share the database",
    "replicas.oldest_transaction_start": "the change feed's; sends nothing on SQLite",
    "retention.lock": "one pruner per database: sends nothing on SQLite",
}

KEYS = KeyRing.generate()  # every replica's, as in a deployment


def _repository_methods() -> dict[str, tuple[type, str]]:
    """`repository.method` -> (class, method name), for every public method of the store's
    repositories (`uow.<repository>.<method>`)."""
    return {
        f"{name}.{attr}": (cls, attr)
        for name, cls in REPOSITORIES.items()
        for attr, method in vars(cls).items()
        if not attr.startswith("_") and inspect.iscoroutinefunction(method)
    }


# --- the seeded database -------------------------------------------------------------------

# The history's agents (`HISTORY.agent_id(n)`, all offline after the load) take up live states:
# 0-199 stay offline; 200-249 are available but full (each holds an assigned handoff and a
# pending offer); 250-269 away; 270-279 dropped, in their grace period; 280 connected to a dead
# replica, holding one assigned handoff; 281-299 deleted. None of them is ready for offers, so
# the workload's own agents get the offers the workload waits for; the live queue is work
# only the busy agents could take (skill `legal`, level 5).
BUSY = range(200, 250)
AWAY = range(250, 270)
IN_GRACE = range(270, 280)
ON_DEAD_REPLICA = 280
DELETED = range(281, HISTORY.agents)
LEGAL = ("legal", 5)
FINISHED = ("COMPLETED", "CANCELLED", "EXPIRED")
UNFOLDED_FACTS = 3000


def _agent(n: int) -> str:
    return HISTORY.agent_id(n)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _agent_row(n: int, now: datetime) -> dict[str, Any]:
    """Agent `n`'s live columns."""
    status, connected, capacity, load = "OFFLINE", False, 1 + n % 3, 0
    if n in BUSY:
        status, connected, capacity, load = "AVAILABLE", True, 2, 2
    elif n in AWAY:
        status, connected = "AWAY", True
    elif n in IN_GRACE:
        status = "AVAILABLE"
    elif n == ON_DEAD_REPLICA:
        status, connected, capacity, load = "AVAILABLE", True, 1, 1
    return {
        "id": _agent(n),
        "status": status,
        "connected": connected,
        "capacity": capacity,
        "load": load,
        "last_assigned_at": now - timedelta(minutes=n + 1),
        "deleted_at": now - timedelta(days=10) if n in DELETED else None,
        "updated_at": now - timedelta(days=1),
        "changed_at": now - timedelta(days=1),
        "changed_by": "seed",
    }


def _live_handoff(
    key: str, state: str, created: datetime, agent: int | None, assigned: datetime | None
) -> dict[str, Any]:
    """A handoff of the live queue: work for the `legal` agents only."""
    return {
        "id": _md5_id(key),
        "request_id": _md5_id(f"request-{key}"),
        "fingerprint": _sha256(f"fingerprint-{key}"),
        "conversation_id": f"live-conv-{key}",
        "customer_id": f"live-cust-{key}",
        "interaction_type": "complaint",
        "required_skills": [list(LEGAL)],
        "language": "en",
        "urgency": 2,
        "reason": "POLICY_EXCEPTION",
        "summary": "The customer threatens to sue.",
        "state": state,
        "created_at": created,
        "deadline": created + timedelta(minutes=2),
        "requeue_count": 0,
        "agent_id": None if agent is None else _agent(agent),
        "offer_id": None if agent is None else _md5_id(f"offer-{key}"),
        "assigned_at": assigned,
        "ended_at": None,
        "outcome": None,
        "disposition_code": "",
        "notes": "",
        "completion_fingerprint": None,
        "handle_seconds": None,
        "changed_at": assigned or created,
        "changed_by": "seed",
        "bot_id": "test-bot",
        "routing": "",
        "relax_step": 0,
        "end_reason": "",
        "agent_order": "MOST_PROFICIENT",
        "risk_class": "MEDIUM",
        "quality_ranked": False,
    }


def _live_queue(now: datetime) -> list[dict[str, Any]]:
    """30 handoffs queued, 50 offered (pending offers) and 50 assigned to the busy agents, and
    the one assigned to the agent on the dead replica."""
    queue = []
    for n in range(1, 51):
        created = now - n * timedelta(seconds=5)
        if n <= 30:
            queue.append(_live_handoff(f"queued{n}", "QUEUED", created, None, None))
        agent = BUSY.start + n - 1
        queue.append(_live_handoff(f"offered{n}", "OFFERED", created, agent, None))
        assigned = now - timedelta(minutes=1)
        queue.append(_live_handoff(f"assigned{n}", "ASSIGNED", created, agent, assigned))
    dead = _live_handoff(
        "dead-replica-handoff",
        "ASSIGNED",
        now - timedelta(minutes=20),
        ON_DEAD_REPLICA,
        now - timedelta(minutes=19),
    )
    assert dead["id"] == DEAD_REPLICA_HANDOFF
    return [*queue, dead]


def _live_offer(handoff: dict[str, Any], now: datetime) -> dict[str, Any]:
    pending = handoff["state"] == "OFFERED"
    return {
        "id": handoff["offer_id"],
        "handoff_id": handoff["id"],
        "agent_id": handoff["agent_id"],
        "state": "PENDING" if pending else "ACCEPTED",
        "created_at": handoff["changed_at"],
        "expires_at": now + timedelta(hours=1) if pending else handoff["changed_at"],
        "decided_at": handoff["assigned_at"],
        "ended_at": None,
        "decline_reason": None,
        "rescind_reason": None,
        "ranking": "",
    }


def _replica(
    replica_id: str, pid: int, started: datetime, heartbeat: datetime, stopped: datetime | None
) -> dict[str, Any]:
    return {
        "id": replica_id,
        "host": f"host-{pid}",
        "pid": pid,
        "started_at": started,
        "heartbeat_at": heartbeat,
        "stopped_at": stopped,
    }


def _live_session(n: int, now: datetime) -> dict[str, Any]:
    grace = n in IN_GRACE
    return {
        "id": _md5_id(f"live-session{n}"),
        "agent_id": _agent(n),
        "state": "DISCONNECTED" if grace else "CONNECTED",
        "token_hash": _sha256(f"live-token{n}"),
        "replica_id": "seed-replica-dead" if n == ON_DEAD_REPLICA else "seed-replica-live",
        "connection_id": _md5_id(f"live-connection{n}"),
        "created_at": now - timedelta(hours=3),
        "disconnected_at": now - timedelta(seconds=5) if grace else None,
        "grace_expires_at": now + timedelta(hours=1) if grace else None,
        "ended_at": None,
        "end_reason": None,
    }


async def _seed_live(conn: AsyncConnection, now: datetime) -> None:
    """The live state on top of the history, through the store's tables (their column types
    write timestamps and JSON as each database keeps them)."""
    await conn.execute(
        sa.insert(replicas),
        [
            # another replica, alive throughout the test (its last heartbeat is dated a day
            # ahead); on SQLite, where the process is alone, the service reaps it at start
            _replica(
                "seed-replica-live", 101, now - timedelta(days=2), now + timedelta(days=1), None
            ),
            # a replica that died an hour ago without a goodbye: the service recovers it
            _replica(
                "seed-replica-dead", 102, now - timedelta(days=2), now - timedelta(hours=1), None
            ),
        ],
    )
    a = agents.c
    rows = [_agent_row(n, now) for n in range(HISTORY.agents)]
    await conn.execute(
        sa.update(agents)
        .where(a.id == sa.bindparam("b_id"))
        .values({column: sa.bindparam(f"b_{column}") for column in rows[0] if column != "id"}),
        [{f"b_{column}": value for column, value in row.items()} for row in rows],
    )
    # The busy agents (and the one on the dead replica) also have `legal`: their profiles
    # rewritten as the store writes one (the agent_skills triggers set `ready`).
    lawyers = {_agent(n): HISTORY.skills_of(n) | dict([LEGAL]) for n in (*BUSY, ON_DEAD_REPLICA)}
    await conn.execute(
        sa.update(agents)
        .where(a.id == sa.bindparam("b_id"))
        .values(skills=sa.bindparam("b_skills")),
        [{"b_id": agent_id, "b_skills": skills} for agent_id, skills in lawyers.items()],
    )
    await conn.execute(sa.delete(agent_skills).where(agent_skills.c.agent_id.in_(lawyers)))
    await conn.execute(
        sa.insert(agent_skills),
        [
            {"agent_id": agent_id, "skill": s, "proficiency": p, "expertise": max(skills.values())}
            for agent_id, skills in lawyers.items()
            for s, p in skills.items()
        ],
    )
    # The deleted agents' profiles are no longer indexed.
    deleted = [_agent(n) for n in DELETED]
    await conn.execute(sa.delete(agent_skills).where(agent_skills.c.agent_id.in_(deleted)))
    await conn.execute(sa.delete(agent_languages).where(agent_languages.c.agent_id.in_(deleted)))

    await conn.execute(
        sa.insert(sessions),
        [_live_session(n, now) for n in (*BUSY, *AWAY, *IN_GRACE, ON_DEAD_REPLICA)],
    )
    queue = _live_queue(now)
    await conn.execute(sa.insert(handoffs), queue)
    await conn.execute(
        sa.insert(offers), [_live_offer(h, now) for h in queue if h["agent_id"] is not None]
    )
    await conn.execute(
        sa.insert(handoff_skills),
        [{"handoff_id": h["id"], "skill": LEGAL[0], "min_proficiency": LEGAL[1]} for h in queue],
    )
    # Facts not rolled up yet: the newest finished handoffs again (their buckets, written by
    # the loader, count them already; twice does not change a plan).
    h, f = handoffs.c, quality_facts.c
    columns = [
        "created_at",
        "interaction_type",
        "risk_class",
        "required_skills",
        "agent_id",
        "state",
        "deadline",
        "assigned_at",
        "outcome",
        "handle_seconds",
        "csat",
    ]
    newest = (
        sa.select(sa.literal("HANDOFF"), *(h[c] for c in columns))
        .where(h.state.in_(FINISHED))
        .order_by(h.created_at.desc())
        .limit(UNFOLDED_FACTS)
    )
    await conn.execute(sa.insert(quality_facts).from_select([f.kind, *columns], newest))


async def _seed(url: str) -> None:
    """The history, bulk-loaded, then the live state and fresh statistics."""
    loaded = await history.load(url, HISTORY, until=datetime.now(UTC))
    assert loaded.rows["handoffs"] == FINISHED_HANDOFFS
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await _seed_live(conn, datetime.now(UTC))
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE"))
            finished = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FROM handoffs"
                        " WHERE state IN ('COMPLETED', 'CANCELLED', 'EXPIRED')"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert finished == FINISHED_HANDOFFS


def _remove(database: Path) -> None:
    """A SQLite database's files (a few GB here)."""
    for file in database.parent.glob(f"{database.name}*"):
        file.unlink()


@pytest.fixture
async def seeded(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own on `backend`, seeded; its URL. Gone afterwards."""
    if backend == "sqlite":
        database = tmp_path / "explain.db"
        try:
            url = f"sqlite+aiosqlite:///{database}"
            await _seed(url)
            yield url
        finally:
            _remove(database)
        return
    url = await create_postgres_database("humanline_explain", migrate=False)
    try:
        await _seed(url)
        yield url
    finally:
        await drop_postgres_database(url)


# --- capturing what the store sends ----------------------------------------------------------

LABEL: ContextVar[str] = ContextVar("store_method", default="")


def _labelled(label: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def run(*args: Any, **kwargs: Any) -> Any:
        token = LABEL.set(label)
        try:
            return await method(*args, **kwargs)
        finally:
            LABEL.reset(token)

    return run


def _label_repository_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement gets the name of the repository method running it (the innermost).
    SQLAlchemy runs the driver in a greenlet that shares the task's context variables; the
    embedded store's writer runs its statements in the task itself."""
    for label, (cls, attr) in _repository_methods().items():
        monkeypatch.setattr(cls, attr, _labelled(label, getattr(cls, attr)))


def _verb(sql: str) -> str:
    return sql.lstrip().split(None, 1)[0].upper()


@dataclass
class Statement:
    """A distinct statement the store sent, with the first few parameter sets it used."""

    label: str
    sql: str
    params: list[tuple[Any, ...]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def verb(self) -> str:
        return _verb(self.sql)

    def add(self, params: tuple[Any, ...]) -> None:
        key = repr(params)
        if key not in self._seen and len(self.params) < 3:
            self._seen.add(key)
            self.params.append(params)


class Recorder:
    """Keeps the SELECTs, UPDATEs, DELETEs and INSERT ... SELECTs the store sends: as a
    `before_cursor_execute` listener (SQLAlchemy's way), from asyncpg's `fetch` and `execute`
    (the prepared statements `store.sql.postgres` runs there) and from the sqlite3 connection
    of the embedded store's writer (the prepared statements `store.sql.sqlite` runs there).
    Statements run for many parameter sets at once (executemany) insert rows: not kept."""

    def __init__(self) -> None:
        self.statements: dict[tuple[str, str], Statement] = {}

    def __call__(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if not executemany:
            self.record(statement, parameters)

    def driver_method(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """asyncpg's `Connection.fetch` or `.execute`, recording what it runs."""

        @functools.wraps(method)
        async def recorded(
            connection: asyncpg.Connection, query: str, *args: Any, **kw: Any
        ) -> Any:
            self.record(query, args)
            return await method(connection, query, *args, **kw)

        return recorded

    def record(self, statement: str, parameters: Any) -> None:
        verb = _verb(statement)
        reads = verb in {"SELECT", "UPDATE", "DELETE", "WITH"} or (
            verb == "INSERT" and " SELECT " in statement.upper()  # INSERT ... SELECT
        )
        if not reads:
            return  # INSERT ... VALUES, BEGIN, PRAGMA, savepoints: nothing to scan
        label = LABEL.get() or "store"  # `SELECT now()`, pg_notify: the store itself
        key = (label, statement)
        if key not in self.statements:
            self.statements[key] = Statement(label, statement)
        self.statements[key].add(tuple(parameters or ()))

    @property
    def labels(self) -> set[str]:
        return {label for label, _ in self.statements}


class _RecordedDriver:
    """The embedded store writer's sqlite3 connection, telling `recorder` what it runs."""

    def __init__(self, driver: sqlite3.Connection, recorder: Recorder) -> None:
        self._driver = driver
        self._recorder = recorder

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        self._recorder.record(sql, parameters)
        return self._driver.execute(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)


def _record_sqlite_writer(monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> None:
    """The embedded store's writer runs its prepared statements on sqlite3 itself, past
    SQLAlchemy's events; it takes up its driver connection again for every transaction
    (`InlineConnection.attach`), and from then on that driver records."""
    attach = InlineConnection.attach

    def attach_recorded(inline: InlineConnection) -> None:
        attach(inline)
        if not isinstance(inline.driver, _RecordedDriver):
            inline.driver = _RecordedDriver(inline.driver, recorder)  # type: ignore[assignment]

    monkeypatch.setattr(InlineConnection, "attach", attach_recorded)


@contextlib.asynccontextmanager
async def _recorded_service(url: str, recorder: Recorder) -> AsyncIterator[Stubs]:
    """The service on a real gRPC server, its store's statements going to `recorder` from
    the moment the store is open (so that the recovery at start is recorded too)."""
    store = SqlStore(url, SystemClock())
    open_store = store.open

    async def open_and_record(writer: str = "") -> None:
        await open_store(writer)
        assert store._writer is not None
        assert store._reader is not None
        # PostgreSQL: one engine. SQLite: the writer's (migrations only), the readers', the
        # synchronous one of the writer that runs every write (`_inline_engine`) and that of
        # the brief reads (`_brief_engine`).
        engines = {store._writer.sync_engine, store._reader.sync_engine}
        for inline in (store._inline_engine, store._brief_engine):
            if inline is not None:
                engines.add(inline)
        assert len(engines) == (4 if store.is_sqlite else 1)
        for engine in engines:
            event.listen(engine, "before_cursor_execute", recorder)

    store.open = open_and_record  # type: ignore[method-assign]
    app = Humanline(store, POLICY, sweep_interval=0.25, watch_interval=0.05)
    await app.start()
    served = Served(
        app, await create_server(app, "127.0.0.1:0", keys=KEYS, hello_timeout=2.0), KEYS
    )
    client = served.stubs()
    try:
        yield client
    finally:
        await client.close()
        async with asyncio.timeout(15):
            await served.stop()


# --- the workload ------------------------------------------------------------------------------


async def _until(probe: Callable[[], Awaitable[int]], expected: int) -> None:
    async with asyncio.timeout(10):
        while await probe() != expected:
            await asyncio.sleep(0.05)


async def _agent_state(client: Stubs, agent_id: str) -> int:
    return int((await client.get_agent(agent_id)).state)


async def _handoff_state(client: Stubs, handoff_id: str) -> int:
    return int((await client.get_handoff(handoff_id)).state)


async def _workload(client: Stubs) -> None:
    """Every hot path of the service, over gRPC."""
    # Ops manage the pool.
    await client.create_agent(
        "ann", {"billing": 5, "refunds": 3}, languages=("en", "de"), capacity=2
    )
    await client.create_agent("bob", {"billing": 3})
    await client.create_agent("cyd", {"orders": 4})
    await client.create_agent("dee", {"returns": 4})
    await client.create_agent("eve", {"general": 2})
    await client.pool.UpdateAgent(
        pool_service_pb2.UpdateAgentRequest(agent=agent_pb2.Agent(agent_id="eve", capacity=3))
    )
    await client.get_agent("eve")
    await client.pool.DeleteAgent(pool_service_pb2.DeleteAgentRequest(agent_id="eve"))
    page = await client.pool.ListAgents(pool_service_pb2.ListAgentsRequest(page_size=100))
    await client.pool.ListAgents(
        pool_service_pb2.ListAgentsRequest(page_size=100, page_token=page.next_page_token)
    )
    await client.pool.ListAgents(
        pool_service_pb2.ListAgentsRequest(state=agent_pb2.AGENT_STATE_BUSY)
    )
    await client.pool.ListAgents(
        pool_service_pb2.ListAgentsRequest(skill="legal", state=agent_pb2.AGENT_STATE_RECONNECTING)
    )

    ann, bob, cyd, dee = (client.agent(a) for a in ("ann", "bob", "cyd", "dee"))
    for driver in (ann, bob, cyd, dee):
        await driver.hello()

    # An offer nobody answers: it expires while the rest goes on.
    missed = await client.request_handoff(skills={"orders": 3})
    await cyd.offer()

    # An agent holding work drops and never comes back: its grace period ends while the rest
    # goes on, and the work returns to the queue.
    held = await client.request_handoff(skills={"returns": 2})
    await dee.accept((await dee.offer()).offer_id)
    # Meanwhile more of that work, which only the busy agent could take: it waits, and the
    # bot is told how long (the handoffs ahead of it, the type's handle time).
    blocked = await client.request_handoff(skills={"returns": 2})
    assert blocked.state == QUEUED
    assert blocked.HasField("estimated_wait")
    dee.drop()

    # Declined by the best agent, accepted by the next, completed (twice: a retry).
    request_id = "5d0c4a5e-0d7e-4c1e-9d54-6f1d1b8f7a10"
    first = await client.request_handoff(
        request_id=request_id, skills={"billing": 2}, language="en"
    )
    await ann.decline((await ann.offer()).offer_id)
    interaction = await bob.accept((await bob.offer()).offer_id)
    again = await client.request_handoff(
        request_id=request_id, skills={"billing": 2}, language="en"
    )
    assert again.handoff_id == first.handoff_id
    assert await _handoff_state(client, first.handoff_id) == handoff_pb2.HANDOFF_STATE_ASSIGNED
    await client.complete("bob", interaction.interaction_id)
    await client.complete("bob", interaction.interaction_id)
    # The customer's rating, reported later (twice: a retry); ops read the day's quality.
    for _ in range(2):
        await client.handoffs.RecordFeedback(
            handoff_service_pb2.RecordFeedbackRequest(handoff_id=first.handoff_id, csat=4)
        )
    await client.pool.GetQualityReport(
        pool_service_pb2.GetQualityReportRequest(
            group_by=quality_pb2.QUALITY_DIMENSION_INTERACTION_TYPE
        )
    )
    # The day's outcomes exported for retraining, the failures only.
    exported = client.pool.ExportOutcomes(pool_service_pb2.ExportOutcomesRequest())
    assert [m async for m in exported]
    failures = pool_service_pb2.ExportOutcomesRequest(only_failures=True)
    assert [m async for m in client.pool.ExportOutcomes(failures)]

    # A bot watches a handoff nobody can take until the customer leaves.
    waiting = await client.request_handoff(skills={"fraud": 5}, urgency=handoff_pb2.URGENCY_HIGH)
    watch = client.handoffs.WatchHandoff(
        handoff_service_pb2.WatchHandoffRequest(handoff_id=waiting.handoff_id)
    )
    async with asyncio.timeout(10):
        assert (await watch.read()).handoff.state == QUEUED
        await client.get_handoff(waiting.handoff_id)
        await client.cancel_handoff(waiting.handoff_id)
        while (message := await watch.read()) is not grpc.aio.EOF:
            last = message.handoff.state
    assert last == handoff_pb2.HANDOFF_STATE_CANCELLED

    # A handoff nobody can take, whose type's policy relaxes it and then lets it expire.
    wait = duration_pb2.Duration()
    wait.FromTimedelta(timedelta(seconds=0.3))
    await client.pool.CreateRoutingPolicy(
        pool_service_pb2.CreateRoutingPolicyRequest(
            policy=routing_pb2.RoutingPolicy(
                interaction_type="explain_wait",
                target=wait,
                max_wait=duration_pb2.Duration(seconds=1),
                relaxation=[routing_pb2.RelaxationStep(after=wait, min_proficiency=4)],
            )
        )
    )
    lapsing = await client.request_handoff(interaction_type="explain_wait", skills={"legal": 5})
    await _until(
        lambda: _handoff_state(client, lapsing.handoff_id), handoff_pb2.HANDOFF_STATE_EXPIRED
    )

    # An offer taken back because the bot cancelled; away and back.
    offered = await client.request_handoff(skills={"refunds": 2}, language="de")
    await ann.offer()
    await client.cancel_handoff(offered.handoff_id)
    await ann.expect("offer_rescinded")
    await ann.set_status(agent_pb2.AGENT_STATUS_AWAY)
    await ann.set_status(agent_pb2.AGENT_STATUS_AVAILABLE)

    # An agent drops and resumes within its grace period.
    ann.drop()
    await _until(lambda: _agent_state(client, "ann"), agent_pb2.AGENT_STATE_RECONNECTING)
    await ann.resume()
    await client.pool_status()
    # A dashboard watches the pool (at-risk handoffs due within the hour).
    hour = duration_pb2.Duration(seconds=3600)
    dashboard = client.pool.WatchPoolStatus(
        pool_service_pb2.WatchPoolStatusRequest(at_risk_horizon=hour)
    )
    async with asyncio.timeout(10):
        assert (await dashboard.read()).status.HasField("snapshot_time")
    dashboard.cancel()

    rescinded = await cyd.expect("offer_rescinded", timeout=10)
    assert rescinded.reason == agent_service_pb2.RESCIND_REASON_EXPIRED
    await _until(lambda: _handoff_state(client, held.handoff_id), QUEUED)
    assert await _agent_state(client, "dee") == agent_pb2.AGENT_STATE_OFFLINE
    for handoff in (missed, held, blocked):
        await client.cancel_handoff(handoff.handoff_id)

    # Routine work, offered to the least proficient agent who qualifies.
    routine = await client.request_handoff(interaction_type="order_lookup", skills={"orders": 1})
    await client.cancel_handoff(routine.handoff_id)
    await client.request_handoff(interaction_type="order_lookup", skills={"orders": 1, "x": 1})

    # Clean log-outs.
    drivers: tuple[AgentDriver, ...] = (ann, bob, cyd)
    for driver in drivers:
        driver.leave()
    for driver in drivers:
        await _until(
            functools.partial(_agent_state, client, driver.agent_id),
            agent_pb2.AGENT_STATE_OFFLINE,
        )
    # The seeded dead replica's agent: its session was recovered at start and its grace
    # period ended; its assigned handoff went back to the queue.
    recovered = await client.get_handoff(DEAD_REPLICA_HANDOFF)
    assert recovered.state == QUEUED
    assert recovered.requeue_count == 1


# --- EXPLAIN -------------------------------------------------------------------------------------

# Statements whose plans the checks must flag (True) or let pass (False), checked first on
# each store, so that the test cannot pass by recognising nothing: the whole table; the same
# under another name; all of an index that is not partial (counting every row); a join whose
# inner side has no index to use; all of a partial index (the live rows: allowed); one row
# by its key.
KNOWN_PLANS = (
    ("SELECT id FROM handoffs WHERE notes = 'x'", True),
    ("SELECT h.id FROM handoffs AS h WHERE h.notes = 'x'", True),
    ("SELECT count(*) FROM handoffs", True),
    ("SELECT a.id FROM agents AS a JOIN offers AS o ON o.ranking = a.id", True),
    ("SELECT id FROM handoffs WHERE state = 'QUEUED' ORDER BY deadline, created_at, id", False),
    (f"SELECT state FROM handoffs WHERE id = '{DEAD_REPLICA_HANDOFF}'", False),
)


# The most work one statement may do on the seeded store, with its recorded parameters: SQLite's
# virtual machine instructions, PostgreSQL's shared buffers (8 KiB pages) hit or read. One
# pass over the finished handoffs costs 6,000,000 to 10,000,000 instructions, or 156,000
# buffers; the heaviest statements the service sends (the early-warning check over the facts
# not rolled up yet, a 30-day quality report, the pruner's deletes of old buckets) cost
# about 105,000 instructions and 1,100 buffers.
WORK_BUDGETS = {"sqlite": 1_000_000, "postgres": 5_000}
# Statements the work check must flag (True) or let pass (False), checked first as above:
# the history counted; the same history read through an open range of the index on
# `created_at`; the live queue in order.
KNOWN_WORK = (
    ("SELECT count(*) FROM handoffs WHERE notes = ''", True),
    ("SELECT count(*) FROM handoffs WHERE created_at <= CURRENT_TIMESTAMP", True),
    ("SELECT id FROM handoffs WHERE state = 'QUEUED' ORDER BY deadline, created_at, id", False),
)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


# A line of SQLite's EXPLAIN QUERY PLAN: a loop over a table (by its name in the statement),
# through an index or not, and a Bloom filter made for one.
_SQLITE_LOOP = re.compile(r"(SCAN|SEARCH) (\S+)(.*)")
_SQLITE_INDEX = re.compile(r" USING (?:COVERING )?INDEX (\S+)")
_SQLITE_BLOOM = re.compile(r"BLOOM FILTER ON (\S+)")
_BIG_TABLE_NAMED = re.compile(
    rf"\b({'|'.join(sorted(BIG_TABLES))})\s+(?:AS\s+)?(\w+)", re.IGNORECASE
)


def _aliases(sql: str) -> dict[str, str]:
    """The names the big tables go by in `sql` (SQLite's plan names a table by its alias):
    their own, and every word that follows one (a keyword among them names nothing in a
    plan)."""
    names = {table: table for table in BIG_TABLES}
    for named in _BIG_TABLE_NAMED.finditer(sql):
        names.setdefault(named[2], named[1].lower())
    return names


@dataclass(frozen=True)
class Indexes:
    """The big tables' indexes: which table each is on, and which are not partial."""

    table: dict[str, str]
    full: frozenset[str]

    def touches_big_table(self, plan: dict[str, Any]) -> bool:
        return any(
            node.get("Relation Name") in BIG_TABLES or node.get("Index Name") in self.table
            for node in _nodes(plan)
        )

    def whole_table_scans(self, plan: dict[str, Any]) -> list[str]:
        """Nodes of a PostgreSQL plan that read a whole big table: a Seq Scan, or an index
        scan with no index condition on an index that is not partial (a partial index holds
        the live rows only, and reading all of it is what it is for)."""
        found = []
        for node in _nodes(plan):
            kind, index = node["Node Type"], node.get("Index Name")
            if kind == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
                found.append(f"Seq Scan on {node['Relation Name']}")
            elif index in self.full and "Index Cond" not in node:
                found.append(f"{kind} of all of {index} on {self.table[index]}")
        return found

    def sqlite_whole_table_scans(
        self, plan: Sequence[str], aliases: Mapping[str, str]
    ) -> list[str]:
        """Lines of a SQLite plan that read a whole big table: a SCAN of it, without an
        index or through one that is not partial, and an automatic index or a Bloom filter
        on it (SQLite builds either from the whole table). A SEARCH has a condition on an
        index or on the rowid: fine."""
        found = []
        for line in plan:
            if bloom := _SQLITE_BLOOM.match(line):
                if (table := aliases.get(bloom[1])) is not None:
                    found.append(f"a Bloom filter made of all of {table}")
                continue
            if (loop := _SQLITE_LOOP.match(line)) is None:
                continue  # a subquery's, a temporary B-tree, a compound's parts
            kind, name, rest = loop.groups()
            using = _SQLITE_INDEX.search(rest)
            index = using[1] if using else None
            table = self.table[index] if index in self.table else aliases.get(name)
            if table is None:
                continue  # a small table, a subquery's rows, a constant row
            if "AUTOMATIC" in rest:
                found.append(f"an automatic index made of all of {table}")
            elif kind == "SCAN" and index is None:
                found.append(f"SCAN of all of {table}")
            elif kind == "SCAN" and index in self.full:
                found.append(f"SCAN of all of {index} on {table}")
        return found


async def _indexes(conn: asyncpg.Connection) -> Indexes:
    rows = await conn.fetch(
        "SELECT c.relname AS index, t.relname AS table, i.indpred IS NULL AS full"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = ANY($1::text[])",
        sorted(BIG_TABLES),
    )
    return Indexes(
        {r["index"]: r["table"] for r in rows}, frozenset(r["index"] for r in rows if r["full"])
    )


async def _plan(conn: asyncpg.Connection, sql: str, *params: Any) -> dict[str, Any]:
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *params)
    plan: dict[str, Any] = json.loads(raw)[0]["Plan"]
    return plan


async def _text_plan(conn: asyncpg.Connection, sql: str, *params: Any) -> str:
    rows = await conn.fetch(f"EXPLAIN {sql}", *params)
    return "\n    ".join(row[0] for row in rows)


def _problem(statement: Statement, scans: list[str], params: Any, plan: str, why: str) -> str:
    return (
        f"{statement.label}: {', '.join(scans)}{why}\n"
        f"  SQL: {' '.join(statement.sql.split())}\n"
        f"  parameters: {params!r}\n"
        f"  plan:\n    {plan}"
    )


def _literal(value: Any) -> str:
    """A parameter as an SQL literal of unknown type (EXECUTE casts it to the parameter's)."""
    if value is None:
        return "NULL"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def _generic_plan(
    conn: asyncpg.Connection, statement: Statement, params: tuple[Any, ...]
) -> tuple[dict[str, Any], str]:
    """The plan PostgreSQL caches for a prepared statement whatever its parameters (PostgreSQL
    15 cannot EXPLAIN it directly: prepare in SQL, force the generic plan, EXPLAIN EXECUTE)."""
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE humanline_generic AS {statement.sql}")
    try:
        execute = "EXECUTE humanline_generic"
        if params:
            execute += f"({', '.join(_literal(v) for v in params)})"
        return await _plan(conn, execute), await _text_plan(conn, execute)
    finally:
        await conn.execute("DEALLOCATE humanline_generic")
        await conn.execute("SET LOCAL plan_cache_mode = auto")


async def _check(conn: asyncpg.Connection, statement: Statement, indexes: Indexes) -> list[str]:
    """What is wrong with the plans of one statement on the big tables (nothing, hopefully).

    First the plans for each recorded set of parameters. Then the generic plan, which
    PostgreSQL may cache for the service's prepared statement after five executions and which
    is made without the parameters' values: forced here, so that it is checked whether or not
    PostgreSQL would choose it today.
    """
    plans = [(params, await _plan(conn, statement.sql, *params)) for params in statement.params]
    for params, plan in plans:
        if scans := indexes.whole_table_scans(plan):
            text = await _text_plan(conn, statement.sql, *params)
            return [_problem(statement, scans, params, text, "")]
    for params in statement.params:
        if (blocks := await _buffers(conn, statement.sql, params)) > WORK_BUDGETS["postgres"]:
            text = await _text_plan(conn, statement.sql, *params)
            return [_problem(statement, [f"{blocks} buffers"], params, text, "")]
    params, plan = plans[0]
    if not indexes.touches_big_table(plan):
        return []
    plan, text = await _generic_plan(conn, statement, params)
    if scans := indexes.whole_table_scans(plan):
        return [_problem(statement, scans, params, text, " (the generic plan)")]
    return []


async def _buffers(conn: asyncpg.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """The shared buffers a statement hit or read, run with `params` in a savepoint rolled
    back. A write whose recorded parameters break a constraint on today's rows (a load
    released twice) counts nothing: EXPLAIN ANALYZE tells nothing of a statement that fails."""
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
    except asyncpg.IntegrityConstraintViolationError:
        return 0
    finally:
        await savepoint.rollback()
    plan = json.loads(raw)[0]["Plan"]
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


async def _check_all(url: str, statements: list[Statement]) -> list[str]:
    """Every plan that reads a whole big table, described. Runs in a transaction that is
    rolled back (running the SELECTs takes row locks: FOR UPDATE)."""
    # The settings of the service's own connections, so that the plans are the ones it gets.
    conn = await asyncpg.connect(asyncpg_dsn(make_url(url)), timeout=5, server_settings=PG_SETTINGS)
    try:
        indexes = await _indexes(conn)
        flagged = [
            bool(indexes.whole_table_scans(await _plan(conn, sql))) for sql, _ in KNOWN_PLANS
        ]
        assert flagged == [bad for _, bad in KNOWN_PLANS], "the check misjudges KNOWN_PLANS"
        transaction = conn.transaction()
        await transaction.start()
        try:
            heavy = [await _buffers(conn, sql) > WORK_BUDGETS["postgres"] for sql, _ in KNOWN_WORK]
            assert heavy == [bad for _, bad in KNOWN_WORK], "the check misjudges KNOWN_WORK"
            return [p for s in statements for p in await _check(conn, s, indexes)]
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


def _sqlite_indexes(db: sqlite3.Connection) -> Indexes:
    """The big tables' indexes; partial ones have a WHERE (the automatic indexes of primary
    keys and unique constraints have no SQL: whole)."""
    marks = ", ".join("?" for _ in BIG_TABLES)
    rows = db.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master"
        f" WHERE type = 'index' AND tbl_name IN ({marks})",
        sorted(BIG_TABLES),
    ).fetchall()
    whole = {name for name, _, sql in rows if sql is None or not re.search(r"\bWHERE\b", sql, re.I)}
    return Indexes({name: table for name, table, _ in rows}, frozenset(whole))


def _sqlite_plan(
    db: sqlite3.Connection, sql: str, params: Sequence[Any]
) -> list[tuple[int, int, str]]:
    """SQLite's plan of `sql`: (id, parent id, line)."""
    rows = db.execute(f"EXPLAIN QUERY PLAN {sql}", tuple(params)).fetchall()
    return [(node, parent, line) for node, parent, _, line in rows]


def _sqlite_text(plan: Sequence[tuple[int, int, str]]) -> str:
    depth: dict[int, int] = {}
    lines = []
    for node, parent, line in plan:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + line)
    return "\n    ".join(lines)


def _sqlite_check_pass(
    db: sqlite3.Connection, statements: list[Statement], indexes: Indexes, why: str
) -> list[str]:
    """Every statement's plans on `db`, for each recorded set of parameters (bound as the
    store binds them: SQLite plans with them unknown, as the store prepares its statements)."""

    def flagged(sql: str, params: Sequence[Any]) -> list[str]:
        lines = [line for _, _, line in _sqlite_plan(db, sql, params)]
        return indexes.sqlite_whole_table_scans(lines, _aliases(sql))

    def heavy(sql: str, params: Sequence[Any]) -> list[str]:
        steps = _sqlite_steps(db, sql, params)
        return [f"{steps:,} instructions"] if steps > WORK_BUDGETS["sqlite"] else []

    known = [bool(flagged(sql, ())) for sql, _ in KNOWN_PLANS]
    assert known == [bad for _, bad in KNOWN_PLANS], f"the check misjudges KNOWN_PLANS{why}"
    known = [bool(heavy(sql, ())) for sql, _ in KNOWN_WORK]
    assert known == [bad for _, bad in KNOWN_WORK], f"the check misjudges KNOWN_WORK{why}"
    problems = []
    for statement in statements:
        for params in statement.params:
            if scans := flagged(statement.sql, params) or heavy(statement.sql, params):
                text = _sqlite_text(_sqlite_plan(db, statement.sql, params))
                problems.append(_problem(statement, scans, params, text, why))
                break
    return problems


STEPS_PER_CALL = 1000  # SQLite calls the progress handler after this many instructions


def _sqlite_steps(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    """The virtual machine instructions a statement ran (to the nearest thousand, rounded
    down), run with `params` in a transaction rolled back. A write whose recorded parameters
    break a constraint on today's rows stops there, its rows found."""
    calls = 0

    def count() -> int:
        nonlocal calls
        calls += 1
        return 0  # go on

    db.set_progress_handler(count, STEPS_PER_CALL)
    db.execute("BEGIN")
    try:
        db.execute(sql, tuple(params)).fetchall()
    except sqlite3.IntegrityError:
        pass  # a write replayed on today's rows (a load released twice): what it did counts
    finally:
        db.execute("ROLLBACK")
        db.set_progress_handler(None, 0)
    return calls * STEPS_PER_CALL


def _sqlite_check_all(path: str, statements: list[Statement]) -> list[str]:
    """Every plan that reads a whole big table, described: with the statistics of the
    loader's ANALYZE, then without any, as in a store the service made (it never runs
    ANALYZE). SQLite reads `sqlite_stat1` when a connection opens: the second pass deletes
    them and opens another (the file goes after the test)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        indexes = _sqlite_indexes(db)
        assert db.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0
        problems = _sqlite_check_pass(db, statements, indexes, "")
        db.execute("DELETE FROM sqlite_stat1")
    finally:
        db.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return problems + _sqlite_check_pass(db, statements, indexes, " (without statistics)")
    finally:
        db.close()


# --- the test ------------------------------------------------------------------------------------


async def test_hot_path_queries_use_indexes_on_a_big_history(
    backend: str, seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _label_repository_methods(monkeypatch)
    recorder = Recorder()
    if backend == "sqlite":
        _record_sqlite_writer(monkeypatch, recorder)
    else:
        for name in ("fetch", "execute"):
            method = getattr(asyncpg.Connection, name)
            monkeypatch.setattr(asyncpg.Connection, name, recorder.driver_method(method))
    async with _recorded_service(seeded, recorder) as client:
        async with asyncio.timeout(60):
            await _workload(client)

    methods = _repository_methods().keys()
    not_run = NOT_RUN | (NOT_RUN_ON_SQLITE if backend == "sqlite" else {})
    assert not not_run.keys() - methods, "NOT_RUN or NOT_RUN_ON_SQLITE names a method gone"
    missing = methods - not_run.keys() - recorder.labels
    assert not missing, f"the workload never ran {sorted(missing)}: extend it"
    if backend == "sqlite":
        sent = NOT_RUN_ON_SQLITE.keys() & recorder.labels
        assert not sent, f"{sorted(sent)} send statements on SQLite: off NOT_RUN_ON_SQLITE"

    statements = sorted(recorder.statements.values(), key=lambda s: (s.label, s.sql))
    if backend == "sqlite":
        problems = _sqlite_check_all(str(make_url(seeded).database), statements)
    else:
        problems = await _check_all(seeded, statements)
    assert not problems, (
        f"{len(problems)} hot-path statements read a whole big table "
        f"({FINISHED_HANDOFFS} finished handoffs, {backend}):\n\n" + "\n\n".join(problems)
    )
