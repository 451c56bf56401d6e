"""The pruner: history past its retention goes, so that the store holds a bounded window.

Every `interval` it deletes, in short transactions, the finished handoffs (and their offers)
and ended sessions older than `HUMANLINE_RETENTION_DAYS`, and the quality buckets older than
what is kept at their resolution (`domain.quality.Kept`: seconds for an hour, minutes for
three days, hours for 62, days for `HUMANLINE_ROLLUP_RETENTION_DAYS`), so reports over old
windows still work after the handoffs behind them are gone. Each transaction takes a batch of
every kind that may have more, so an idle turn is one transaction; a turn takes at most
`PRUNE_ROUNDS` of them: a backlog (the first start after months) is taken in turns, and
never holds the embedded store's writer for long. On PostgreSQL one replica
prunes at a time (`Retention.lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from humanline.domain.quality import RESOLUTIONS, Dimension, Kept, Resolution, bucket_start
from humanline.store.port import Retention, Store, StoreError

log = structlog.get_logger("humanline.retention")

PRUNE_BATCH = 500  # handoffs or sessions per transaction
PRUNE_ROUNDS = 40  # batches of each kind per turn


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long history is kept: finished handoffs and ended sessions, and quality buckets
    (by day; finer ones for less, see `domain.quality.Kept`)."""

    history: timedelta = timedelta(days=90)
    rollups: timedelta = timedelta(days=400)

    def history_from(self, now: datetime) -> datetime:
        """The oldest end of a finished handoff still kept at `now`."""
        return now - self.history

    def rollups_from(self, now: datetime) -> datetime:
        """The oldest day of quality buckets still kept at `now` (a day's start)."""
        return bucket_start(now - self.rollups, Resolution.DAY)


async def _buckets(
    resolution: Resolution, by: Dimension, before: datetime, retention: Retention
) -> int:
    return await retention.prune_buckets(resolution, by, before)


class Pruner:
    """Deletes history past its retention, in turns."""

    def __init__(self, store: Store, policy: RetentionPolicy, *, interval: float = 60.0) -> None:
        self._store = store
        self._policy = policy
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="humanline-pruner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.prune()
            except StoreError as exc:  # the next turn tries again
                log.warning("prune_failed", error=str(exc))
            await asyncio.sleep(self._interval)

    async def prune(self) -> dict[str, int]:
        """One turn; how many rows of each kind went (also logged, when any did)."""
        async with self._store.read() as uow:
            now = uow.now
        before = self._policy.history_from(now)
        kept = Kept.at(now)
        cutoffs = {
            Resolution.SECOND: kept.seconds_from,
            Resolution.MINUTE: kept.minutes_from,
            Resolution.HOUR: kept.hours_from,
            Resolution.DAY: self._policy.rollups_from(now),
        }
        jobs = [
            _Job("handoffs", lambda r: r.prune_handoffs(before, PRUNE_BATCH), whole=True),
            _Job("sessions", lambda r: r.prune_sessions(before, PRUNE_BATCH), whole=True),
            *(
                _Job(
                    "quality_buckets",
                    functools.partial(_buckets, resolution, by, cutoffs[resolution]),
                    whole=False,
                )
                for by, resolutions in RESOLUTIONS.items()
                for resolution in resolutions
            ),
        ]
        pruned = dict.fromkeys(("handoffs", "sessions", "quality_buckets"), 0)
        # A batch of every kind with more to go per transaction: a turn with nothing to
        # prune is one short transaction, a backlog is taken PRUNE_ROUNDS batches at a time.
        for _ in range(PRUNE_ROUNDS):
            if not jobs:
                break
            async with self._store.write() as uow:
                if not await uow.retention.lock():
                    break  # another replica has the turn
                counts = [await job.batch(uow.retention) for job in jobs]
            for job, count in zip(jobs, counts, strict=True):
                pruned[job.kind] += count
            jobs = [job for job, count in zip(jobs, counts, strict=True) if job.more(count)]
        if any(pruned.values()):
            log.info("history_pruned", **pruned)
        return pruned


SLOW_VACUUM = 1.0  # seconds: a vacuum turn that took longer is logged at info


class Vacuumer:
    """Has the store reclaim the row versions its hot path leaves behind, every `interval`
    seconds, where the database does not (`Store.vacuum`: PostgreSQL with autovacuum off).
    Without it such a database keeps every version of an agent's row that each offer and
    completion wrote, and the reads that find the live one slow down by the hour."""

    def __init__(self, store: Store, *, interval: float = 30.0) -> None:
        self._store = store
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="humanline-vacuumer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                took = await self._store.vacuum()
            except StoreError as exc:  # the next turn tries again
                log.warning("vacuum_failed", error=str(exc))
                continue
            if not took:
                continue
            if not self._warned:
                self._warned = True
                log.warning(
                    "autovacuum_off",
                    detail="the database's autovacuum is off: humanline vacuums its own"
                    f" busiest tables every {self._interval:g} s; turn autovacuum on",
                    tables=list(took),
                )
            seconds = sum(took.values())
            # A turn's cost follows what changed since the last; a long one shows in logs.
            (log.info if seconds >= SLOW_VACUUM else log.debug)(
                "vacuumed", seconds=round(seconds, 3), **{t: round(s, 3) for t, s in took.items()}
            )


@dataclass(frozen=True, slots=True)
class _Job:
    """One kind of row to prune, a batch at a time."""

    kind: str
    batch: Callable[[Retention], Awaitable[int]]
    whole: bool  # a batch of PRUNE_BATCH rows at most: one short of it was the last

    def more(self, count: int) -> bool:
        """Whether another batch may find more after one that found `count`."""
        return count > 0 and not (self.whole and count < PRUNE_BATCH)
