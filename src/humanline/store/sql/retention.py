"""Old history pruned in small batches (the store port's `Retention`).

Finished handoffs (with their offers and skills) and ended sessions go once older than the
retention; quality buckets go once older than what is kept at their resolution. Each batch
is a short transaction of its own, deleting rows nothing on the hot path touches (final,
long ended), found through partial indexes on their end times, so that a pruner never holds
what matching, offers or streams need. On PostgreSQL one replica prunes at a time (a
transaction-scoped advisory lock; the others skip their turn).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from humanline.domain.model import HandoffState, SessionState
from humanline.domain.quality import Dimension, Resolution
from humanline.store.sql.repositories import SqlConnection, _const, _p, _rowcount, _statement
from humanline.store.sql.tables import handoff_skills, handoffs, offers, quality_rollups, sessions

PRUNE_LOCK = 7_283_002  # pg_advisory_xact_lock key: one replica prunes at a time
_FINAL = (HandoffState.COMPLETED, HandoffState.CANCELLED, HandoffState.EXPIRED)
# How much of one dimension's buckets one batch deletes, per resolution: about a few thousand
# rows at most.
_SLICE = {
    Resolution.SECOND: timedelta(minutes=10),
    Resolution.MINUTE: timedelta(hours=2),
    Resolution.HOUR: timedelta(days=2),
    Resolution.DAY: timedelta(days=30),
}


@_statement
def _old_handoffs() -> sa.Select[Any]:
    """The oldest finished handoffs ended before the cutoff (ix_handoffs_finished)."""
    h = handoffs.c
    return (
        sa.select(h.id)
        .where(h.state.in_([_const(s) for s in _FINAL]), h.ended_at < _p("before"))
        .order_by(h.ended_at)
        .limit(_p("limit"))
    )


@_statement
def _old_sessions() -> sa.Select[Any]:
    """The oldest ended sessions ended before the cutoff (ix_sessions_ended)."""
    s = sessions.c
    return (
        sa.select(s.id)
        .where(s.state == _const(SessionState.ENDED), s.ended_at < _p("before"))
        .order_by(s.ended_at)
        .limit(_p("limit"))
    )


@_statement
def _oldest_bucket() -> sa.Select[Any]:
    r = quality_rollups.c
    return sa.select(sa.func.min(r.bucket_start)).where(
        r.resolution == _p("resolution"), r.dimension == _p("dimension")
    )


@_statement
def _drop_buckets() -> sa.Delete:
    r = quality_rollups.c
    return sa.delete(quality_rollups).where(
        r.resolution == _p("resolution"),
        r.dimension == _p("dimension"),
        r.bucket_start < _p("before"),
    )


class SqlRetention:
    """Deletes history past its retention, a batch at a time."""

    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def lock(self) -> bool:
        if self._conn.dialect.name != "postgresql":
            return True  # one process per SQLite file
        locked = await self._conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(PRUNE_LOCK)))
        return bool(locked.scalar())

    async def prune_handoffs(self, before: datetime, limit: int) -> int:
        params = {"p_before": before, "p_limit": limit}
        ids = list((await self._conn.execute(_old_handoffs(), params)).scalars())
        if ids:
            await self._conn.execute(sa.delete(offers).where(offers.c.handoff_id.in_(ids)))
            await self._conn.execute(
                sa.delete(handoff_skills).where(handoff_skills.c.handoff_id.in_(ids))
            )
            await self._conn.execute(sa.delete(handoffs).where(handoffs.c.id.in_(ids)))
        return len(ids)

    async def prune_sessions(self, before: datetime, limit: int) -> int:
        params = {"p_before": before, "p_limit": limit}
        ids = list((await self._conn.execute(_old_sessions(), params)).scalars())
        if ids:
            await self._conn.execute(sa.delete(sessions).where(sessions.c.id.in_(ids)))
        return len(ids)

    async def prune_buckets(
        self, resolution: Resolution, dimension: Dimension, before: datetime
    ) -> int:
        key = {"p_resolution": resolution.value, "p_dimension": dimension.value}
        oldest = (await self._conn.execute(_oldest_bucket(), key)).scalar()
        if oldest is None or oldest >= before:
            return 0
        upto = min(before, oldest + _SLICE[resolution])
        return _rowcount(await self._conn.execute(_drop_buckets(), {**key, "p_before": upto}))
