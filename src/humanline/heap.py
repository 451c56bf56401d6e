"""Cycle collection for a server that holds thousands of long-lived agent streams.

CPython's cycle collector examines every tracked object of the generations it collects. A
stream's objects (its call, tasks, queues, channel) live as long as the agent is logged in,
so they end up in the oldest generation, and every full collection walks all of them: with
10,000 agents connected, a full collection stopped the event loop for over a second (`make
bench`, streams phase), and the collections of the younger generations grew to hundreds of
milliseconds during a wave of log-ins.

`HeapFreezer` keeps the long-lived objects out of those walks. Every `interval` seconds it
moves every object the collector tracks into the permanent generation (`gc.freeze()`, a
constant-time splice of lists), which collections skip; only what was allocated since gets
examined. Every second: with 10,000 agents, ten seconds' worth of new objects still made
collections of up to 160 ms while handoffs were being offered (time to offer p99 49 ms);
one second's worth, at most 16 ms (p99 22 ms).

Reference counting frees frozen objects the moment they are no longer used; only reference
cycles need the collector, and a frozen cycle is out of its reach. So each freeze is preceded
by a collection of everything not frozen yet (`gc.collect()`: what was allocated since the
last freeze, the only objects it walks): the cycles made and dropped in that second are freed
instead of frozen. grpcio's server makes such a cycle for every call (through its
interceptors), some ten objects; frozen, they made the resident memory of a server taking 40
handoffs a second grow by 2 MiB a minute. What was alive at the freeze and becomes cyclic
garbage later waits: every `thaw_interval` seconds the permanent generation is released
(`gc.unfreeze()`) and collected once, so such garbage lives at most that long. One full pass
per `thaw_interval` instead of one for every few million allocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

import structlog

log = structlog.get_logger("humanline.heap")


class HeapFreezer:
    """Freezes the heap periodically, and thaws and collects it now and then."""

    def __init__(self, *, interval: float = 1.0, thaw_interval: float = 900.0) -> None:
        self._interval = interval
        self._thaw_interval = thaw_interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Freezes what startup created (imports, the schema, the service) and keeps on."""
        gc.freeze()
        self._task = asyncio.create_task(self._run(), name="heap-freezer")

    async def stop(self) -> None:
        """Stops freezing; what is frozen is released to the collector."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        gc.unfreeze()

    async def _run(self) -> None:
        thawed = time.monotonic()
        while True:
            await asyncio.sleep(self._interval)
            if time.monotonic() - thawed >= self._thaw_interval:
                gc.unfreeze()
                started = time.perf_counter()
                found = gc.collect()
                log.info(
                    "heap_collected",
                    unreachable=found,
                    seconds=round(time.perf_counter() - started, 3),
                )
                thawed = time.monotonic()
            else:
                gc.collect()  # walks only what is not frozen: this second's objects
            gc.freeze()
