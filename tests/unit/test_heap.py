"""The heap freezer: long-lived objects out of the collector's walks, cycles still freed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from humanline.heap import HeapFreezer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def dropped_cycle() -> weakref.ref[Node]:
    """A reference cycle nothing else refers to: only the collector can free it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def no_automatic_collections() -> Iterator[None]:
    """Only the freezer collects, so that what it does is all that is seen."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def ticks(n: int, interval: float) -> None:
    for _ in range(n):
        await asyncio.sleep(interval)


async def test_a_cycle_dropped_between_freezes_is_freed_not_frozen(
    no_automatic_collections: None,
) -> None:
    freezer = HeapFreezer(interval=0.01, thaw_interval=3600)
    freezer.start()
    try:
        garbage = dropped_cycle()
        await ticks(5, 0.01)  # several freezes since the cycle was dropped
        assert garbage() is None
        assert gc.get_freeze_count() > 0  # and the freezer does freeze
    finally:
        await freezer.stop()


async def test_a_cycle_frozen_alive_is_freed_at_the_thaw(no_automatic_collections: None) -> None:
    freezer = HeapFreezer(interval=0.01, thaw_interval=0.2)
    freezer.start()
    try:
        alive = Node()
        alive.other = Node()
        alive.other.other = alive
        await ticks(3, 0.01)  # frozen while alive
        garbage = weakref.ref(alive)
        del alive
        for _ in range(100):  # the collections between thaws skip it; the thaw frees it
            if garbage() is None:
                break
            await asyncio.sleep(0.01)
        assert garbage() is None
    finally:
        await freezer.stop()


async def test_stopping_releases_what_was_frozen(no_automatic_collections: None) -> None:
    freezer = HeapFreezer(interval=0.01)
    freezer.start()
    await ticks(2, 0.01)
    await freezer.stop()
    assert gc.get_freeze_count() == 0
