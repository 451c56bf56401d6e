"""History past its retention is pruned in batches, and nothing else is; calls that would read
what is gone say so (FAILED_PRECONDITION, HISTORY_PRUNED)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from humanline.domain.clock import SystemClock
from humanline.domain.quality import Dimension, Resolution, bucket_start
from humanline.service import retention
from humanline.service.retention import Pruner, RetentionPolicy, Vacuumer
from humanline.store.port import StoreError
from humanline.store.sql.listener import asyncpg_dsn
from humanline.store.sql.store import HOT_TABLES, VACUUM_LOCK, SqlStore
from humanline.store.sql.tables import (
    handoff_skills,
    handoffs,
    offers,
    quality_rollups,
    sessions,
)
from humanline.v1 import pool_service_pb2, quality_pb2
from tests.support.client import Stubs, error_details, stamp
from tests.unit.builders import profile


def _handoff(name: str, state: str, created: datetime, ended: datetime | None) -> dict[str, Any]:
    return {
        "id": name,
        "request_id": str(uuid.uuid4()),
        "fingerprint": "x",
        "conversation_id": "c",
        "customer_id": "u",
        "interaction_type": "refund",
        "required_skills": [["billing", 1]],
        "urgency": 2,
        "reason": "NOT_SPECIFIED",
        "summary": "",
        "state": state,
        "created_at": created,
        "deadline": created + timedelta(minutes=2),
        "agent_id": "ann" if state in ("COMPLETED", "ASSIGNED") else None,
        "assigned_at": created + timedelta(seconds=5)
        if state in ("COMPLETED", "ASSIGNED")
        else None,
        "ended_at": ended,
        "changed_at": ended or created,
    }


def _session(name: str, state: str, ended: datetime | None, at: datetime) -> dict[str, Any]:
    return {
        "id": name,
        "agent_id": "ann",
        "state": state,
        "token_hash": name,
        "replica_id": "r",
        "connection_id": name,
        "created_at": at,
        "ended_at": ended,
        "end_reason": "LOGGED_OUT" if ended else None,
    }


def _bucket(resolution: Resolution, dimension: Dimension, start: datetime) -> dict[str, Any]:
    return {
        "resolution": resolution.value,
        "dimension": dimension.value,
        "bucket_start": bucket_start(start, resolution),
        "interaction_type": "refund",
        "group_key": "ann" if dimension is Dimension.AGENT else "refund",
        **dict.fromkeys(
            ("handoffs", "completed", "resolved", "within_target", "cancelled", "expired"), 1
        ),
        **dict.fromkeys(("csat_1", "csat_2", "csat_3", "csat_4", "csat_5"), 0),
        **dict.fromkeys(("offers", "offers_taken", "handled"), 1),
        "handle_seconds": 60.0,
        "waits": {},
    }


def _count_writes(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """A list that gets an item at every write transaction `store` begins."""
    begun: list[None] = []
    write = store.write

    def counted() -> Any:
        begun.append(None)
        return write()

    monkeypatch.setattr(store, "write", counted)
    return begun


async def test_the_pruner_deletes_only_what_is_past_its_retention(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PRUNE_BATCH", 2)  # several batches
    store = SqlStore(db_url, SystemClock(), pool_size=2)
    await store.open()
    try:
        async with store.write() as uow:
            conn = uow.agents._conn  # type: ignore[attr-defined]
            now = uow.now
            await uow.agents.insert("ann", profile(skills={"billing": 3}), now)
            old, recent = now - timedelta(days=100), now - timedelta(days=10)
            rows = [
                *(_handoff(f"old-{i}", "COMPLETED", old, old) for i in range(3)),
                _handoff("old-cancelled", "CANCELLED", old, old),
                _handoff("old-expired", "EXPIRED", old, old),
                _handoff("recent", "COMPLETED", recent, recent),
                _handoff("old-but-assigned", "ASSIGNED", old, None),  # not final: stays
            ]
            for row in rows:
                await conn.execute(sa.insert(handoffs), [row])
            await conn.execute(
                sa.insert(handoff_skills),
                [{"handoff_id": r["id"], "skill": "billing", "min_proficiency": 1} for r in rows],
            )
            await conn.execute(
                sa.insert(offers),
                [
                    {
                        "id": f"offer-{r['id']}",
                        "handoff_id": r["id"],
                        "agent_id": "ann",
                        "state": "ACCEPTED" if r["state"] == "ASSIGNED" else "DECLINED",
                        "created_at": r["created_at"],
                        "expires_at": r["created_at"],
                    }
                    for r in rows
                ],
            )
            await conn.execute(
                sa.insert(sessions),
                [
                    *(_session(f"old-{i}", "ENDED", old, old) for i in range(3)),
                    _session("recent", "ENDED", recent, recent),
                    _session("live", "CONNECTED", None, old),
                ],
            )
            kept_rows = [
                _bucket(Resolution.SECOND, Dimension.INTERACTION_TYPE, now - timedelta(minutes=10)),
                _bucket(Resolution.MINUTE, Dimension.SKILL, now - timedelta(days=1)),
                _bucket(Resolution.HOUR, Dimension.AGENT, now - timedelta(days=30)),
                _bucket(Resolution.DAY, Dimension.RISK_CLASS, now - timedelta(days=300)),
            ]
            gone_rows = [
                _bucket(Resolution.SECOND, Dimension.INTERACTION_TYPE, now - timedelta(hours=2)),
                _bucket(Resolution.MINUTE, Dimension.SKILL, now - timedelta(days=4)),
                _bucket(Resolution.HOUR, Dimension.AGENT, now - timedelta(days=70)),
                _bucket(Resolution.DAY, Dimension.RISK_CLASS, now - timedelta(days=500)),
            ]
            await conn.execute(sa.insert(quality_rollups), kept_rows + gone_rows)

        writes = _count_writes(store, monkeypatch)
        pruned = await Pruner(store, RetentionPolicy()).prune()
        assert pruned == {"handoffs": 5, "sessions": 3, "quality_buckets": 4}
        # Batches of two: three transactions for five handoffs, and the sessions and
        # buckets in the same ones (before, a transaction per batch of each kind: 19).
        assert len(writes) == 3
        writes.clear()
        assert await Pruner(store, RetentionPolicy()).prune() == dict.fromkeys(pruned, 0)
        assert len(writes) == 1  # nothing to prune: one short transaction

        async with store.read() as uow:
            conn = uow.agents._conn  # type: ignore[attr-defined]

            async def ids(table: sa.Table, column: str = "id") -> set[Any]:
                return set((await conn.execute(sa.select(table.c[column]))).scalars())

            assert await ids(handoffs) == {"recent", "old-but-assigned"}
            assert await ids(handoff_skills, "handoff_id") == {"recent", "old-but-assigned"}
            assert await ids(offers, "handoff_id") == {"recent", "old-but-assigned"}
            assert await ids(sessions) == {"recent", "live"}
            assert await ids(quality_rollups, "bucket_start") == {
                r["bucket_start"] for r in kept_rows
            }
    finally:
        await store.close()


async def test_calls_that_would_read_pruned_history_say_so(client: Stubs) -> None:
    long_ago = datetime.now().astimezone() - timedelta(days=100)
    exported = client.pool.ExportOutcomes(
        pool_service_pb2.ExportOutcomesRequest(start_time=stamp(long_ago))
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        [m async for m in exported]
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error_details(refused.value)
    assert details["reason"] == "HISTORY_PRUNED"
    assert details["metadata"]["setting"] == "HUMANLINE_RETENTION_DAYS"

    before_rollups = long_ago - timedelta(days=400)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.pool.GetQualityReport(
            pool_service_pb2.GetQualityReportRequest(
                group_by=quality_pb2.QUALITY_DIMENSION_INTERACTION_TYPE,
                start_time=stamp(before_rollups),
                end_time=stamp(before_rollups + timedelta(days=30)),
            )
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused.value)["reason"] == "HISTORY_PRUNED"
    # Within what is kept: served.
    report = await client.pool.GetQualityReport(
        pool_service_pb2.GetQualityReportRequest(
            group_by=quality_pb2.QUALITY_DIMENSION_INTERACTION_TYPE,
            start_time=stamp(long_ago),
        )
    )
    assert report.overall.handoffs == 0


async def _vacuums(admin: asyncpg.Connection) -> dict[str, int]:
    rows = await admin.fetch("SELECT relname, vacuum_count FROM pg_stat_user_tables")
    return {row["relname"]: row["vacuum_count"] for row in rows}


async def test_the_store_vacuums_its_busiest_tables_where_the_database_does_not(
    db_url: str, backend: str
) -> None:
    """With autovacuum off, `vacuum` reclaims the row versions every update of an agent left
    (one replica at a time: none while another holds the lock); with it on, the database
    does, and `vacuum` does nothing. SQLite has nothing to reclaim."""
    store = SqlStore(db_url, SystemClock(), pool_size=2)
    await store.open()
    try:
        if backend == "sqlite":
            assert await store.vacuum() == {}
            return
        admin = await asyncpg.connect(asyncpg_dsn(make_url(db_url)))
        try:
            autovacuum = await admin.fetchval("SELECT current_setting('autovacuum')")
            if autovacuum == "on":
                assert await store.vacuum() == {}
                return
            before = await _vacuums(admin)
            assert await admin.fetchval("SELECT pg_try_advisory_lock($1)", VACUUM_LOCK)
            assert await store.vacuum() == {}  # another replica's turn
            assert await admin.fetchval("SELECT pg_advisory_unlock($1)", VACUUM_LOCK)
            assert await _vacuums(admin) == before
            took = await store.vacuum()
            assert list(took) == list(HOT_TABLES)
            assert all(seconds >= 0 for seconds in took.values())
            after = await _vacuums(admin)
            assert {t for t in after if after[t] > before.get(t, 0)} == set(HOT_TABLES)
            # The lock went with the turn: another replica's turn can begin.
            assert await admin.fetchval("SELECT pg_try_advisory_lock($1)", VACUUM_LOCK)
        finally:
            await admin.close()
    finally:
        await store.close()


async def test_the_vacuumer_takes_its_turns_and_outlives_a_failed_one() -> None:
    """It says once that autovacuum is off, logs a slow turn at info (the others at debug),
    and goes on after a turn that failed."""
    turns = 0

    class Store:
        async def vacuum(self) -> dict[str, float]:
            nonlocal turns
            turns += 1
            if turns == 2:
                raise StoreError("the database went away")
            return {"agents": 0.01, "handoffs": 2.5 if turns == 3 else 0.02}

    vacuumer = Vacuumer(Store(), interval=0.01)  # type: ignore[arg-type]
    with capture_logs() as logs:
        vacuumer.start()
        try:
            async with asyncio.timeout(10):
                while turns < 4:
                    await asyncio.sleep(0.01)
        finally:
            await vacuumer.stop()
    said = [(e["event"], e["log_level"], e.get("seconds")) for e in logs]
    assert said[:4] == [
        ("autovacuum_off", "warning", None),
        ("vacuumed", "debug", 0.03),
        ("vacuum_failed", "warning", None),
        ("vacuumed", "info", 2.51),
    ]
