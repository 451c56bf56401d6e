"""Hot-path queries are covered by indexes: EXPLAIN them against 100,000 finished handoffs.

PostgreSQL only. The test seeds a realistic history (100,000 finished handoffs with their
skills and offers, 20,000 ended sessions, 300 agents) and a live queue, runs the service over
real gRPC through a workload that takes every hot path (log-ins, requests, offers declined,
accepted, expired and rescinded, completions, cancels, a watch, pool status and its watch,
agent listings, a drop with a resume, a grace period running out, a dead replica's recovery,
the sweeper and the replicas' change feeds), and records every statement the store sends,
with its parameters and the repository method that sent it; every repository method must
have run.

Each SELECT, UPDATE and DELETE is then EXPLAINed with its recorded parameters on the seeded
database, and the test fails on any plan that reads a whole big table: a Seq Scan, or a scan
without an index condition of an index that is not partial. That is the plan PostgreSQL
makes for the first executions of the service's prepared statements (asyncpg prepares them;
custom plans, for the actual values). After five, PostgreSQL may cache a generic plan, made
without the values. The store writes its state constants into the SQL text
(`repositories._const`) so that partial indexes (`WHERE state = 'QUEUED'`) match even then;
so every statement is also EXPLAINed with the generic plan forced, and must not read a whole
big table either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2
from sqlalchemy import event
from sqlalchemy.engine import make_url

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
from humanline.store.sql.store import SqlStore
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
from tests.conftest import FAST, Served, empty_postgres
from tests.support.client import AgentDriver, Stubs

FINISHED_HANDOFFS = 100_000
# md5('dead-replica-handoff')::uuid in the seed
DEAD_REPLICA_HANDOFF = str(uuid.UUID(hashlib.md5(b"dead-replica-handoff").hexdigest()))
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

SKILLS = (
    "ARRAY['billing', 'refunds', 'orders', 'shipping', 'returns', 'tech_support', 'accounts',"
    " 'fraud', 'sales', 'warranty', 'loyalty', 'general']"
)


def _agent(n: str) -> str:
    return f"'seed-agent-' || lpad(({n})::text, 4, '0')"


# Agents 1-200 are offline; 201-250 available but full (each holds an assigned handoff and a
# pending offer); 251-270 away; 271-280 dropped, in their grace period; 281 connected to a dead
# replica, holding one assigned handoff; 282-300 deleted. None of them is ready for offers, so
# the workload's own agents get the offers the workload waits for; the live queue is work
# only the busy agents could take (skill `legal`, level 5).
SEED = f"""
INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, stopped_at)
VALUES
    -- another replica, alive throughout the test (its last heartbeat is dated a day ahead)
    ('seed-replica-live', 'seed-host-1', 101, now() - interval '2 days', now() + interval '1 day',
     NULL),
    -- a replica that died an hour ago without a goodbye: the service recovers its sessions
    ('seed-replica-dead', 'seed-host-2', 102, now() - interval '2 days', now() - interval '1 hour',
     NULL),
    ('seed-replica-old', 'seed-host-3', 103, now() - interval '40 days', now() - interval '3 days',
     now() - interval '3 days');

INSERT INTO agents (id, display_name, skills, languages, capacity, load, status, status_reason,
                    connected, consecutive_misses, last_assigned_at, created_at, updated_at,
                    deleted_at, changed_at, changed_by)
SELECT {_agent("g")},
       'Seed Agent ' || g,
       '{{}}'::jsonb,
       to_jsonb(array_remove(ARRAY[CASE WHEN g % 3 = 0 THEN 'de' END, 'en',
                                   CASE WHEN g % 7 = 0 THEN 'es' END,
                                   CASE WHEN g % 5 = 0 THEN 'fr' END], NULL)),
       CASE WHEN g BETWEEN 201 AND 250 THEN 2 WHEN g = 281 THEN 1 ELSE 1 + g % 3 END,
       CASE WHEN g BETWEEN 201 AND 250 THEN 2 WHEN g = 281 THEN 1 ELSE 0 END,
       CASE WHEN g <= 200 OR g > 281 THEN 'OFFLINE'
            WHEN g BETWEEN 251 AND 270 THEN 'AWAY'
            ELSE 'AVAILABLE' END,
       'AGENT_REQUEST',
       g BETWEEN 201 AND 270 OR g = 281,
       0,
       now() - g * interval '1 minute',
       now() - interval '90 days',
       now() - interval '1 day',
       CASE WHEN g > 281 THEN now() - interval '10 days' END,
       now() - interval '1 day',
       'seed'
FROM generate_series(1, 300) AS g;

-- about three skills per agent; `legal` for the busy ones (201-250, 281)
INSERT INTO agent_skills (agent_id, skill, proficiency)
SELECT {_agent("g")}, k.skill, 1 + (g * k.i) % 5
FROM generate_series(1, 281) AS g
JOIN unnest({SKILLS}) WITH ORDINALITY AS k(skill, i) ON (g + k.i) % 4 = 0
UNION ALL
SELECT {_agent("g")}, 'legal', 5
FROM generate_series(1, 281) AS g WHERE g BETWEEN 201 AND 250 OR g = 281;

UPDATE agents SET skills = s.skills
FROM (SELECT agent_id, jsonb_object_agg(skill, proficiency) AS skills
      FROM agent_skills GROUP BY agent_id) AS s
WHERE agents.id = s.agent_id;

INSERT INTO agent_languages (agent_id, language)
SELECT id, jsonb_array_elements_text(languages) FROM agents WHERE deleted_at IS NULL;

-- 30 days of finished handoffs, one every 26 s, the newest ten minutes ago: 6 in 7 completed,
-- the rest cancelled by the bot
INSERT INTO handoffs (id, request_id, fingerprint, conversation_id, customer_id,
                      interaction_type, required_skills, language, urgency, reason, summary,
                      state, created_at, deadline, requeue_count, agent_id, offer_id,
                      assigned_at, ended_at, outcome, disposition_code, notes,
                      completion_fingerprint, handle_seconds, changed_at, changed_by, bot_id)
SELECT md5('handoff' || g)::uuid::text,
       md5('request' || g)::uuid::text,
       encode(sha256(('fingerprint' || g)::bytea), 'hex'),
       'conv-' || g,
       'cust-' || g % 40000,
       (ARRAY['order_lookup', 'refund', 'billing_dispute', 'delivery', 'account_access',
              'complaint', 'cancellation', 'other'])[1 + g % 8],
       CASE WHEN g % 3 = 0
            THEN jsonb_build_array(jsonb_build_array(({SKILLS})[1 + g % 12], 1 + g % 3),
                                   jsonb_build_array(({SKILLS})[1 + (g + 5) % 12], 1 + g % 2))
            ELSE jsonb_build_array(jsonb_build_array(({SKILLS})[1 + g % 12], 1 + g % 3)) END,
       CASE g % 10 WHEN 0 THEN NULL WHEN 1 THEN 'de' WHEN 2 THEN 'fr' WHEN 3 THEN 'es'
                   ELSE 'en' END,
       1 + g % 4,
       (ARRAY['CUSTOMER_REQUEST', 'LOW_CONFIDENCE', 'POLICY_EXCEPTION', 'TOOL_FAILURE',
              'REPEATED_CONTACT'])[1 + g % 5],
       'The customer needs a human for this one.',
       CASE WHEN g % 7 = 0 THEN 'CANCELLED' ELSE 'COMPLETED' END,
       t.created,
       t.created + interval '2 minutes',
       0,
       CASE WHEN g % 7 <> 0 THEN {_agent("1 + g % 281")} END,
       CASE WHEN g % 7 <> 0 THEN md5('offer' || g)::uuid::text END,
       CASE WHEN g % 7 <> 0 THEN t.created + interval '40 seconds' END,
       t.created + CASE WHEN g % 7 <> 0 THEN interval '5 minutes' ELSE interval '1 minute' END,
       CASE WHEN g % 7 <> 0 THEN (ARRAY['RESOLVED', 'RESOLVED', 'RESOLVED', 'UNRESOLVED',
                                        'TRANSFERRED', 'FOLLOW_UP_NEEDED'])[1 + g % 6] END,
       CASE WHEN g % 7 <> 0 THEN 'done' ELSE '' END,
       '',
       CASE WHEN g % 7 <> 0 THEN encode(sha256(('completion' || g)::bytea), 'hex') END,
       CASE WHEN g % 7 <> 0 THEN 260.0 END,
       t.created + CASE WHEN g % 7 <> 0 THEN interval '5 minutes' ELSE interval '1 minute' END,
       'seed', 'test-bot'
FROM generate_series(1, {FINISHED_HANDOFFS}) AS g,
     LATERAL (SELECT now() - interval '30 days' - interval '10 minutes'
                     + g * (interval '30 days' / {FINISHED_HANDOFFS}) AS created) AS t;

-- their offers: the accepted one, completed; a decline before it for one in four, an expired
-- one for one in six; one cancelled handoff in two was being offered when the bot cancelled
INSERT INTO offers (id, handoff_id, agent_id, state, created_at, expires_at, decided_at,
                    ended_at, decline_reason, rescind_reason)
SELECT h.offer_id, h.id, h.agent_id, 'COMPLETED', h.assigned_at - interval '10 seconds',
       h.assigned_at + interval '5 seconds', h.assigned_at, h.ended_at, NULL, NULL
FROM handoffs AS h WHERE h.state = 'COMPLETED';

INSERT INTO offers (id, handoff_id, agent_id, state, created_at, expires_at, decided_at,
                    ended_at, decline_reason, rescind_reason)
SELECT md5('declined' || g)::uuid::text, md5('handoff' || g)::uuid::text,
       {_agent("1 + (g + 17) % 281")}, 'DECLINED', t.created + interval '5 seconds',
       t.created + interval '20 seconds', t.created + interval '8 seconds',
       t.created + interval '8 seconds', 'BUSY', NULL
FROM generate_series(4, {FINISHED_HANDOFFS}, 4) AS g,
     LATERAL (SELECT now() - interval '30 days' - interval '10 minutes'
                     + g * (interval '30 days' / {FINISHED_HANDOFFS}) AS created) AS t
WHERE g % 7 <> 0
UNION ALL
SELECT md5('expired' || g)::uuid::text, md5('handoff' || g)::uuid::text,
       {_agent("1 + (g + 43) % 281")}, 'EXPIRED', t.created + interval '10 seconds',
       t.created + interval '25 seconds', NULL, t.created + interval '25 seconds', NULL,
       'EXPIRED'
FROM generate_series(1, {FINISHED_HANDOFFS}, 6) AS g,
     LATERAL (SELECT now() - interval '30 days' - interval '10 minutes'
                     + g * (interval '30 days' / {FINISHED_HANDOFFS}) AS created) AS t
WHERE g % 7 <> 0
UNION ALL
SELECT md5('rescinded' || g)::uuid::text, md5('handoff' || g)::uuid::text,
       {_agent("1 + g % 281")}, 'RESCINDED', t.created + interval '30 seconds',
       t.created + interval '45 seconds', NULL, t.created + interval '1 minute', NULL,
       'HANDOFF_CANCELLED'
FROM generate_series(14, {FINISHED_HANDOFFS}, 14) AS g,
     LATERAL (SELECT now() - interval '30 days' - interval '10 minutes'
                     + g * (interval '30 days' / {FINISHED_HANDOFFS}) AS created) AS t;

-- 30 days of ended sessions
INSERT INTO sessions (id, agent_id, state, token_hash, replica_id, connection_id, created_at,
                      disconnected_at, grace_expires_at, ended_at, end_reason)
SELECT md5('session' || n)::uuid::text, {_agent("1 + n % 281")}, 'ENDED',
       encode(sha256(('token' || n)::bytea), 'hex'), 'seed-replica-old',
       md5('connection' || n)::uuid::text, t.created,
       CASE WHEN n % 4 = 0 THEN t.created + interval '8 hours' END,
       CASE WHEN n % 4 = 0 THEN t.created + interval '8 hours 30 seconds' END,
       t.created + interval '8 hours 30 seconds',
       (ARRAY['GRACE_EXPIRED', 'LOGGED_OUT', 'LOGGED_OUT', 'REPLACED'])[1 + n % 4]
FROM generate_series(1, 20000) AS n,
     LATERAL (SELECT now() - interval '31 days' + n * interval '2 minutes' AS created) AS t;

-- live sessions: 201-270 connected, 271-280 in their grace period, 281 on the dead replica
INSERT INTO sessions (id, agent_id, state, token_hash, replica_id, connection_id, created_at,
                      disconnected_at, grace_expires_at, ended_at, end_reason)
SELECT md5('live-session' || g)::uuid::text, {_agent("g")},
       CASE WHEN g BETWEEN 271 AND 280 THEN 'DISCONNECTED' ELSE 'CONNECTED' END,
       encode(sha256(('live-token' || g)::bytea), 'hex'),
       CASE WHEN g = 281 THEN 'seed-replica-dead' ELSE 'seed-replica-live' END,
       md5('live-connection' || g)::uuid::text, now() - interval '3 hours',
       CASE WHEN g BETWEEN 271 AND 280 THEN now() - interval '5 seconds' END,
       CASE WHEN g BETWEEN 271 AND 280 THEN now() + interval '1 hour' END,
       NULL, NULL
FROM generate_series(201, 281) AS g;

-- the live queue: 30 handoffs queued, 50 offered (pending offers), 51 assigned
INSERT INTO handoffs (id, request_id, fingerprint, conversation_id, customer_id,
                      interaction_type, required_skills, language, urgency, reason, summary,
                      state, created_at, deadline, requeue_count, agent_id, offer_id,
                      assigned_at, ended_at, outcome, disposition_code, notes,
                      completion_fingerprint, handle_seconds, changed_at, changed_by, bot_id)
SELECT md5(kind || n)::uuid::text, md5('live-request-' || kind || n)::uuid::text,
       encode(sha256(('live-fingerprint' || kind || n)::bytea), 'hex'),
       'live-conv-' || kind || n, 'live-cust-' || n, 'complaint', '[["legal", 5]]'::jsonb,
       'en', 2, 'POLICY_EXCEPTION', 'The customer threatens to sue.',
       CASE kind WHEN 'queued' THEN 'QUEUED' WHEN 'offered' THEN 'OFFERED' ELSE 'ASSIGNED' END,
       now() - n * interval '5 seconds', now() - n * interval '5 seconds' + interval '2 minutes',
       0,
       CASE WHEN kind <> 'queued' THEN {_agent("200 + n")} END,
       CASE WHEN kind <> 'queued' THEN md5('live-offer-' || kind || n)::uuid::text END,
       CASE WHEN kind = 'assigned' THEN now() - interval '1 minute' END,
       NULL::timestamptz, NULL::text, '', '', NULL::text, NULL::float8,
       now() - n * interval '5 seconds', 'seed', 'test-bot'
FROM generate_series(1, 50) AS n, unnest(ARRAY['queued', 'offered', 'assigned']) AS kind
WHERE kind <> 'queued' OR n <= 30
UNION ALL
SELECT md5('dead-replica-handoff')::uuid::text, md5('dead-replica-request')::uuid::text,
       encode(sha256('dead-replica-fingerprint'::bytea), 'hex'), 'live-conv-dead',
       'live-cust-dead', 'complaint', '[["legal", 5]]'::jsonb, 'en', 2, 'POLICY_EXCEPTION',
       'The customer threatens to sue.', 'ASSIGNED', now() - interval '20 minutes',
       now() - interval '18 minutes', 0, {_agent("281")}, md5('dead-replica-offer')::uuid::text,
       now() - interval '19 minutes', NULL, NULL, '', '', NULL, NULL,
       now() - interval '19 minutes', 'seed', 'test-bot';

INSERT INTO offers (id, handoff_id, agent_id, state, created_at, expires_at, decided_at,
                    ended_at, decline_reason, rescind_reason)
SELECT offer_id, id, agent_id,
       CASE state WHEN 'OFFERED' THEN 'PENDING' ELSE 'ACCEPTED' END,
       changed_at, CASE state WHEN 'OFFERED' THEN now() + interval '1 hour' ELSE changed_at END,
       assigned_at, NULL, NULL, NULL
FROM handoffs WHERE state IN ('OFFERED', 'ASSIGNED');

INSERT INTO handoff_skills (handoff_id, skill, min_proficiency)
SELECT id, skill ->> 0, (skill ->> 1)::int
FROM handoffs, jsonb_array_elements(required_skills) AS skill;

-- the quality numbers kept so far: per second for the last hour, per minute for three days,
-- per hour and per day for a month, by type, risk class, skill and agent, three types
INSERT INTO quality_rollups (resolution, dimension, bucket_start, interaction_type, group_key,
                             handoffs, completed, resolved, csat_1, csat_2, csat_3, csat_4,
                             csat_5, within_target, cancelled, expired, offers, offers_taken,
                             handled, handle_seconds, waits)
SELECT r.seconds, g.dimension,
       to_timestamp((floor(extract(epoch FROM now()) / r.seconds) - b) * r.seconds),
       t.kind, COALESCE(g.key, t.kind), 10, 8, 6, 0, 1, 1, 2, 3, 9, 1, 1, 12, 9, 8, 2400.0,
       '{{"171": 6, "240": 3}}'::jsonb
FROM (VALUES (1, 3600), (60, 4320), (3600, 720), (86400, 30)) AS r(seconds, buckets),
     LATERAL generate_series(0, r.buckets - 1) AS b,
     unnest(ARRAY['billing_dispute', 'refund', 'complaint']) AS t(kind),
     (VALUES ('INTERACTION_TYPE', NULL), ('RISK_CLASS', 'HIGH'), ('RISK_CLASS', 'LOW'),
             ('SKILL', 'billing'), ('SKILL', 'refunds'), ('AGENT', 'seed-agent-0001'),
             ('AGENT', 'seed-agent-0002'), ('AGENT', 'seed-agent-0003')) AS g(dimension, key);

-- and facts not rolled up yet: the last few thousand finished handoffs
INSERT INTO quality_facts (kind, created_at, interaction_type, risk_class, required_skills,
                           agent_id, state, deadline, assigned_at, outcome, handle_seconds,
                           csat)
SELECT 'HANDOFF', created_at, interaction_type, risk_class, required_skills, agent_id, state,
       deadline, assigned_at, outcome, handle_seconds, csat
FROM handoffs WHERE state IN ('COMPLETED', 'CANCELLED') ORDER BY created_at DESC LIMIT 3000;

ANALYZE agents, agent_skills, agent_languages, handoffs, handoff_skills, offers, sessions,
        replicas, quality_rollups, quality_facts;
"""


async def _seed(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(url)), timeout=5)
    try:
        await conn.execute(SEED)
        finished = await conn.fetchval(
            "SELECT count(*) FROM handoffs WHERE state IN ('COMPLETED', 'CANCELLED')"
        )
    finally:
        await conn.close()
    assert finished == FINISHED_HANDOFFS


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
    SQLAlchemy runs the driver in a greenlet that shares the task's context variables."""
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
    """Keeps the SELECTs, UPDATEs and DELETEs the store sends: as a `before_cursor_execute`
    listener (SQLAlchemy's way) and from asyncpg's `fetch` and `execute` (the prepared
    statements `store.sql.postgres` runs there)."""

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
            return  # INSERT ... VALUES, savepoints: nothing to scan
        label = LABEL.get() or "store"  # `SELECT now()`, pg_notify: the store itself
        key = (label, statement)
        if key not in self.statements:
            self.statements[key] = Statement(label, statement)
        self.statements[key].add(tuple(parameters or ()))

    @property
    def labels(self) -> set[str]:
        return {label for label, _ in self.statements}


@contextlib.asynccontextmanager
async def _recorded_service(url: str, recorder: Recorder) -> AsyncIterator[Stubs]:
    """The service on a real gRPC server, its store's statements going to `recorder` from
    the moment the store is open (so that the recovery at start is recorded too)."""
    store = SqlStore(url, SystemClock())
    open_store = store.open

    async def open_and_record(writer: str = "") -> None:
        await open_store(writer)
        assert store._writer is not None
        assert store._writer is store._reader  # one engine on PostgreSQL
        event.listen(store._writer.sync_engine, "before_cursor_execute", recorder)

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
    for handoff in (missed, held):
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
            lambda d=driver: _agent_state(client, d.agent_id), agent_pb2.AGENT_STATE_OFFLINE
        )
    # The seeded dead replica's agent: its session was recovered at start and its grace
    # period ended; its assigned handoff went back to the queue.
    recovered = await client.get_handoff(DEAD_REPLICA_HANDOFF)
    assert recovered.state == QUEUED
    assert recovered.requeue_count == 1


# --- EXPLAIN -------------------------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


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
        """Nodes that read a whole big table: a Seq Scan, or an index scan with no index
        condition on an index that is not partial (a partial index holds the live rows only,
        and reading all of it is what it is for)."""
        found = []
        for node in _nodes(plan):
            kind, index = node["Node Type"], node.get("Index Name")
            if kind == "Seq Scan" and node.get("Relation Name") in BIG_TABLES:
                found.append(f"Seq Scan on {node['Relation Name']}")
            elif index in self.full and "Index Cond" not in node:
                found.append(f"{kind} of all of {index} on {self.table[index]}")
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
    params, plan = plans[0]
    if not indexes.touches_big_table(plan):
        return []
    plan, text = await _generic_plan(conn, statement, params)
    if scans := indexes.whole_table_scans(plan):
        return [_problem(statement, scans, params, text, " (the generic plan)")]
    return []


async def _check_all(url: str, statements: list[Statement]) -> list[str]:
    """Every plan that reads a whole big table, described. Runs in a transaction that is
    rolled back (running the SELECTs takes row locks: FOR UPDATE)."""
    conn = await asyncpg.connect(asyncpg_dsn(make_url(url)), timeout=5)
    try:
        indexes = await _indexes(conn)
        transaction = conn.transaction()
        await transaction.start()
        try:
            return [p for s in statements for p in await _check(conn, s, indexes)]
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


# --- the test ------------------------------------------------------------------------------------


async def test_hot_path_queries_use_indexes_on_a_big_history(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(empty_postgres, postgres_database)
    try:
        await _seed(postgres_database)
        _label_repository_methods(monkeypatch)
        recorder = Recorder()
        for name in ("fetch", "execute"):
            method = getattr(asyncpg.Connection, name)
            monkeypatch.setattr(asyncpg.Connection, name, recorder.driver_method(method))
        async with _recorded_service(postgres_database, recorder) as client:
            async with asyncio.timeout(60):
                await _workload(client)
        assert not set(NOT_RUN) - _repository_methods().keys(), "NOT_RUN names a method gone"
        missing = _repository_methods().keys() - NOT_RUN.keys() - recorder.labels
        assert not missing, f"the workload never ran {sorted(missing)}: extend it"

        statements = sorted(recorder.statements.values(), key=lambda s: (s.label, s.sql))
        problems = await _check_all(postgres_database, statements)
        assert not problems, (
            f"{len(problems)} hot-path plans read a whole big table "
            f"({FINISHED_HANDOFFS} finished handoffs):\n\n" + "\n\n".join(problems)
        )
    finally:
        await asyncio.to_thread(empty_postgres, postgres_database)
