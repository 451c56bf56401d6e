"""`Refreshed`: the numbers behind wait estimates are read off the request path. A fresh value
is served as it is; a stale one is served while one background task reads it again; only a
value never read, or one stale for long, is waited for; a failed refresh keeps the old one."""

from __future__ import annotations

import asyncio

import pytest

from humanline.service.estimates import STALE_LIMIT, Refreshed
from humanline.store.port import StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A store stand-in: each read returns the next number, after `gate` opens."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def read(self, key: str) -> int:
        self.reads.append(key)
        await self.gate.wait()
        if self.fail:
            raise StoreError("database gone")
        return len(self.reads)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_fresh_values_are_read_once_and_stale_ones_served_while_one_refresh_runs(
    clock: Clock,
) -> None:
    source = Source()
    values = Refreshed(source.read, fresh_for=1.0, clock=clock)
    assert await values.get("k") == 1  # never read: waited for
    clock.now += 0.5
    assert await values.get("k") == 1
    assert source.reads == ["k"]

    clock.now += 1.0  # stale
    source.gate.clear()
    assert await values.get("k") == 1  # served at once, a refresh under way
    assert await values.get("k") == 1
    await asyncio.sleep(0)
    assert source.reads == ["k", "k"]  # one refresh, not one per request
    source.gate.set()
    await asyncio.sleep(0.01)
    assert await values.get("k") == 2


async def test_a_value_stale_for_long_is_waited_for(clock: Clock) -> None:
    source = Source()
    values = Refreshed(source.read, fresh_for=1.0, clock=clock)
    await values.get("k")
    clock.now += STALE_LIMIT * 1.0
    assert await values.get("k") == 2
    assert source.reads == ["k", "k"]


async def test_a_failed_refresh_keeps_the_old_value_and_the_next_request_tries_again(
    clock: Clock,
) -> None:
    source = Source()
    values = Refreshed(source.read, fresh_for=1.0, clock=clock)
    await values.get("k")
    clock.now += 1.5
    source.fail = True
    assert await values.get("k") == 1
    await asyncio.sleep(0.01)  # the refresh failed and was logged
    assert await values.get("k") == 1
    await asyncio.sleep(0.01)
    assert source.reads == ["k", "k", "k"]
    source.fail = False
    clock.now += STALE_LIMIT * 1.0
    assert await values.get("k") == 4


async def test_keys_beyond_the_limit_push_out_the_oldest(clock: Clock) -> None:
    source = Source()
    values = Refreshed(source.read, fresh_for=1.0, keys=2, clock=clock)
    for key in ("a", "b", "c"):
        await values.get(key)
    await values.get("b")
    await values.get("c")
    await values.get("a")  # pushed out: read again
    assert source.reads == ["a", "b", "c", "a"]


async def test_stop_cancels_the_refreshes_under_way(clock: Clock) -> None:
    source = Source()
    values = Refreshed(source.read, fresh_for=1.0, clock=clock)
    await values.get("k")
    clock.now += 1.5
    source.gate.clear()
    await values.get("k")
    await asyncio.sleep(0)
    await values.stop()
    assert values._refreshing == {}
