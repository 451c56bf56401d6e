"""A month of history, bulk-loaded: what a store holds after weeks in production.

`load` writes into a store (migrating it first) `History.handoffs` finished handoffs created
evenly over `History.days` up to a moment, with what the service would have left behind
them: their required skills, their offers (the accepted one, and declines and misses before
it for some), the agents who took them (offline now), the agents' ended sessions and the
quality numbers kept for them (`domain.quality.fold` over the same facts the service records,
written as the buckets still kept at that moment). COPY on PostgreSQL, executemany on SQLite,
a day at a time.

Every value follows from the handoff's number, so two loads of the same `History` hold the
same rows. The soak (`bench.soak`) preloads it; the EXPLAIN test plans against it.

The days are written by worker processes that are spawned: a script that calls `load` must
guard its top level (`if __name__ == "__main__":`), as every spawning script must. The load
ends with ANALYZE (on PostgreSQL VACUUM too, as a month-old table has had), which a SQLite
store the service made has never had (the planner then goes by the indexes alone): the
EXPLAIN test plans with and without the statistics.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from humanline.domain.clock import SystemClock
from humanline.domain.model import (
    AgentProfile,
    HandoffState,
    OfferState,
    Outcome,
    RiskClass,
)
from humanline.domain.quality import (
    Fact,
    HandoffSample,
    Kept,
    OfferSample,
    Resolution,
    fold,
)
from humanline.store.sql.listener import asyncpg_dsn
from humanline.store.sql.rollups import rollup_row
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import (
    agents,
    handoff_skills,
    handoffs,
    offers,
    quality_rollups,
    replicas,
    sessions,
    sqlite_timestamp,
)

TYPES: tuple[tuple[str, RiskClass], ...] = (
    ("order_lookup", RiskClass.LOW),
    ("delivery", RiskClass.LOW),
    ("refund", RiskClass.MEDIUM),
    ("complaint", RiskClass.MEDIUM),
    ("cancellation", RiskClass.MEDIUM),
    ("billing_dispute", RiskClass.HIGH),
    ("account_access", RiskClass.HIGH),
    ("fraud_report", RiskClass.HIGH),
)
SKILLS = (
    "billing",
    "refunds",
    "orders",
    "shipping",
    "returns",
    "tech_support",
    "accounts",
    "fraud",
    "sales",
    "warranty",
    "loyalty",
    "general",
)
OUTCOMES = (
    Outcome.RESOLVED,
    Outcome.RESOLVED,
    Outcome.RESOLVED,
    Outcome.UNRESOLVED,
    Outcome.TRANSFERRED,
    Outcome.FOLLOW_UP_NEEDED,
)
LANGUAGES = ("en", "en", "en", "de", "fr", "es")
SUMMARY = "Charged twice for the same order; asks for a refund of the second charge."
DAY = timedelta(days=1)
LOAD_WORKERS = 2
SQLITE_BUSY_MS = 600_000  # the workers take turns at writing


@dataclass(frozen=True)
class History:
    """What to load: `handoffs` finished handoffs created evenly over the `days` before the
    moment given to `load` (less `newest`, the age of the newest), taken by `agents` agents."""

    handoffs: int = 2_000_000
    days: float = 30.0
    agents: int = 300
    newest: timedelta = timedelta(minutes=10)
    quality: bool = True  # the quality buckets too (folded from the history's facts)
    prefix: str = "history"  # of agent ids and every other id

    def agent_id(self, n: int) -> str:
        return f"{self.prefix}-agent-{n % self.agents:04d}"

    def skills_of(self, n: int) -> dict[str, int]:
        """Agent `n`'s skills: about a third of them, proficiencies 1 to 5."""
        chosen = {s: 1 + (n * i) % 5 for i, s in enumerate(SKILLS) if (n + i) % 3 == 0}
        return chosen or {SKILLS[n % len(SKILLS)]: 3}


@dataclass
class Loaded:
    """What `load` wrote, and how long it took."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, table: str, count: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + count


def _id(prefix: str, kind: int, n: int) -> str:
    """A UUID made of the history's prefix, the kind of row and its number."""
    return str(uuid.UUID(int=zlib.crc32(prefix.encode()) << 96 | kind << 64 | n))


@dataclass
class _Rows:
    """One day's rows, as dicts per table, and its quality facts."""

    handoffs: list[dict[str, Any]] = field(default_factory=list)
    handoff_skills: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)


def _handoff(h: History, g: int, created: datetime, rows: _Rows) -> None:
    """Handoff `g`: 6 in 7 completed, 1 in 53 of the rest expired unoffered, the others
    cancelled by the bot; a decline before the accept for 1 in 4, a miss for 1 in 6."""
    kind, risk = TYPES[g % len(TYPES)]
    skills: list[tuple[str, int]] = [(SKILLS[g % len(SKILLS)], 1 + g % 3)]
    if g % 3 == 0:
        skills.append((SKILLS[(g + 5) % len(SKILLS)], 1 + g % 2))
    if g % 7 == 0:
        state = HandoffState.EXPIRED if g % 53 == 0 else HandoffState.CANCELLED
    else:
        state = HandoffState.COMPLETED
    done = state is HandoffState.COMPLETED
    agent = h.agent_id(g * 7) if done else None
    deadline = created + timedelta(seconds=60)
    assigned = created + timedelta(seconds=2 + (g * 7919) % 90) if done else None
    handle = 120.0 + g % 300 if done else None
    ended = assigned + timedelta(seconds=handle) if assigned and handle else created + DAY / 720
    outcome = OUTCOMES[g % len(OUTCOMES)] if done else None
    csat = 1 + (g // 3) % 5 if done and g % 3 == 1 else None
    offer_id = _id(h.prefix, 2, g) if done else None
    handoff_id = _id(h.prefix, 1, g)
    rows.handoffs.append(
        {
            "id": handoff_id,
            "request_id": _id(h.prefix, 3, g),
            "fingerprint": f"{g:064x}",
            "conversation_id": f"{h.prefix}-conversation-{g}",
            "customer_id": f"{h.prefix}-customer-{g % 40_000}",
            "interaction_type": kind,
            "required_skills": [list(s) for s in skills],
            "language": LANGUAGES[g % len(LANGUAGES)],
            "urgency": 1 + g % 4,
            "reason": "CUSTOMER_REQUEST",
            "summary": SUMMARY,
            "state": state.value,
            "created_at": created,
            "deadline": deadline,
            "requeue_count": 0,
            "agent_id": agent,
            "offer_id": offer_id,
            "assigned_at": assigned,
            "ended_at": ended,
            "outcome": None if outcome is None else outcome.value,
            "disposition_code": "done" if done else "",
            "notes": "",
            "completion_fingerprint": f"{g:064x}" if done else None,
            "handle_seconds": handle,
            "changed_at": ended,
            "changed_by": "history",
            "bot_id": f"{h.prefix}-bot",
            "routing": "",
            "relax_step": 0,
            "end_reason": "",
            "agent_order": "MOST_PROFICIENT",
            "risk_class": risk.name,
            "quality_ranked": False,
            "csat": csat,
            "feedback_at": ended if csat else None,
        }
    )
    rows.handoff_skills.extend(
        {"handoff_id": handoff_id, "skill": s, "min_proficiency": p} for s, p in skills
    )
    names = tuple(s for s, _ in skills)
    answered: list[tuple[str, OfferState]] = []
    if done:
        assert assigned is not None
        if g % 4 == 0:
            answered.append((h.agent_id(g * 7 + 1), OfferState.DECLINED))
        if g % 6 == 0:
            answered.append((h.agent_id(g * 7 + 2), OfferState.EXPIRED))
        for k, (who, how) in enumerate(answered):
            at = created + (assigned - created) * (k + 1) / (len(answered) + 1)
            rows.offers.append(
                {
                    "id": _id(h.prefix, 4 + k, g),
                    "handoff_id": handoff_id,
                    "agent_id": who,
                    "state": how.value,
                    "created_at": at - timedelta(seconds=1),
                    "expires_at": at,
                    "decided_at": at if how is OfferState.DECLINED else None,
                    "ended_at": at,
                    "decline_reason": "BUSY" if how is OfferState.DECLINED else None,
                    "rescind_reason": "EXPIRED" if how is OfferState.EXPIRED else None,
                    "ranking": "",
                }
            )
        assert agent is not None
        rows.offers.append(
            {
                "id": offer_id,
                "handoff_id": handoff_id,
                "agent_id": agent,
                "state": OfferState.COMPLETED.value,
                "created_at": assigned - timedelta(seconds=1),
                "expires_at": assigned + timedelta(seconds=14),
                "decided_at": assigned,
                "ended_at": ended,
                "decline_reason": None,
                "rescind_reason": None,
                "ranking": "",
            }
        )
        answered.append((agent, OfferState.COMPLETED))
    if h.quality:
        rows.facts.append(
            Fact(
                g,
                created,
                HandoffSample(
                    kind,
                    risk,
                    names,
                    agent,
                    state,
                    created,
                    deadline,
                    assigned,
                    outcome,
                    handle,
                    csat,
                ),
            )
        )
        rows.facts.extend(
            Fact(g, created, OfferSample(kind, risk, names, who, how)) for who, how in answered
        )


def _kept(kept: Kept, resolution: Resolution, start: datetime) -> bool:
    """Whether the pruner would have left the bucket (days: all of them, here)."""
    match resolution:
        case Resolution.SECOND:
            return start >= kept.seconds_from
        case Resolution.MINUTE:
            return start >= kept.minutes_from
        case Resolution.HOUR:
            return start >= kept.hours_from
        case Resolution.DAY:
            return True


def _days(h: History, until: datetime) -> Iterator[tuple[int, int, datetime, timedelta]]:
    """The handoffs' numbers a UTC day at a time: (first, end, origin, step), handoff `g`
    created at origin + g x step, the last one `h.newest` before `until`."""
    step = timedelta(days=h.days) / h.handoffs
    origin = until - h.newest - step * (h.handoffs - 1)
    g = 0
    while g < h.handoffs:
        created = origin + step * g
        day_end = datetime.combine(created.date(), datetime.min.time(), UTC) + DAY
        end = min(h.handoffs, g + 1 + math.ceil((day_end - created) / step))
        while end > g + 1 and origin + step * (end - 1) >= day_end:
            end -= 1  # each day's handoffs alone: no two days share a bucket
        while end < h.handoffs and origin + step * end < day_end:
            end += 1
        yield g, end, origin, step
        g = end


def _day_rows(h: History, first: int, end: int, origin: datetime, step: timedelta) -> _Rows:
    rows = _Rows()
    for g in range(first, end):
        _handoff(h, g, origin + step * g, rows)
    return rows


def _bucket_rows(facts: Sequence[Fact], kept: Kept) -> list[dict[str, Any]]:
    return [
        rollup_row(key, sums)
        for key, sums in fold(facts).items()
        if _kept(kept, key.resolution, key.start)
    ]


def _sessions(h: History, until: datetime) -> list[dict[str, Any]]:
    """An eight-hour session a day per agent, ended, over the history's days."""
    found = []
    for day in range(math.ceil(h.days)):
        start = until - timedelta(days=day + 1)
        for n in range(h.agents):
            created = start + timedelta(minutes=n % 600)
            found.append(
                {
                    "id": _id(h.prefix, 8, day * h.agents + n),
                    "agent_id": h.agent_id(n),
                    "state": "ENDED",
                    "token_hash": f"{day * h.agents + n:064x}",
                    "replica_id": f"{h.prefix}-replica",
                    "connection_id": _id(h.prefix, 9, day * h.agents + n),
                    "created_at": created,
                    "disconnected_at": None,
                    "grace_expires_at": None,
                    "ended_at": created + timedelta(hours=8),
                    "end_reason": "LOGGED_OUT",
                }
            )
    return found


# --- writing -----------------------------------------------------------------------------------


def _columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_timestamp(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _pg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


class _Writer:
    """Rows into one store's tables, a transaction at a time: COPY on PostgreSQL,
    executemany on SQLite."""

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    async def __aenter__(self) -> _Writer:
        if self._url.get_backend_name() == "sqlite":
            self._sqlite = sqlite3.connect(
                self._url.database or "", isolation_level=None, check_same_thread=False
            )
            self._sqlite.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
        else:
            self._pg = await asyncpg.connect(asyncpg_dsn(self._url), timeout=10)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    async def __aexit__(self, *_: object) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            await self._pg.close()

    async def write(self, tables: Sequence[tuple[sa.Table, list[dict[str, Any]]]]) -> None:
        """The rows of every table in one transaction."""
        if self._pg is not None:
            async with self._pg.transaction():
                for table, rows in tables:
                    names = _columns(table)
                    await self._pg.copy_records_to_table(
                        table.name,
                        records=[tuple(_pg_value(r.get(n)) for n in names) for r in rows],
                        columns=names,
                    )
            return
        assert self._sqlite is not None
        await asyncio.to_thread(self._write_sqlite, tables)

    def _write_sqlite(self, tables: Sequence[tuple[sa.Table, list[dict[str, Any]]]]) -> None:
        assert self._sqlite is not None
        db = self._sqlite
        converted = [
            (
                table.name,
                _columns(table),
                [[_sqlite_value(r.get(n)) for n in _columns(table)] for r in rows],
            )
            for table, rows in tables
        ]
        db.execute("BEGIN IMMEDIATE")
        try:
            for name, names, values in converted:
                db.executemany(
                    f"INSERT INTO {name} ({', '.join(names)})"
                    f" VALUES ({', '.join('?' for _ in names)})",
                    values,
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def sql(self, statement: str) -> None:
        if self._pg is not None:
            await self._pg.execute(statement)
        else:
            assert self._sqlite is not None
            await asyncio.to_thread(self._sqlite.execute, statement)

    async def secondary_indexes(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """The indexes of tables `names` that no constraint owns: (name, its CREATE)."""
        if self._pg is not None:
            rows = await self._pg.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1::text[])"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
                list(names),
            )
            return [(r["indexname"], r["indexdef"]) for r in rows]
        assert self._sqlite is not None
        marks = ", ".join("?" for _ in names)
        found = self._sqlite.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({marks})",
            list(names),
        )
        return [(name, sql) for name, sql in found]


async def _write_day(
    url: str, h: History, first: int, end: int, origin: datetime, step: timedelta, kept: Kept
) -> dict[str, int]:
    rows = _day_rows(h, first, end, origin, step)
    tables = [
        (handoffs, rows.handoffs),
        (handoff_skills, rows.handoff_skills),
        (offers, rows.offers),
    ]
    if h.quality:
        tables.append((quality_rollups, _bucket_rows(rows.facts, kept)))
    async with _Writer(url) as writer:
        await writer.write(tables)
    return {table.name: len(written) for table, written in tables}


def _day(url: str, h: History, day: tuple[int, int, datetime, timedelta], kept: Kept) -> Any:
    """One day written, in a worker process: generating and folding are most of a load's
    work, and the workers share it."""
    return asyncio.run(_write_day(url, h, *day, kept))


async def _agents(url: str, h: History, until: datetime) -> None:
    """The history's agents, through the store (its triggers keep the skills index), last
    assigned at the newest handoff; and the replica their sessions were on, stopped."""
    created = until - timedelta(days=h.days + 1)
    store = SqlStore(url, SystemClock())
    await store.open()  # migrates to the newest revision
    try:
        async with store.write() as uow:
            for n in range(h.agents):
                profile = AgentProfile(
                    f"History agent {n}",
                    h.skills_of(n),
                    frozenset({"en"} | ({"de"} if n % 3 == 0 else set())),
                    1 + n % 3,
                )
                await uow.agents.insert(h.agent_id(n), profile, created)
    finally:
        await store.close()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(agents)
                .where(agents.c.id.in_([h.agent_id(n) for n in range(h.agents)]))
                .values(last_assigned_at=until - h.newest)
            )
            stopped = until - timedelta(hours=12)
            await conn.execute(
                sa.insert(replicas).values(
                    id=f"{h.prefix}-replica",
                    host=f"{h.prefix}-host",
                    pid=1,
                    started_at=created,
                    heartbeat_at=stopped,
                    stopped_at=stopped,
                )
            )
    finally:
        await engine.dispose()


async def load(
    url: str, h: History, until: datetime, say: Callable[[str], None] = lambda _: None
) -> Loaded:
    """Writes `h` into the store at `url` (migrated first), its newest handoff created
    `h.newest` before `until`; the quality buckets as the pruner would have left them at
    `until`."""
    began = time.perf_counter()
    loaded = Loaded()
    await _agents(url, h, until)
    loaded.add("agents", h.agents)
    kept = Kept.at(until)
    loaded_tables = [handoffs.name, handoff_skills.name, offers.name, quality_rollups.name]
    async with _Writer(url) as writer:
        # Indexes are built once at the end, much faster than kept up row by row.
        indexes = await writer.secondary_indexes(loaded_tables)
        for name, _ in indexes:
            await writer.sql(f"DROP INDEX {name}")
        # A day's rows in a transaction of their own, written by a worker; days are whole
        # UTC days, so no two share a quality bucket.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(LOAD_WORKERS, mp_context=context) as workers:
            days = [
                asyncio.wrap_future(workers.submit(_day, url, h, day, kept))
                for day in _days(h, until)
            ]
            for done in asyncio.as_completed(days):
                for table, count in (await done).items():
                    loaded.add(table, count)
                say(f"  {loaded.rows['handoffs']:,} of {h.handoffs:,} handoffs loaded")
        found = _sessions(h, until)
        await writer.write([(sessions, found)])
        loaded.add("sessions", len(found))
        for _, create in indexes:
            await writer.sql(create)
        # A month-old PostgreSQL table has been vacuumed: its pages are marked all-visible
        # (so index-only scans and later vacuums skip them) and its statistics are kept.
        await writer.sql("ANALYZE" if writer.is_sqlite else "VACUUM (ANALYZE)")
    loaded.seconds = round(time.perf_counter() - began, 1)
    return loaded
