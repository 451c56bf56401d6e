"""The quality monitor: early warnings per interaction type, as outcomes come in.

After completions and feedback on this replica, and at least every `check_interval` (which
catches other replicas' too), it rolls the facts recorded since into the store's bucketed
tallies (`QualityRollups.fold`), adds up the buckets of the last `window` and of the
window before it, and flags each interaction type significantly below the rest of the pool
or below itself before (`domain.quality.alerts`, which says how). A check reads its numbers
with one statement, answered with a row per window and type however many buckets, facts
and handoffs the store adds up (`QualityRollups.type_tallies`). What changed is said once: a
`quality_alert` log event and a message to every WatchQualityAlerts stream when a flag goes
up, `quality_alert_cleared` when it comes down. Each replica runs its own monitor over the
same store, so they agree.

It also keeps the pool's quality track per type (`QualityTracks.refresh_pool`), the prior
that quality-aware ranking shrinks every agent's score toward: at start and then at most
every `check_interval`, as the pool's rates move slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from humanline.domain.quality import (
    Alert,
    Dimension,
    Kept,
    Metric,
    Reference,
    Tallies,
    Window,
    alerts,
    fold,
    rolled_up_window,
)
from humanline.service.events import ServiceClosing
from humanline.service.metrics import Metrics
from humanline.store.port import Store, StoreConflict, UnitOfWork

log = structlog.get_logger("humanline")

ROLLUP_BATCH = 500  # facts folded per transaction
ROLLUP_ROUNDS = 40  # transactions per turn at most, so that a backlog is taken in turns


def rolled_up(uow: UnitOfWork, since: datetime, until: datetime, by: Dimension) -> Window:
    """The window buckets of `by` give for [since, until): each end moved up to a bucket
    boundary (`domain.quality.rolled_up_window`), with the spans of buckets that tile it
    (one that ends now, up to a coarse bucket still filling)."""
    return rolled_up_window(since, until, Kept.at(uow.now), by, uow.now)


async def early_warning_tallies(uow: UnitOfWork, window: timedelta) -> tuple[Tallies, Tallies]:
    """What a check judges: the tallies by type of the last `window` and of the window
    before it (the baseline), read at once and without the times to agent, which the alerts
    do not use (`QualityRollups.type_tallies`)."""
    now, by = uow.now, Dimension.INTERACTION_TYPE
    current = rolled_up(uow, now - window, now, by)
    before = rolled_up(uow, now - 2 * window, now - window, by)
    mine, baseline = await uow.rollups.type_tallies([current, before])
    return mine, baseline


AlertKey = tuple[str, Metric, Reference]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A flag that went up (or, with `cleared`, came down) at `at`."""

    alert: Alert
    cleared: bool
    at: datetime


class QualityMonitor:
    """Early warnings per interaction type over a sliding window."""

    def __init__(
        self,
        store: Store,
        *,
        window: timedelta = timedelta(days=1),
        check_interval: float = 30.0,
        settle: float = 0.2,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._window = window
        self._check_interval = check_interval
        self._settle = settle  # outcomes arriving together are judged together
        self._active: dict[AlertKey, AlertEvent] = {}
        self._watchers: set[asyncio.Queue[AlertEvent | None]] = set()
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._refreshed = float("-inf")  # loop time of the last pool refresh
        self.checks = 0  # evaluations made, for tests

    def outcome(self) -> None:
        """A handoff was completed or rated: look again soon."""
        self._due.set()

    def start(self) -> None:
        """Checks at once (flags up before a restart come back up), then as outcomes come
        and at least every `check_interval`."""
        self._due.set()
        self._task = asyncio.create_task(self._run(), name="humanline-quality")

    async def stop(self) -> None:
        """Stops checking; every watch ends."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in self._watchers:
            queue.put_nowait(None)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval):
                    await self._due.wait()
            await asyncio.sleep(self._settle)
            self._due.clear()
            try:
                await self.roll_up()
                await self.check()
                now = asyncio.get_running_loop().time()
                if now - self._refreshed >= self._check_interval:
                    await self.refresh_pool()
                    self._refreshed = now
            except Exception:  # a store hiccup: the next outcome or interval tries again
                log.exception("quality_check_failed")

    async def refresh_pool(self) -> None:
        """Sets the pool's quality tracks from the agents' (replicas doing it at once write
        the same sums; a conflict only waits for the next time)."""
        try:
            async with self._store.write() as uow:
                await uow.quality.refresh_pool()
        except StoreConflict:
            log.info("quality_pool_refresh_conflict")

    async def roll_up(self) -> int:
        """Folds the facts recorded so far into the buckets, a batch at a time: read, added
        up here, and written in a short transaction (the embedded store's one writer is not
        held while a batch is added up). Stops when another replica is at it; how many."""
        done = 0
        for _ in range(ROLLUP_ROUNDS):
            async with self._store.read() as uow:
                facts = await uow.rollups.pending(ROLLUP_BATCH)
            if not facts:
                break
            sums = fold(facts)
            try:
                async with self._store.write() as uow:
                    if not await uow.rollups.fold([f.id for f in facts], sums):
                        break
            except StoreConflict:
                log.info("quality_rollup_conflict")  # folded elsewhere meanwhile
                break
            done += len(facts)
            if len(facts) < ROLLUP_BATCH:
                break
        return done

    async def check(self) -> list[AlertEvent]:
        """Evaluates the window now; returns (and says) what went up or came down."""
        started = time.perf_counter()
        # One statement (`early_warning_tallies`): consistent without a snapshot.
        async with self._store.read(brief=True) as uow:
            now = uow.now
            current, before = await early_warning_tallies(uow, self._window)
        found = {
            (a.key, a.metric, a.reference): a
            for a in alerts(current.report(), current.overall(), before.report())
        }
        self.checks += 1
        if self._metrics is not None:
            self._metrics.quality_check.observe(time.perf_counter() - started)
        events = [AlertEvent(a, False, now) for k, a in found.items() if k not in self._active]
        events += [
            AlertEvent(e.alert, True, now) for k, e in self._active.items() if k not in found
        ]
        for event in events:
            key = (event.alert.key, event.alert.metric, event.alert.reference)
            if event.cleared:
                del self._active[key]
            else:
                self._active[key] = event
            self._say(event)
        # Flags still up keep their first moment; their numbers follow the window.
        for key, alert in found.items():
            self._active[key] = AlertEvent(alert, False, self._active[key].at)
        return events

    def _say(self, event: AlertEvent) -> None:
        a = event.alert
        fields = {
            "interaction_type": a.key,
            "metric": a.metric.value,
            "reference": a.reference.value,
            "observed": round(a.observed.share, 4),
            "observed_samples": a.observed.trials,
            "expected": round(a.expected.share, 4),
            "expected_samples": a.expected.trials,
            "gap": round(a.gap, 4),
            "p_value": a.p_value,
            "test": a.test,
        }
        if event.cleared:
            log.info("quality_alert_cleared", **fields)
        else:
            log.warning("quality_alert", **fields)
        for queue in self._watchers:
            queue.put_nowait(event)

    @property
    def active(self) -> list[AlertEvent]:
        """The flags up now, with when each went up."""
        return list(self._active.values())

    async def watch(self) -> AsyncIterator[AlertEvent]:
        """The flags up now, then each that goes up or comes down, until the service stops
        (`ServiceClosing`)."""
        queue: asyncio.Queue[AlertEvent | None] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            if self._closing:
                raise ServiceClosing()
            for event in self.active:
                yield event
            while (news := await queue.get()) is not None:
                yield news
            raise ServiceClosing()
        finally:
            self._watchers.discard(queue)
