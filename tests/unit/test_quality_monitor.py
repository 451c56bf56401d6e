"""The quality monitor over a fake store: a flag goes up once, stays up quietly, comes down
once, and watchers see the flags up when they start and every change after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from humanline.domain.model import HandoffState, Outcome
from humanline.domain.quality import (
    Dimension,
    Fact,
    HandoffSample,
    Metric,
    OfferSample,
    Reference,
    Tallies,
    Window,
    tally,
)
from humanline.service.quality import QualityMonitor
from tests.unit.builders import T0

Samples = tuple[list[HandoffSample], list[OfferSample]]


def _completed(kind: str, resolved: int, of: int) -> list[HandoffSample]:
    return [
        HandoffSample(
            interaction_type=kind,
            risk_class=None,
            skills=(),
            agent_id="a",
            state=HandoffState.COMPLETED,
            created_at=T0,
            deadline=T0,
            assigned_at=T0,
            outcome=Outcome.RESOLVED if i < resolved else Outcome.UNRESOLVED,
            handle_seconds=1.0,
            csat=None,
        )
        for i in range(of)
    ]


class FakeRollups:
    def __init__(self) -> None:
        self.current: Samples = ([], [])
        self.asked: list[list[tuple[datetime, datetime]]] = []  # the windows of each read
        self.rolled = 0

    async def pending(self, limit: int) -> list[Fact]:
        self.rolled += 1
        return []

    async def type_tallies(self, windows: Sequence[Window]) -> list[Tallies]:
        self.asked.append([(w.start, w.end) for w in windows])
        # Nothing before the current window.
        by = Dimension.INTERACTION_TYPE
        return [tally(by, *self.current) if w.end == T0 else Tallies() for w in windows]


class FakeUnit:
    def __init__(self, rollups: FakeRollups) -> None:
        self.now = T0
        self.rollups = rollups


class FakeStore:
    def __init__(self) -> None:
        self.rollups = FakeRollups()

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False, brief: bool = False) -> AsyncIterator[FakeUnit]:
        yield FakeUnit(self.rollups)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[FakeUnit]:
        yield FakeUnit(self.rollups)


def _monitor(store: FakeStore) -> QualityMonitor:
    return QualityMonitor(store, window=timedelta(hours=1))  # type: ignore[arg-type]


async def test_a_flag_goes_up_once_and_comes_down_once() -> None:
    store = FakeStore()
    monitor = _monitor(store)
    store.rollups.current = (_completed("easy", 36, 40) + _completed("hard", 10, 40), [])
    (up,) = await monitor.check()
    assert (up.alert.key, up.alert.metric, up.alert.reference) == (
        "hard",
        Metric.RESOLUTION_RATE,
        Reference.POOL,
    )
    assert not up.cleared
    assert up.at == T0
    # The window it judged, the last hour, and the hour before as the baseline: read at once.
    assert store.rollups.asked == [
        [(T0 - timedelta(hours=1), T0), (T0 - timedelta(hours=2), T0 - timedelta(hours=1))]
    ]
    assert await monitor.check() == []  # still up: nothing new to say
    assert [e.alert.key for e in monitor.active] == ["hard"]
    store.rollups.current = (_completed("easy", 36, 40) + _completed("hard", 35, 40), [])
    (down,) = await monitor.check()
    assert (down.alert.key, down.cleared) == ("hard", True)
    assert monitor.active == []


async def test_a_watch_sees_the_flags_up_then_each_change() -> None:
    store = FakeStore()
    monitor = _monitor(store)
    store.rollups.current = (_completed("easy", 36, 40) + _completed("hard", 10, 40), [])
    await monitor.check()
    seen: list[tuple[str, bool]] = []

    async def watch() -> None:
        async for event in monitor.watch():
            seen.append((event.alert.key, event.cleared))

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    store.rollups.current = (_completed("easy", 36, 40) + _completed("hard", 36, 40), [])
    await monitor.check()
    await asyncio.sleep(0)
    await monitor.stop()
    await asyncio.gather(watcher, return_exceptions=True)
    assert seen == [("hard", False), ("hard", True)]


async def test_outcomes_wake_the_monitor_soon() -> None:
    store = FakeStore()
    monitor = QualityMonitor(store, window=timedelta(hours=1), check_interval=60, settle=0.01)  # type: ignore[arg-type]
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        assert monitor.checks == 1  # one look at once
        assert store.rollups.rolled == 1  # after folding in the facts so far
        checks = monitor.checks
        monitor.outcome()
        async with asyncio.timeout(2):
            while monitor.checks == checks:
                await asyncio.sleep(0.01)
    finally:
        await monitor.stop()
