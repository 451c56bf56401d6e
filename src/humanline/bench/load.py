"""Load shapes shared by the phases: a measurement window, a closed loop, percentiles of
latencies of which some never ended."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# A failed call is retried after this pause, so that a server that refuses everything is not
# hammered in a tight loop.
FAILURE_PAUSE = 0.05


@dataclass(frozen=True)
class Window:
    """When a closed loop runs, in this process's monotonic time: from `begin`, `warmup`
    seconds not counted, then `duration` seconds counted; no new work starts after that."""

    begin: float
    warmup: float
    duration: float

    @property
    def counted_from(self) -> float:
        return self.begin + self.warmup

    @property
    def end(self) -> float:
        return self.counted_from + self.duration

    def counts(self, at: float) -> bool:
        """Whether work finished at `at` is counted."""
        return self.counted_from <= at < self.end


def monotonic_at(wall: float) -> float:
    """This process's monotonic time at wall-clock time `wall` (how processes agree on a
    moment)."""
    return time.monotonic() + (wall - time.time())


async def closed_loop(
    concurrency: int, window: Window, once: Callable[[], Awaitable[bool]]
) -> tuple[int, int]:
    """Runs `concurrency` loops, each awaiting `once()` again as soon as the last one ended,
    from the window's begin until its end; work in flight at the end finishes. `once` says
    whether its work succeeded. Returns (successes that ended in the counted part, all
    successes)."""
    counted = total = 0

    async def loop() -> None:
        nonlocal counted, total
        while time.monotonic() < window.end:
            if await once():
                total += 1
                counted += window.counts(time.monotonic())
            else:
                await asyncio.sleep(FAILURE_PAUSE)

    await asyncio.sleep(max(0.0, window.begin - time.monotonic()))
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return counted, total


def percentile_with_missing(values: list[float], missing: int, q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) of `values` and `missing` more that
    never ended (longer than any value). None when there are none at all, or when the
    percentile falls among the missing ones."""
    n = len(values) + missing
    if n == 0:
        return None
    ordered = sorted(values)
    rank = (n - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if high >= len(ordered):
        return None
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
