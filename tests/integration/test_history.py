"""The bench's bulk-loaded history (`bench.history`), on both stores: the rows it writes are a
store the service could have left, and the quality buckets it writes for them are the ones
the service would have kept: a report over them equals the report computed from the loaded
rows themselves, as the service's own rollups do (test_quality_rollups)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from humanline.bench.history import History, load
from humanline.domain.clock import SystemClock
from humanline.domain.quality import Dimension, Resolution, bucket_start
from humanline.store.sql.store import SqlStore
from humanline.store.sql.tables import handoffs, offers, quality_rollups, sessions
from tests.integration.test_quality_rollups import _exact, _same, _samples
from tests.support.quality import window_tallies

SMALL = History(handoffs=3_000, days=4.0, agents=12, prefix="test-history")


async def _rows(url: str, table: sa.Table) -> list[dict[str, Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(sa.select(table))]
    finally:
        await engine.dispose()


async def test_the_loaded_buckets_match_the_report_from_the_loaded_rows(db_url: str) -> None:
    now = datetime.now(UTC)
    loaded = await load(db_url, SMALL, now)
    store = SqlStore(db_url, SystemClock())
    await store.open()
    try:
        handoff_rows = await _rows(db_url, handoffs)
        offer_rows = await _rows(db_url, offers)
        assert len(handoff_rows) == SMALL.handoffs == loaded.rows["handoffs"]
        assert {h["state"] for h in handoff_rows} == {"COMPLETED", "CANCELLED", "EXPIRED"}
        assert len(offer_rows) == loaded.rows["offers"]
        assert len(await _rows(db_url, sessions)) == loaded.rows["sessions"] == 4 * SMALL.agents
        assert len(await _rows(db_url, quality_rollups)) == loaded.rows["quality_rollups"]
        newest = max(h["created_at"] for h in handoff_rows)
        assert newest == now - SMALL.newest

        hs, os = _samples(handoff_rows, offer_rows)
        day = bucket_start(now, Resolution.DAY)
        hour = bucket_start(now, Resolution.HOUR)
        windows = [
            (day - timedelta(days=4), day),  # whole days
            (day - timedelta(days=2), hour),  # days, then hours (minutes kept three days)
            (hour - timedelta(hours=5), hour - timedelta(hours=1)),
            (hour - timedelta(minutes=30), bucket_start(now, Resolution.SECOND)),  # and seconds
        ]
        async with store.read(snapshot=True) as uow:
            for since, until in windows:
                for by in Dimension:
                    start, end, tallies = await window_tallies(uow, since, until, by)

                    def within(at: datetime) -> bool:
                        return start <= at < end  # noqa: B023

                    groups, whole = _exact(
                        [h for h in hs if within(h.created_at)],
                        [o for at, o in os if within(at)],
                        by,
                    )
                    report = tallies.report()
                    assert [g.key for g in report] == [g.key for g in groups]
                    for rolled, exact in zip(report, groups, strict=True):
                        _same(rolled, exact)
                    _same(tallies.overall(), whole)
                    if by is Dimension.INTERACTION_TYPE:  # kept to the second: as asked
                        assert (start, end) == (since, until)
                        assert whole.handoffs > 0
    finally:
        await store.close()


async def test_two_loads_of_one_history_hold_the_same_rows(db_url: str, tmp_path: Any) -> None:
    """Every value follows from the handoff's number (and the moment given)."""
    now = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    small = History(handoffs=500, days=1.0, agents=5, prefix="again")
    other = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    for url in (db_url, other):
        await load(url, small, now)
    found = [
        sorted(
            (h["id"], h["state"], h["agent_id"], h["created_at"], h["outcome"])
            for h in await _rows(url, handoffs)
        )
        for url in (db_url, other)
    ]
    assert found[0] == found[1]
    assert len(found[0]) == 500
