"""WatchPoolStatus: the pool's status as it changes, for dashboards, from one shared reader.

Each replica has one `PoolFeed`. It reads the pool's status (`pool.read_status`: the
aggregate snapshot and the handoffs at risk for every horizon a watcher asked for, in one
read transaction) and publishes the reading to every stream of this replica; streams never
read the store themselves. So a change costs one read per replica, however many dashboards
watch, and nothing is read while nobody watches.

What sets off a read:
- a change: every transaction of this replica that changed something, and every hint from
  another replica (`EventHub.on_change`; hints carry the `p` kind for changes that name no
  agent or handoff, such as a log-in);
- a subscription (a new stream needs a reading with its horizon);
- the tick, every `tick` seconds (5), while anybody watches: it catches what time alone
  changes (a handoff falling due within the horizon, or past its deadline; the oldest wait
  growing) and any hint that was lost.
Reads are at least `spacing` (0.1 s) apart: a burst of changes is read once, after it.

What a stream sends: the first reading made after it subscribed, then a reading only when it
`differs` from the last one sent (any count, the handoffs at risk, or which handoff waits
longest), never more often than its `min_interval` (changes within one are sent together as
the newest reading at its end). A reading that differs from the last one sent only by time
(its snapshot time, and so the oldest wait while the same handoff waits longest) is sent
only when a tick has come since the last message, and only while something waits: a
dashboard's oldest wait is refreshed every `tick` while anything waits, and a quiet pool
sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from humanline.service.events import EventHub, ServiceClosing
from humanline.service.pool import PoolStatus, read_status
from humanline.store.port import AtRisk, PoolSnapshot, Store

log = structlog.get_logger("humanline")

DEFAULT_MIN_INTERVAL = timedelta(seconds=1)
MIN_MIN_INTERVAL = timedelta(seconds=0.1)
MAX_MIN_INTERVAL = timedelta(minutes=1)
READ_RETRY = 1.0  # seconds after a failed read before the next (not ten a second)


@dataclass(frozen=True, slots=True)
class Reading:
    """One read of the pool: the `seq`-th read started, after `ticks` ticks."""

    seq: int
    ticks: int
    taken_at: datetime
    snapshot: PoolSnapshot
    at_risk: dict[timedelta, tuple[AtRisk, ...]]

    def status(self, horizon: timedelta) -> PoolStatus:
        """The status as a stream with `horizon` sees it."""
        return PoolStatus(self.snapshot, self.taken_at, horizon, self.at_risk[horizon])


class PoolFeed:
    """The one reader of the pool's status behind every WatchPoolStatus stream of a replica."""

    def __init__(
        self, store: Store, hub: EventHub, *, tick: float = 5.0, spacing: float = 0.1
    ) -> None:
        self._store = store
        self._tick = tick
        self._spacing = spacing
        self._horizons: Counter[timedelta] = Counter()  # what the streams watching asked for
        self._dirty = asyncio.Event()  # something changed since the last read started
        self._wanted = asyncio.Event()  # somebody watches
        self._published = asyncio.Event()  # set (and replaced) on every reading
        self._closed = asyncio.Event()
        self._latest: Reading | None = None
        self._started = 0  # reads started
        self._ticks = 0
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # reads made, for tests
        hub.on_change(self._dirty.set)
        hub.on_shutdown(self.close)

    def start(self) -> None:
        """Starts the reader; it reads only while somebody watches."""
        self._task = asyncio.create_task(self._run(), name="humanline-pool-feed")

    def close(self) -> None:
        """Ends every stream (`ServiceClosing`); new ones end at once."""
        self._closed.set()
        self._published.set()

    async def stop(self) -> None:
        """Ends every stream and stops the reader (before the store closes)."""
        self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._tick
        while True:
            await self._wanted.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                    await self._dirty.wait()
            if loop.time() >= next_tick:
                self._ticks += 1
                next_tick = loop.time() + self._tick
            if not self._horizons:
                continue
            self._dirty.clear()  # a change from now on needs another read
            try:
                await self._read()
            except Exception:  # a store hiccup: the next change or tick reads again
                log.exception("pool_status_read_failed")
                await asyncio.sleep(READ_RETRY)
            await asyncio.sleep(self._spacing)

    async def _read(self) -> None:
        self._started += 1
        seq, horizons = self._started, list(self._horizons)
        async with self._store.read(snapshot=True) as uow:
            snapshot, at_risk = await read_status(uow, horizons)
            taken_at = uow.now
        self.reads += 1
        self._latest = Reading(seq, self._ticks, taken_at, snapshot, at_risk)
        published, self._published = self._published, asyncio.Event()
        published.set()

    # --- the streams ---------------------------------------------------------------------

    async def watch(self, horizon: timedelta, min_interval: timedelta) -> AsyncIterator[PoolStatus]:
        """The status now, then each that differs from the last one sent (see the module's
        docstring), at most one per `min_interval`, until the service stops
        (`ServiceClosing`)."""
        self._horizons[horizon] += 1
        self._wanted.set()
        try:
            seen = self._started  # readings started before now may lack this horizon
            self._dirty.set()
            loop = asyncio.get_running_loop()
            last: PoolStatus | None = None
            last_ticks = 0
            earliest = loop.time()
            while True:
                reading = await self._after(seen)
                if (pause := earliest - loop.time()) > 0:
                    await self._pause(pause)
                    reading = self._after_nowait(seen) or reading
                seen = reading.seq
                status = reading.status(horizon)
                if (
                    last is None
                    or status.differs(last)
                    or (reading.ticks != last_ticks and status.oldest_wait != last.oldest_wait)
                ):
                    yield status
                    last, last_ticks = status, reading.ticks
                    earliest = loop.time() + min_interval.total_seconds()
        finally:
            self._horizons[horizon] -= 1
            if self._horizons[horizon] <= 0:
                del self._horizons[horizon]
            if not self._horizons:
                self._wanted.clear()

    def _after_nowait(self, seen: int) -> Reading | None:
        latest = self._latest
        return latest if latest is not None and latest.seq > seen else None

    async def _after(self, seen: int) -> Reading:
        """The newest reading started after the `seen`-th, once there is one."""
        while True:
            if self._closed.is_set():
                raise ServiceClosing()
            if (reading := self._after_nowait(seen)) is not None:
                return reading
            await self._published.wait()

    async def _pause(self, seconds: float) -> None:
        """Waits `seconds`, or until the service stops (`ServiceClosing`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()
        if self._closed.is_set():
            raise ServiceClosing()
